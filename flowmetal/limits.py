"""Size checks: a value too big for the task's limits is refused before it is built.

A primitive that can build a big value (``range``, ``concat``, ``conj``, ``str``,
``bit-shift-left``, ``expt``, ``*`` …) knows the size of its result before it makes it,
and asks here first.  A value that could not fit in the task's state raises a catchable
``:limit-error`` (the machine gives it the call's source position) instead of spending
the memory: a collection counts ``ITEM_BYTES`` an item (what an item costs at the least
in a worker's memory), a string one byte a character.

Integers have a bound of their own, ``MAX_INT_BITS``, well below any state limit:
CPython prints, parses and divides integers in time quadratic in their size, so a
bigger one would hold a worker in a single C call (2^19 bits print in ~0.2 s, 2^23 in
a minute) where neither a slice's time bound nor a stop request can reach it.

The state limit in force is the running task's (``bounded``, set by the worker around a
slice, per thread); outside a task it is the default task limit.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction

from .values import FlowmetalError, Map, kw

DEFAULT_STATE = 64 << 20   # bytes: the default state limit of a task (records.Limits)
ITEM_BYTES = 8             # bytes an item of a collection counts for
MAX_INT_BITS = 1 << 19     # the largest integer (or ratio part) built, in bits
SMALL = 1 << 16            # sizes up to this are never too big: no need to look

K_LIMIT, K_SIZE, K_MAX = kw("limit"), kw("size"), kw("max")


class _Bound(threading.local):
    state = DEFAULT_STATE


_BOUND = _Bound()


def state_limit() -> int:
    """The state limit (bytes) of the task running in this thread."""
    return _BOUND.state


def set_state_limit(state: int) -> int:
    """Hold size checks in this thread to a state of ``state`` bytes; the limit before
    (``bounded`` without a context manager, for the worker's every slice)."""
    previous = _BOUND.state
    _BOUND.state = state
    return previous


@contextmanager
def bounded(state: int) -> Iterator[None]:
    """Within, size checks in this thread hold values to a state of ``state`` bytes."""
    previous = _BOUND.state
    _BOUND.state = state
    try:
        yield
    finally:
        _BOUND.state = previous


def limit_error(op: str, size: int, unit: str, most: int, why: str, limit: str = "state"
                ) -> FlowmetalError:
    """The ``:limit-error`` of ``op`` refusing a result of ``size`` ``unit`` (at most
    ``most``, for the reason ``why``); its data is ``{:limit :state :size :max}``."""
    return FlowmetalError(f"{op}: a result of {size} {unit} is more than {why} "
                          f"({most} {unit})", "limit-error",
                          Map({K_LIMIT: kw(limit), K_SIZE: size, K_MAX: most}))


def check_items(op: str, n: int) -> None:
    """Refuse a collection of ``n`` items that could not fit in the task's state."""
    if n > SMALL:
        most = _BOUND.state // ITEM_BYTES
        if n > most:
            raise limit_error(op, n, "items", most, "a task's state may hold")


def check_chars(op: str, n: int) -> None:
    """Refuse a string of ``n`` characters that could not fit in the task's state."""
    if n > SMALL:
        most = _BOUND.state
        if n > most:
            raise limit_error(op, n, "characters", most, "a task's state may hold")


def check_bits(op: str, bits: int) -> None:
    """Refuse an integer of ``bits`` bits (more than ``MAX_INT_BITS``)."""
    if bits > MAX_INT_BITS:
        raise limit_error(op, bits, "bits", MAX_INT_BITS, "the largest integer", "integer")


def number_bits(x: object) -> int:
    """The bits of an exact number (of its larger part, for a ratio); 0 for a float."""
    t = type(x)
    if t is int:
        return x.bit_length()
    if t is Fraction:
        return max(x.numerator.bit_length(), x.denominator.bit_length())
    return 0


def check_product(op: str, a: object, b: object) -> None:
    """Refuse ``a * b`` of exact numbers whose result would be too big an integer."""
    bits_a, bits_b = number_bits(a), number_bits(b)
    if bits_a + bits_b > MAX_INT_BITS and bits_a > 1 and bits_b > 1:
        check_bits(op, bits_a + bits_b - 1)


def check_power(op: str, base: object, power: int) -> None:
    """Refuse ``base ** power`` (an exact base, a positive integer power) whose result
    would be too big an integer."""
    bits = number_bits(base)
    if bits > 1 and power > 1 and (bits - 1) * power >= MAX_INT_BITS // 2:
        part = max(abs(base.numerator), base.denominator) if type(base) is Fraction \
            else abs(base)
        check_bits(op, int(math.log2(part) * power) + 1)


def check_shift(op: str, a: int, n: int) -> None:
    """Refuse ``a << n`` whose result would be too big an integer."""
    if a and n > 0 and a.bit_length() + n > MAX_INT_BITS:
        check_bits(op, a.bit_length() + n)


DIGIT_BITS = {2: 1.0, 8: 3.0, 10: math.log2(10), 16: 4.0}


def check_digits(op: str, digits: int, base: int = 10) -> None:
    """Refuse to read an integer of ``digits`` digits in ``base`` that is too big."""
    bits = int(digits * DIGIT_BITS.get(base, math.log2(max(base, 2))))
    if bits > MAX_INT_BITS:
        check_bits(op, bits)
