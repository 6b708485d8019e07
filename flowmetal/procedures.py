"""Procedure values: primitives (Python functions known by name), closures, continuations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# How the machine calls a primitive:
PURE = "pure"        # fn(*args) -> value; no effects, so calls may be linked at analysis time
PLAIN = "plain"      # fn(*args) -> value; has effects or depends on the world
MACHINE = "machine"  # fn(machine, *args) -> value; needs the machine (output, gensym)
CONTROL = "control"  # fn(machine, args, k) -> next state; changes control (call/cc, apply)


class Primitive:
    """A builtin procedure, referenced by its unique ``name`` in stored state."""

    __slots__ = ("name", "fn", "kind", "min_args", "max_args", "doc", "fast2")

    def __init__(self, name: str, fn: Callable, kind: str, min_args: int,
                 max_args: int | None, doc: str):
        self.name = name
        self.fn = fn
        self.kind = kind
        self.min_args = min_args
        self.max_args = max_args
        self.doc = doc
        self.fast2: Callable | None = None  # a quicker version for exactly two arguments

    def accepts(self, n: int) -> bool:
        """True if the primitive takes ``n`` arguments."""
        return n >= self.min_args and (self.max_args is None or n <= self.max_args)

    def __fm_repr__(self) -> str:
        return f"#<primitive {self.name}>"

    def __reduce__(self):
        return (primitive, (self.name,))


PRIMITIVES: dict[str, Primitive] = {}


def primitive(name: str) -> Primitive:
    """The registered primitive called ``name``."""
    return PRIMITIVES[name]


def define(name: str, kind: str = PURE, min_args: int = 0, max_args: int | None = -1,
           doc: str = "") -> Callable[[Callable], Callable]:
    """Decorator registering a Python function as the primitive ``name``.

    ``max_args=-1`` (the default) means "same as min_args"; ``None`` means variadic.
    """

    def register(fn: Callable) -> Callable:
        hi = min_args if max_args == -1 else max_args
        PRIMITIVES[name] = Primitive(name, fn, kind, min_args, hi, doc or (fn.__doc__ or ""))
        return fn

    return register


def binary(name: str) -> Callable[[Callable], Callable]:
    """Decorator: ``fn(a, b)`` is a faster equivalent of primitive ``name`` for two args."""

    def attach(fn: Callable) -> Callable:
        PRIMITIVES[name].fast2 = fn
        return fn

    return attach


class Closure:
    """A procedure made by ``fn``: its Lambda node and the environment it closed over."""

    __slots__ = ("code", "env")

    def __init__(self, code: Any, env: Any):
        self.code = code
        self.env = env

    @property
    def name(self) -> str:
        return self.code.name or "fn"

    def __fm_repr__(self) -> str:
        return f"#<fn {self.name}>"


class Continuation:
    """A captured continuation: the frame chain and the dynamic-wind list at capture.
    (The fast path makes them with ``object.__new__`` and sets both slots.)"""

    __slots__ = ("k", "winders")

    def __init__(self, k: Any, winders: Any):
        self.k = k
        self.winders = winders

    def __fm_repr__(self) -> str:
        return "#<continuation>"


def is_procedure(value: Any) -> bool:
    """True for anything ``apply`` accepts as a procedure."""
    return type(value) in (Primitive, Closure, Continuation)
