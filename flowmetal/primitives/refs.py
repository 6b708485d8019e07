"""References: atoms (``atom reset! compare-and-set!`` …) and delays.

An atom or a delay is changed in place, so each change is noted in the machine's
``dirty`` list: a worker's incremental image then encodes it again (``codec.Image``).
``swap!``, ``deref`` and ``force``, which call procedures, are in ``stdlib/refs.fm``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from ..printer import shown
from ..procedures import MACHINE, PLAIN, Closure, define
from ..values import (
    FALSE,
    TRUE,
    Atom,
    Boolean,
    Delay,
    FlowmetalError,
    Keyword,
    Symbol,
    Vector,
    boolean,
)

# Values without an identity of their own: the codec writes them as plain items, so two
# references to one such value in a state are two values after decoding.
_BY_VALUE = (int, float, Fraction, str, Boolean, Keyword, Symbol, type(None))


def _of(cls: type, what: str, op: str, x: Any) -> Any:
    if type(x) is cls:
        return x
    raise FlowmetalError(f"{op}: expected {what}, got {shown(x)}", "type-error")


def _atom(op: str, x: Any) -> Atom:
    return _of(Atom, "an atom", op, x)


def _delay(op: str, x: Any) -> Delay:
    return _of(Delay, "a delay", op, x)


@define("atom", PLAIN, 1)
def atom(x: Any) -> Atom:
    """A new atom holding x."""
    return Atom(x)


@define("atom?", min_args=1)
def is_atom(x: Any) -> Boolean:
    """True for atoms."""
    return boolean(type(x) is Atom)


@define("%atom-value", PLAIN, 1)
def atom_value(a: Any) -> Any:
    """The value an atom holds now."""
    return _atom("deref", a).value


def _set(m: Any, a: Atom, value: Any) -> None:
    a.value = value
    m.dirty.append(a)


@define("reset!", MACHINE, 2)
def reset(m: Any, a: Any, value: Any) -> Any:
    """Set the atom to value; returns value."""
    _set(m, _atom("reset!", a), value)
    return value


@define("reset-vals!", MACHINE, 2)
def reset_vals(m: Any, a: Any, value: Any) -> Vector:
    """Set the atom to value; returns [old new]."""
    a = _atom("reset-vals!", a)
    old = a.value
    _set(m, a, value)
    return Vector((old, value))


def same(a: Any, b: Any) -> bool:
    """Identity, as compare-and-set! compares; numbers, strings, keywords, symbols,
    booleans and nil have none that survives the store, so those compare by value
    (and kind)."""
    if a is b:
        return True
    return type(a) is type(b) and isinstance(a, _BY_VALUE) and a == b


@define("compare-and-set!", MACHINE, 3)
def compare_and_set(m: Any, a: Any, old: Any, new: Any) -> Boolean:
    """Set the atom to new if it holds old (the same value); true if it did."""
    a = _atom("compare-and-set!", a)
    if not same(a.value, old):
        return FALSE
    _set(m, a, new)
    return TRUE


@define("%delay", PLAIN, 1)
def make_delay(thunk: Any) -> Delay:
    """A delay that will call thunk (what the delay macro makes)."""
    if type(thunk) is not Closure:
        raise FlowmetalError(f"delay: expected a fn, got {shown(thunk)}", "type-error")
    return Delay(thunk)


@define("delay?", min_args=1)
def is_delay(x: Any) -> Boolean:
    """True for delays."""
    return boolean(type(x) is Delay)


@define("realized?", PLAIN, 1)
def is_realized(x: Any) -> Boolean:
    """True once a delay's body has run."""
    return boolean(_delay("realized?", x).realized)


@define("%delay-thunk", PLAIN, 1)
def delay_thunk(d: Any) -> Any:
    """The procedure a delay has still to run (nil once it ran)."""
    return _delay("force", d).thunk


@define("%delay-result", PLAIN, 1)
def delay_result(d: Any) -> Vector:
    """[true value] or [false raised] for a realized delay."""
    d = _delay("force", d)
    return Vector((boolean(not d.failed), d.value))


@define("%delay-realize!", MACHINE, 3)
def delay_realize(m: Any, d: Any, ok: Any, value: Any) -> Vector:
    """Keep what the body gave (unless it was kept already: the body ran again through
    a continuation); returns the delay's result as %delay-result does."""
    d = _delay("force", d)
    if not d.realized:
        d.thunk, d.value, d.failed = None, value, ok is FALSE
        m.dirty.append(d)
    return delay_result(d)
