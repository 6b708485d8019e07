"""The printer: values to text.

``to_string`` writes the readable form of a value, so that reading it back gives an equal
value of the same types.  Floats print ``##Inf``, ``##-Inf`` and ``##NaN`` for the special
values; strings escape ``\\n \\t \\r \\" \\\\ \\0``, other control characters and lone surrogates
as ``\\uXXXX``.  An improper list prints as ``(1 2 . 3)``, which does not read back.  A regex
prints as its ``#"…"`` literal; an atom as ``#<atom VALUE>`` and a delay as ``#<delay
:pending>`` or ``#<delay :ready VALUE>`` (``:failed`` with what its body raised), where a
reference met again inside its own value prints as ``#<atom …>``.  Other objects print
through their ``__fm_repr__()`` method if they have one, else as
``#<python TYPE>``.

Nothing here recurses in Python in proportion to the nesting of the value.
"""

from __future__ import annotations

import math
from typing import Any

from .values import (
    EMPTY,
    FALSE,
    TRUE,
    Atom,
    Delay,
    Fraction,
    Keyword,
    Map,
    Pair,
    Regex,
    Set,
    Symbol,
    Vector,
)

__all__ = ["bounded_string", "display_string", "shown", "to_string"]


def _escapes() -> dict[int, str]:
    """The escapes of a printed string, made when one is first printed (2,000 entries:
    half a millisecond of a start that prints none)."""
    if not _STRING_ESCAPES:
        # The control characters (Unicode category Cc) and the surrogates.
        codes = [*range(0x20), *range(0x7F, 0xA0), *range(0xD800, 0xE000)]
        table = {code: f"\\u{code:04x}" for code in codes}
        table.update({ord("\n"): "\\n", ord("\t"): "\\t", ord("\r"): "\\r", 0: "\\0"})
        table.update({ord('"'): '\\"', ord("\\"): "\\\\"})
        _STRING_ESCAPES.update(table)
    return _STRING_ESCAPES


_STRING_ESCAPES: dict[int, str] = {}

# Python refuses str(int) beyond a configurable digit count (640 at the least), so larger
# ints are converted piecewise.
_INT_BITS = 1900


def _int_digits(n: int) -> str:
    """The decimal digits of ``n >= 0``, of any size."""
    if n.bit_length() <= _INT_BITS:
        return str(n)
    half = int(n.bit_length() * 0.30103) // 2
    high, low = divmod(n, 10**half)
    return _int_digits(high) + _int_digits(low).zfill(half)


def _float_text(x: float) -> str:
    if math.isnan(x):
        return "##NaN"
    if math.isinf(x):
        return "##Inf" if x > 0 else "##-Inf"
    return repr(x)


def _atom(value: Any) -> str | None:
    """The text of a non-collection value, or None for a collection to print item by item."""
    t = type(value)
    if t is str:
        return '"' + value.translate(_STRING_ESCAPES or _escapes()) + '"'
    if t is int:
        return "-" + _int_digits(-value) if value < 0 else _int_digits(value)
    if t is float:
        return _float_text(value)
    if t is Symbol:
        return value.name
    if t is Keyword:
        return ":" + value.name
    if value is None:
        return "nil"
    if value is TRUE:
        return "true"
    if value is FALSE:
        return "false"
    if value is EMPTY:
        return "()"
    if t is Fraction:
        return f"{_atom(value.numerator)}/{_atom(value.denominator)}"
    if t is Pair or t is Vector or t is Map or t is Set or t is Atom or t is Delay:
        return None
    if t is Regex:
        return '#"' + value.pattern + '"'
    fm_repr = getattr(value, "__fm_repr__", None)
    if fm_repr is not None:
        return fm_repr()
    return f"#<python {t.__name__}>"


class _Text(str):
    """Literal output queued among the values still to print."""

    __slots__ = ()


_SPACE = _Text(" ")
_COMMA = _Text(", ")
_DOT = _Text(" . ")
_CLOSE_LIST = _Text(")")
_CLOSE_VECTOR = _Text("]")
_CLOSE_BRACE = _Text("}")
_CLOSE_REF = _Text(">")


def _ref_pieces(value: Any) -> tuple[str, list[Any]]:
    """An atom's or a delay's opening text and what follows it."""
    if type(value) is Atom:
        return "#<atom ", [value.value, _CLOSE_REF]
    if not value.realized:
        return "#<delay :pending>", []
    return ("#<delay :failed " if value.failed else "#<delay :ready "), [value.value, _CLOSE_REF]


