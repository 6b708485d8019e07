"""The Flowmetal data types.

Numbers are Python ``int``, ``float`` and ``fractions.Fraction``; strings are ``str``;
``nil`` is ``None``.  Everything else has a class here.  Booleans are two singletons of
their own (not Python's ``True``/``False``) so that ``1`` and ``true`` are never equal and
never collide as map keys; with that, Python's ``==`` and ``hash`` *are* Flowmetal's
equality and hashing, for atoms and collections alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any


class Boolean:
    """``true`` or ``false``; use the singletons TRUE and FALSE."""

    __slots__ = ("value",)

    def __init__(self, value: bool):
        self.value = value

    def __bool__(self) -> bool:
        return self.value

    def __repr__(self) -> str:
        return "true" if self.value else "false"

    def __reduce__(self):
        return (boolean, (self.value,))


TRUE = Boolean(True)
FALSE = Boolean(False)


def boolean(flag: Any) -> Boolean:
    """The Flowmetal boolean for a Python truth value."""
    return TRUE if flag else FALSE


def truthy(value: Any) -> bool:
    """Flowmetal truth: everything but ``false`` and ``nil`` is true."""
    return value is not FALSE and value is not None


class Symbol:
    """An interned symbol; compare with ``is``."""

    __slots__ = ("name", "__weakref__")
    _table: dict[str, Symbol] = {}

    def __new__(cls, name: str):
        sym = cls._table.get(name)
        if sym is None:
            sym = object.__new__(cls)
            sym.name = name
            cls._table[name] = sym
        return sym

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self):
        return (Symbol, (self.name,))


class Keyword:
    """An interned keyword such as ``:k`` or ``:ns/k`` (name excludes the colon)."""

    __slots__ = ("name", "__weakref__")
    _table: dict[str, Keyword] = {}

    def __new__(cls, name: str):
        kw = cls._table.get(name)
        if kw is None:
            kw = object.__new__(cls)
            kw.name = name
            cls._table[name] = kw
        return kw

    def __repr__(self) -> str:
        return ":" + self.name

    def __reduce__(self):
        return (Keyword, (self.name,))


def sym(name: str) -> Symbol:
    """The symbol named ``name``."""
    return Symbol(name)


def kw(name: str) -> Keyword:
    """The keyword named ``name`` (without the colon)."""
    return Keyword(name)


class EmptyList:
    """The empty list ``()``; use the singleton EMPTY."""

    __slots__ = ()

    def __iter__(self) -> Iterator[Any]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __bool__(self) -> bool:
        return True  # Python truth is never used for Flowmetal truth

    def __repr__(self) -> str:
        return "()"

    def __reduce__(self):
        return (_empty, ())


EMPTY = EmptyList()


def _empty() -> EmptyList:
    return EMPTY


class Pair:
    """An immutable cons cell; a list is a chain of pairs ending in EMPTY."""

    __slots__ = ("first", "rest", "_hash")

    def __init__(self, first: Any, rest: Any):
        self.first = first
        self.rest = rest
        self._hash = None

    def __iter__(self) -> Iterator[Any]:
        node = self
        while isinstance(node, Pair):
            yield node.first
            node = node.rest

    def __len__(self) -> int:
        n, node = 0, self
        while isinstance(node, Pair):
            n += 1
            node = node.rest
        return n

    def __eq__(self, other: Any) -> bool:
        if not isinstance(other, Pair):
            return False
        a, b = self, other
        while isinstance(a, Pair) and isinstance(b, Pair):
            if a is b:
                return True
            if not (a.first == b.first):
                return False
            a, b = a.rest, b.rest
        return a == b

    def __hash__(self) -> int:
        if self._hash is None:
            h = 0x1F
            for item in self:
                h = (h * 1000003) ^ hash(item)
            self._hash = h & 0xFFFFFFFFFFFF
        return self._hash

    def __repr__(self) -> str:
        from .printer import to_string

        return to_string(self)


def make_list(items: Iterable[Any], tail: Any = EMPTY) -> Any:
    """A Flowmetal list of ``items`` (ending in ``tail``)."""
    result = tail
    for item in reversed(list(items)):
        result = Pair(item, result)
    return result


def is_list(value: Any) -> bool:
    """True for ``()`` and for pairs."""
    return value is EMPTY or type(value) is Pair


class Vector(tuple):
    """An immutable vector ``[a b c]``."""

    __slots__ = ()

    def __repr__(self) -> str:
        from .printer import to_string

        return to_string(self)

    def __eq__(self, other: Any) -> bool:
        return type(other) is Vector and tuple.__eq__(self, other)

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("vector",) + tuple(self))

    def __add__(self, other: Any) -> Vector:
        return Vector(tuple.__add__(self, tuple(other)))


class Map(dict):
    """An immutable map ``{k v}``; update with assoc/dissoc, which return new maps."""

    __slots__ = ()

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __eq__(self, other: Any) -> bool:
        return type(other) is Map and dict.__eq__(self, other)

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __repr__(self) -> str:
        from .printer import to_string

        return to_string(self)

    def assoc(self, key: Any, value: Any) -> Map:
        """A copy with ``key`` bound to ``value``."""
        new = Map(self)
        dict.__setitem__(new, key, value)
        return new

    def dissoc(self, key: Any) -> Map:
        """A copy without ``key``."""
        if key not in self:
            return self
        new = Map(self)
        dict.__delitem__(new, key)
        return new


class Set(frozenset):
    """An immutable set ``#{a b}``."""

    __slots__ = ()

    def __eq__(self, other: Any) -> bool:
        return type(other) is Set and frozenset.__eq__(self, other)

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("set", frozenset.__hash__(self)))

    def __repr__(self) -> str:
        from .printer import to_string

        return to_string(self)