def _pieces(value: Any) -> tuple[str, list[Any]]:
    """A collection's opening bracket and the items and separators that follow it."""
    t = type(value)
    if t is Atom or t is Delay:
        return _ref_pieces(value)
    items: list[Any] = []
    if t is Pair:
        node = value
        while type(node) is Pair:
            if items:
                items.append(_SPACE)
            items.append(node.first)
            node = node.rest
        if node is not EMPTY:
            items += (_DOT, node)
        items.append(_CLOSE_LIST)
        return "(", items
    if t is Map:
        for key, val in value.items():
            if items:
                items.append(_COMMA)
            items += (key, _SPACE, val)
        items.append(_CLOSE_BRACE)
        return "{", items
    for item in value:
        if items:
            items.append(_SPACE)
        items.append(item)
    if t is Vector:
        items.append(_CLOSE_VECTOR)
        return "[", items
    items.append(_CLOSE_BRACE)
    return "#{", items


def to_string(value: Any) -> str:
    """The readable text of ``value``: ``read_one(to_string(x)) == x`` for readable data."""
    text = _atom(value)
    if text is not None:
        return text
    out: list[str] = []
    todo: list[Any] = [value]
    refs: set[int] = set()  # the atoms and delays printed: a cycle goes through one
    while todo:
        item = todo.pop()
        if type(item) is _Text:
            out.append(item)
            continue
        text = _atom(item)
        if text is not None:
            out.append(text)
            continue
        if type(item) is Atom or type(item) is Delay:
            if id(item) in refs:
                out.append("#<atom …>" if type(item) is Atom else "#<delay …>")
                continue
            refs.add(id(item))
        opener, items = _pieces(item)
        out.append(opener)
        items.reverse()
        todo += items
    return "".join(out)


def display_string(value: Any) -> str:
    """Like :func:`to_string`, but a string itself prints raw (strings inside still quote),
    and a regex as its pattern."""
    if type(value) is str:
        return value
    if type(value) is Regex:
        return value.pattern
    display = getattr(value, "__fm_display__", None)  # a plain text of its own (task ids)
    return display() if display is not None else to_string(value)


MAX_VALUE_CHARS = 1000
ERROR_VALUE_CHARS = 200


def shown(value: Any) -> str:
    """A value as an error message prints it: its readable text, cut at 200 characters."""
    return bounded_string(value, ERROR_VALUE_CHARS)


def bounded_string(value: Any, limit: int = MAX_VALUE_CHARS) -> str:
    """The readable text of a value, cut at ``limit`` characters.  Only about ``limit``
    characters are ever printed, however big the value: collections are walked item by
    item and left when the text is long enough, and a number too long to print quickly
    (anywhere in the value) is described instead."""
    out: list[str] = []
    size = 0
    todo: list[Any] = [iter((value,))]
    while todo and size <= limit:
        item = next(todo[-1], _END)
        if item is _END:
            todo.pop()
            continue
        t = type(item)
        if t is _Piece:
            text = item
        elif t is Pair or t is Vector or t is Map or t is Set or t is Atom or t is Delay:
            todo.append(_lazy_pieces(item))
            continue
        elif t is int and item.bit_length() > 4 * limit:
            text = f"#<integer of {item.bit_length():,} bits>"
        elif t is Fraction and max(item.numerator.bit_length(),
                                   item.denominator.bit_length()) > 4 * limit:
            bits = (item.numerator.bit_length(), item.denominator.bit_length())
            text = f"#<ratio of {bits[0]:,}/{bits[1]:,} bits>"
        else:
            if t is str and len(item) > limit:
                item = item[:limit + 1]  # cut below anyway: print only what shows
            try:
                text = to_string(item)
            except Exception as exc:
                text = f"#<unprintable {type(exc).__name__}>"
        out.append(text)
        size += len(text)
    text = "".join(out)
    return text if len(text) <= limit else text[:limit - 1] + "…"


class _Piece(str):
    """Literal text among a collection's items (brackets, separators)."""

    __slots__ = ()


_END = object()


def _lazy_pieces(value: Any) -> Any:
    """A collection's text as it is printed: brackets, separators and items, lazily."""
    t = type(value)
    if t is Atom or t is Delay:
        opener, items = _ref_pieces(value)
        yield _Piece(opener)
        for item in items:
            yield _Piece(item) if type(item) is _Text else item
        return
    if t is Pair:
        yield _Piece("(")
        node = value
        while type(node) is Pair:
            if node is not value:
                yield _Piece(" ")
            yield node.first
            node = node.rest
        if node is not EMPTY:
            yield _Piece(" . ")
            yield node
        yield _Piece(")")
        return
    if t is Map:
        yield _Piece("{")
        for i, (key, val) in enumerate(value.items()):
            if i:
                yield _Piece(", ")
            yield key
            yield _Piece(" ")
            yield val
        yield _Piece("}")
        return
    yield _Piece("[" if t is Vector else "#{")
    for i, item in enumerate(value):
        if i:
            yield _Piece(" ")
        yield item
    yield _Piece("]" if t is Vector else "}")