class Regex:
    """A regular expression ``#"…"``: its pattern as written and the compiled form.

    Two regexes are equal when their patterns are (Clojure compares them by identity);
    ``regex.compile_regex`` makes one from a pattern.
    """

    __slots__ = ("pattern", "compiled")

    def __init__(self, pattern: str, compiled: Any):
        self.pattern = pattern
        self.compiled = compiled

    def __eq__(self, other: Any) -> bool:
        return type(other) is Regex and other.pattern == self.pattern

    def __ne__(self, other: Any) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("regex", self.pattern))

    def __repr__(self) -> str:
        return f'#"{self.pattern}"'


class Atom:
    """A mutable reference ``(atom x)``, equal only to itself.  Task state like any other
    value: the codec keeps its identity, and whatever changes it in place notes it in the
    machine's ``dirty`` list."""

    __slots__ = ("value", "__weakref__")

    def __init__(self, value: Any):
        self.value = value


class Delay:
    """``(delay body)``: ``thunk`` runs at most once; then ``thunk`` is nil and ``value``
    holds its result (or, with ``failed`` set, what it raised)."""

    __slots__ = ("thunk", "value", "failed", "__weakref__")

    def __init__(self, thunk: Any, value: Any = None, failed: bool = False):
        self.thunk = thunk
        self.value = value
        self.failed = failed

    @property
    def realized(self) -> bool:
        """True once the body has run."""
        return self.thunk is None


class Span(tuple):
    """Where a form came from: (file, line, col, end_line, end_col); lines and cols count from 1."""

    __slots__ = ()

    def __new__(cls, file: str, line: int, col: int, end_line: int, end_col: int):
        return tuple.__new__(cls, (file, line, col, end_line, end_col))

    file = property(lambda self: self[0])
    line = property(lambda self: self[1])
    col = property(lambda self: self[2])
    end_line = property(lambda self: self[3])
    end_col = property(lambda self: self[4])

    def __repr__(self) -> str:
        return f"{self[0]}:{self[1]}:{self[2]}"

    def __getnewargs__(self):
        return tuple(self)


NUMBER_TYPES = (int, float, Fraction)


def is_number(value: Any) -> bool:
    """True for Flowmetal numbers (int, float, ratio)."""
    t = type(value)
    return t is int or t is float or t is Fraction


def normalize_ratio(value: Fraction) -> Any:
    """A ratio with denominator 1 becomes an int."""
    return value.numerator if value.denominator == 1 else value


class FlowmetalError(Exception):
    """A Flowmetal-level error raised from Python (primitives, analyzer, reader).

    ``kind`` is the error's ``:type`` keyword name, ``data`` an optional Flowmetal value,
    ``span`` the source position when known.
    """

    def __init__(self, message: str, kind: str = "error", data: Any = None,
                 span: Span | None = None):
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.data = data
        self.span = span
        self.proc: str | None = None
        self.k: Any = None  # the continuation where it happened, if deeper than the machine's


class ReadError(FlowmetalError):
    """Text that is not a well-formed form; ``span`` says where."""

    def __init__(self, message: str, span: Span):
        super().__init__(message, "read-error", None, span)

    def __str__(self) -> str:
        return f"{self.span.file}:{self.span.line}:{self.span.col}: {self.message}"


class SyntaxError_(FlowmetalError):
    """A form the analyzer rejects; ``span`` points at the offending form."""

    def __init__(self, message: str, span: Span | None):
        super().__init__(message, "syntax-error", None, span)

    def __str__(self) -> str:
        if self.span is None:
            return self.message
        return f"{self.span.file}:{self.span.line}:{self.span.col}: {self.message}"
