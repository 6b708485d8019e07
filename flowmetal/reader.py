"""The reader: text to forms.

The notation is the Clojure family's data notation:

- ``;`` starts a line comment, ``#_`` discards the next form, commas are whitespace;
- ``( )`` lists, ``[ ]`` vectors, ``{ }`` maps, ``#{ }`` sets;
- integers with an optional sign and ``_`` separators (``1_000``), hex (``0x1F``, ``-0x1F``)
  and radix (``2r1010``, ``36rZZ``, radix 2 to 36); ratios ``1/3`` (normalized, so ``4/2``
  reads as ``2``); floats ``1.5``, ``1.``, ``-2.0e-3``, ``1e10``; ``##Inf``, ``##-Inf``, ``##NaN``;
- strings in double quotes, which may span lines, with the escapes ``\\n \\t \\r \\" \\\\ \\0``
  and ``\\uXXXX`` (exactly four hex digits naming one character; a character outside the
  BMP is a surrogate pair, ``\\ud83d\\ude00``, as in Java and JSON, and a lone surrogate is
  an error);
- keywords ``:k``, ``:ns/k``; ``true``, ``false``, ``nil``; everything else that is a run of
  non-delimiter characters is a symbol;
- ``'x`` reads as ``(quote x)``, ``~x`` as ``(unquote x)``, ``~@x`` as ``(unquote-splicing x)``,
  ``@x`` as ``(deref x)`` and x after a backquote as ``(quasiquote x)``;
- ``#"…"`` is a regular expression whose pattern is the text as written: a backslash
  escapes the next character (so ``\\"`` does not end it) and stays in the pattern, as in
  Clojure; a pattern that does not compile is a read error.

Delimiters are whitespace, commas, brackets, ``"``, ``;``, the backquote and ``~``; any other
character may appear inside a symbol (``'`` and ``#`` only after its first character).  A token
that starts with a digit, or with a sign followed by a digit, must be a number; leading zeros
are decimal, not octal.  A token such as ``.5`` or ``-.5`` is an error rather than a symbol:
write ``0.5``.  A leading byte order mark is skipped; anywhere else (outside strings and
comments) it is an error, as is any other invisible character (a control or format
character, an unassigned code point: ``str.isprintable`` is false) except the zero-width
joiner and non-joiner: a symbol never prints as text that looks like something else.
A lone surrogate (text decoded with ``surrogateescape`` from bytes that are not UTF-8)
is an error anywhere, strings and comments included.

Every form comes back as a :class:`Syntax` node carrying a :class:`Span`.  Lines and columns
count from 1, columns in code points, and only ``\\n`` ends a line.  ``end_line``/``end_col``
name the position just after the form's last character (the end is exclusive).

Errors are :class:`ReadError`; those caused by text ending inside a form are
:class:`IncompleteInput` and have ``incomplete`` set, so a REPL can ask for more input.

Nothing here recurses in Python in proportion to the nesting of the text.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from typing import Any

from . import regex
from .printer import to_string
from .values import (
    EMPTY,
    FALSE,
    TRUE,
    Fraction,
    Keyword,
    Map,
    Pair,
    ReadError,
    Set,
    Span,
    Symbol,
    Vector,
    make_list,
    normalize_ratio,
)

__all__ = [
    "IncompleteInput",
    "Syntax",
    "is_complete",
    "read_all",
    "read_one",
    "read_syntax_all",
    "strip",
    "to_syntax",
]


class IncompleteInput(ReadError):
    """The text ended inside a form or string: more input could complete it."""

    incomplete = True


class Syntax:
    """A form with its source span.

    ``kind`` is ``"atom"``, ``"list"``, ``"vector"``, ``"map"`` or ``"set"``.  An atom's
    ``value`` is the plain value; a compound's is a tuple of child nodes (a map's alternate
    key and value).
    """

    __slots__ = ("kind", "span", "value")

    def __init__(self, kind: str, value: Any, span: Span):
        self.kind = kind
        self.value = value
        self.span = span

    def __repr__(self) -> str:
        if self.kind == "atom":
            return f"Syntax(atom {self.value!r} @ {self.span!r})"
        return f"Syntax({self.kind} of {len(self.value)} @ {self.span!r})"


# Regular expressions over the text.

_SKIP = re.compile(r"(?:[\s,]+|;[^\n]*)*")
_TOKEN = re.compile(r"""[^\s,()\[\]{}";`~]+""")
_STRING_CHUNK = re.compile(r'[^"\\]*')
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_HEX_UP_TO_4 = re.compile(r"[0-9a-fA-F]{0,4}")

_DIGITS = r"[0-9](?:_?[0-9])*"
_INT = re.compile(rf"([+-]?)({_DIGITS})")
_HEX = re.compile(r"([+-]?)0[xX]([0-9a-fA-F](?:_?[0-9a-fA-F])*)")
_RADIX = re.compile(r"([+-]?)([0-9]{1,2})[rR]([0-9a-zA-Z](?:_?[0-9a-zA-Z])*)")
_RATIO = re.compile(rf"([+-]?)({_DIGITS})/({_DIGITS})")
_FLOAT = re.compile(
    rf"[+-]?{_DIGITS}(?:\.(?:{_DIGITS})?(?:[eE][+-]?{_DIGITS})?|[eE][+-]?{_DIGITS})"
)

_OPENERS = {"(": "list", "[": "vector", "{": "map"}
_KIND_CLOSER = {"list": ")", "vector": "]", "map": "}", "set": "}"}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "0": "\0"}
_CONSTANTS = {"true": TRUE, "false": FALSE, "nil": None}
_PREFIXES = {"'": "quote", "`": "quasiquote", "~": "unquote", "~@": "unquote-splicing",
             "@": "deref"}
_REGEX_CHUNK = re.compile(r'[^"\\]*')
_SURROGATE = re.compile("[\ud800-\udfff]")
_JOINERS = frozenset("\u200c\u200d")  # format characters that belong inside words
_SPECIAL_FLOATS = {"Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}

# Python refuses int(str) beyond a configurable digit count (640 at the least), so longer
# digit strings are converted piecewise.
_INT_CHUNK = 600

# Stack frame slots.
_KIND, _START, _NODES, _VALUES, _EXTRA = range(5)


def _parse_int(digits: str, base: int) -> int:
    """``digits`` (no sign, no separators) in ``base``, of any length."""
    if len(digits) <= _INT_CHUNK:
        return int(digits, base)
    half = len(digits) // 2
    high, low = digits[:-half], digits[-half:]
    return _parse_int(high, base) * base**half + _parse_int(low, base)


def _fail(message: str, span: Span) -> ReadError:
    """A ReadError that more input would not fix."""
    err = ReadError(message, span)
    err.incomplete = False
    return err


def _char_text(c: str) -> str:
    """A character as an error message shows it: invisible ones by code point."""
    if c.isprintable():
        return c
    if c == "\ufeff":
        return "U+FEFF (a byte order mark)"
    return f"U+{ord(c):04X}"


def _invisible(token: str) -> int:
    """The index of the first invisible character in ``token``, or -1."""
    if token.isprintable():
        return -1
    for j, c in enumerate(token):
        if not c.isprintable() and c not in _JOINERS:
            return j
    return -1


def _describe(value: Any) -> str:
    text = to_string(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Reader:
    """One pass over one text; ``run`` returns the top-level nodes and their plain values."""

    def __init__(self, text: str, file: str):
        self.text = text
        self.file = file
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # Positions and errors.

    def where(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self.line_starts, offset)
        return line, offset - self.line_starts[line - 1] + 1

    def span(self, start: int, end: int) -> Span:
        return Span(self.file, *self.where(start), *self.where(end))

    def error(self, message: str, start: int, end: int) -> ReadError:
        return _fail(message, self.span(start, end))

    def incomplete(self, message: str, start: int, end: int) -> IncompleteInput:
        return IncompleteInput(message, self.span(start, end))

    def at(self, offset: int) -> str:
        return repr(self.span(offset, offset))

    # The main loop.

    def run(self) -> tuple[list[Syntax], list[Any]]:
        text = self.text
        n = len(text)
        stack: list[list[Any]] = []
        top_nodes: list[Syntax] = []
        top_values: list[Any] = []
        i = 1 if text.startswith("\ufeff") else 0  # a byte order mark
        bad = None if text.isascii() else _SURROGATE.search(text)
        if bad is not None:
            at = bad.start()
            raise self.error(f"invalid character {_char_text(text[at])}: the text is not "
                             "valid Unicode (was it UTF-8?)", at, at + 1)
        while True:
            i = _SKIP.match(text, i).end()
            if i >= n:
                break
            c = text[i]
            if c in _OPENERS:
                stack.append([_OPENERS[c], i, [], [], None])
                i += 1
                continue
            if c in ")]}":
                node, value = self.close(stack, c, i)
                i += 1
            elif c == '"':
                node, i = self.string(i)
                value = node.value
            elif c in "'`~@":
                mark = "~@" if text.startswith("~@", i) else c
                stack.append(["prefix", i, None, None, mark])
                i += len(mark)
                continue
            elif c == "#":
                nxt = text[i + 1 : i + 2]
                if nxt == "{":
                    stack.append(["set", i, [], [], None])
                    i += 2
                    continue
                if nxt == "_":
                    stack.append(["discard", i, None, None, None])
                    i += 2
                    continue
                if nxt == "#":
                    node, i = self.special_float(i)
                    value = node.value
                elif nxt == '"':
                    node, i = self.regex(i)
                    value = node.value
                elif nxt == "":
                    raise self.incomplete("expected a dispatch character after `#`", i, i + 1)
                else:
                    raise self.error(f"unknown dispatch `#{_char_text(nxt)}`", i, i + 2)
            else:
                node, i = self.atom(i)
                value = node.value
            self.deliver(stack, node, value, top_nodes, top_values)
        if stack:
            raise self.unterminated(stack[-1])
        return top_nodes, top_values

    def deliver(
        self, stack: list[list[Any]], node: Syntax, value: Any, nodes: list, values: list
    ) -> None:
        """Hand a finished form to whatever is waiting for it."""
        while stack:
            frame = stack[-1]
            kind = frame[_KIND]
            if kind == "discard":
                stack.pop()
                return
            if kind != "prefix":
                frame[_NODES].append(node)
                frame[_VALUES].append(value)
                return
            stack.pop()
            start, mark = frame[_START], frame[_EXTRA]
            name = Symbol(_PREFIXES[mark])
            head = Syntax("atom", name, self.span(start, start + len(mark)))
            span = Span(self.file, *self.where(start), node.span.end_line, node.span.end_col)
            node = Syntax("list", (head, node), span)
            value = Pair(name, Pair(value, EMPTY))
        nodes.append(node)
        values.append(value)

    def close(self, stack: list[list[Any]], c: str, i: int) -> tuple[Syntax, Any]:
        """Finish the innermost open collection at the closing bracket ``c``."""
        if not stack:
            raise self.error(f"unexpected `{c}`: nothing is open", i, i + 1)
        frame = stack[-1]
        kind, start = frame[_KIND], frame[_START]
        if kind == "prefix":
            raise self.error(
                f"unexpected `{c}`: expected a form after `{frame[_EXTRA]}` at {self.at(start)}",
                i,
                i + 1,
            )
        if kind == "discard":
            raise self.error(
                f"unexpected `{c}`: expected a form after `#_` at {self.at(start)}", i, i + 1
            )
        want = _KIND_CLOSER[kind]
        if c != want:
            raise self.error(
                f"unexpected `{c}`: expected `{want}` to close the {kind} opened at "
                f"{self.at(start)}",
                i,
                i + 1,
            )
        stack.pop()
        nodes, values = frame[_NODES], frame[_VALUES]
        span = self.span(start, i + 1)
        node = Syntax(kind, tuple(nodes), span)
        if kind == "list":
            return node, make_list(values)
        if kind == "vector":
            return node, Vector(values)
        if kind == "map":
            if len(values) % 2:
                raise _fail(f"map literal needs an even number of forms, found {len(values)}", span)
            return node, self.unique(Map(), nodes, values, "key", step=2)
        return node, Set(self.unique({}, nodes, values, "element", step=1))

    def unique(self, target: dict, nodes: list, values: list, what: str, step: int) -> dict:
        """Fill ``target`` from ``values``, rejecting a repeated key or element."""
        try:
            for j in range(0, len(values), step):
                key = values[j]
                if key in target:
                    raise _fail(f"duplicate {what} `{_describe(key)}`", nodes[j].span)
                dict.__setitem__(target, key, values[j + 1] if step == 2 else None)
        except RecursionError:
            raise _fail(
                "a map key or set element is nested too deeply to compare", nodes[0].span
            ) from None
        return target

    def unterminated(self, frame: list[Any]) -> IncompleteInput:
        """The error for text that ends while ``frame`` is still open."""
        kind, start = frame[_KIND], frame[_START]
        if kind == "prefix":
            mark = frame[_EXTRA]
            return self.incomplete(
                f"expected a form after `{mark}` at {self.at(start)}, found the end of input",
                start,
                start + len(mark),
            )
        if kind == "discard":
            return self.incomplete(
                f"expected a form after `#_` at {self.at(start)}, found the end of input",
                start,
                start + 2,
            )
        width = 2 if kind == "set" else 1
        return self.incomplete(
            f"unterminated {kind} opened at {self.at(start)}: expected `{_KIND_CLOSER[kind]}` "
            f"before the end of input",
            start,
            start + width,
        )

    # Atoms.

    def string(self, start: int) -> tuple[Syntax, int]:
        text, n = self.text, len(self.text)
        parts = []
        j = start + 1
        while True:
            m = _STRING_CHUNK.match(text, j)
            parts.append(m.group())
            j = m.end()
            if j >= n or (text[j] == "\\" and j + 1 >= n):
                raise self.incomplete(
                    f"unterminated string opened at {self.at(start)}", start, start + 1
                )
            if text[j] == '"':
                break
            esc = text[j + 1]
            if esc in _ESCAPES:
                parts.append(_ESCAPES[esc])
                j += 2
            elif esc == "u":
                digits = text[j + 2 : j + 6]
                code = int(digits, 16) if _HEX4.fullmatch(digits) else None
                low = text[j + 8 : j + 12] if text.startswith("\\u", j + 6) else ""
                if code is not None and not 0xD800 <= code <= 0xDFFF:
                    parts.append(chr(code))
                    j += 6
                elif code is not None and code < 0xDC00 and _HEX4.fullmatch(low) and \
                        0xDC00 <= int(low, 16) <= 0xDFFF:
                    # A surrogate pair, as Java and JSON write a character past the BMP.
                    parts.append(chr(0x10000 + (code - 0xD800) * 0x400 + int(low, 16) - 0xDC00))
                    j += 12
                elif code is not None:
                    raise self.error(
                        f"invalid escape `\\u{digits}` in string: a lone surrogate, not a "
                        "character",
                        j,
                        j + 6,
                    )
                elif j + 2 + len(digits) == n and _HEX_UP_TO_4.fullmatch(digits):
                    raise self.incomplete(
                        f"unterminated string opened at {self.at(start)}", start, start + 1
                    )
                else:
                    raise self.error(
                        "invalid escape `\\u` in string: expected exactly 4 hex digits",
                        j,
                        j + 2,
                    )
            else:
                raise self.error(
                    f"invalid escape `\\{esc}` in string: expected one of "
                    '\\n \\t \\r \\" \\\\ \\0 \\uXXXX',
                    j,
                    j + 2,
                )
        end = j + 1
        return Syntax("atom", "".join(parts), self.span(start, end)), end

    def regex(self, start: int) -> tuple[Syntax, int]:
        """``#"…"``: the pattern is the text up to the closing quote, as written."""
        text, n = self.text, len(self.text)
        j = start + 2
        while True:
            j = _REGEX_CHUNK.match(text, j).end()
            if j >= n or (text[j] == "\\" and j + 1 >= n):
                raise self.incomplete(
                    f"unterminated regex opened at {self.at(start)}", start, start + 2
                )
            if text[j] == '"':
                break
            j += 2
        end = j + 1
        try:
            value = regex.compile_regex(text[start + 2 : j])
        except regex.RegexError as exc:
            at = start + 2 + min(exc.offset or 0, j - start - 2)
            raise self.error(str(exc), at, max(at + 1, end)) from None
        return Syntax("atom", value, self.span(start, end)), end

    def special_float(self, start: int) -> tuple[Syntax, int]:
        m = _TOKEN.match(self.text, start + 2)
        name = m.group() if m else ""
        end = start + 2 + len(name)
        if name not in _SPECIAL_FLOATS:
            raise self.error(
                f"unknown special value `##{name}`: expected ##Inf, ##-Inf or ##NaN", start, end
            )
        return Syntax("atom", _SPECIAL_FLOATS[name], self.span(start, end)), end

    def atom(self, start: int) -> tuple[Syntax, int]:
        token = _TOKEN.match(self.text, start).group()
        end = start + len(token)
        bad = _invisible(token)
        if bad >= 0:
            c = token[bad]
            where = "only at the start of the text" if c == "\ufeff" else "only in strings"
            raise self.error(f"invalid character {_char_text(c)}: it may appear {where}",
                             start + bad, start + bad + 1)
        if token[0] == ":":
            if len(token) == 1:
                raise self.error("a keyword needs a name after `:`", start, end)
            value: Any = Keyword(token[1:])
        else:
            body = token[1:] if token[0] in "+-" else token
            if body[:1].isascii() and body[:1].isdigit():
                value = self.number(token, start, end)
            elif body[:1] == "." and body[1:2].isascii() and body[1:2].isdigit():
                raise self.error(
                    f"invalid number `{token}`: write a digit before the point", start, end
                )
            elif token in _CONSTANTS:
                value = _CONSTANTS[token]
            else:
                value = Symbol(token)
        return Syntax("atom", value, self.span(start, end)), end

    def number(self, token: str, start: int, end: int) -> Any:
        m = _INT.fullmatch(token)
        if m:
            value = _parse_int(m.group(2).replace("_", ""), 10)
            return -value if m.group(1) == "-" else value
        m = _HEX.fullmatch(token)
        if m:
            value = int(m.group(2).replace("_", ""), 16)
            return -value if m.group(1) == "-" else value
        m = _RADIX.fullmatch(token)
        if m:
            radix = int(m.group(2))
            if not 2 <= radix <= 36:
                raise self.error(
                    f"invalid number `{token}`: a radix must be from 2 to 36", start, end
                )
            digits = m.group(3).replace("_", "")
            try:
                value = _parse_int(digits, radix)
            except ValueError:
                raise self.error(
                    f"invalid number `{token}`: a digit is too large for radix {radix}",
                    start,
                    end,
                ) from None
            return -value if m.group(1) == "-" else value
        m = _RATIO.fullmatch(token)
        if m:
            numerator = _parse_int(m.group(2).replace("_", ""), 10)
            denominator = _parse_int(m.group(3).replace("_", ""), 10)
            if denominator == 0:
                raise self.error(
                    f"invalid number `{token}`: a ratio's denominator cannot be zero", start, end
                )
            if m.group(1) == "-":
                numerator = -numerator
            return normalize_ratio(Fraction(numerator, denominator))
        if _FLOAT.fullmatch(token):
            return float(token.replace("_", ""))
        raise self.error(f"invalid number `{token}`", start, end)


def _read(text: str, file: str) -> tuple[list[Syntax], list[Any]]:
    return _Reader(text, file).run()


def read_syntax_all(text: str, file: str = "<string>") -> list[Syntax]:
    """Every form in ``text`` as :class:`Syntax` nodes; raises :class:`ReadError`."""
    return _read(text, file)[0]


def read_all(text: str, file: str = "<string>") -> list[Any]:
    """Every form in ``text`` as plain values; raises :class:`ReadError`."""
    return _read(text, file)[1]


def read_one(text: str, file: str = "<string>") -> Any:
    """The single form in ``text`` as a plain value; anything but exactly one is an error."""
    reader = _Reader(text, file)
    nodes, values = reader.run()
    if len(nodes) == 1:
        return values[0]
    if not nodes:
        end = len(text)
        raise reader.error("expected a form, found none", end, end)
    raise _fail(f"expected one form, found {len(nodes)}", nodes[1].span)


def is_complete(text: str) -> bool:
    """False only if ``text`` ends inside an unterminated form or string."""
    try:
        _read(text, "<string>")
    except IncompleteInput:
        return False
    except ReadError:
        return True
    return True


def _build(kind: str, items: list[Any]) -> Any:
    if kind == "list":
        return make_list(items)
    if kind == "vector":
        return Vector(items)
    if kind == "map":
        if len(items) % 2:
            raise ValueError("a map Syntax node needs an even number of children")
        return Map(zip(items[0::2], items[1::2]))
    if kind == "set":
        return Set(items)
    raise ValueError(f"unknown Syntax kind {kind!r}")


def strip(syntax: Syntax, spans: dict | None = None) -> Any:
    """The plain value of a :class:`Syntax` tree: lists become pairs, vectors Vector, and so on.

    With ``spans``, each collection made is recorded as ``spans[id(value)] = (value, span)``,
    so that :func:`to_syntax` can give macro output the spans of the forms it reused.
    """
    if syntax.kind == "atom":
        return syntax.value
    stack: list[tuple[Syntax, Any, list[Any]]] = [(syntax, iter(syntax.value), [])]
    while True:
        form, children, items = stack[-1]
        for child in children:
            if child.kind == "atom":
                items.append(child.value)
            else:
                stack.append((child, iter(child.value), []))
                break
        else:
            stack.pop()
            value = _build(form.kind, items)
            if spans is not None:
                spans[id(value)] = (value, form.span)
            if not stack:
                return value
            stack[-1][2].append(value)


def _compound(value: Any) -> tuple[str, Any] | None:
    """The kind and children of a readable collection, or None for anything else."""
    t = type(value)
    if value is EMPTY:
        return "list", ()
    if t is Pair:
        node = value
        while type(node) is Pair:
            node = node.rest
        return ("list", value) if node is EMPTY else None
    if t is Vector:
        return "vector", value
    if t is Map:
        return "map", (x for item in value.items() for x in item)
    if t is Set:
        return "set", value
    return None


def to_syntax(value: Any, span: Span, spans: dict | None = None) -> Syntax:
    """A :class:`Syntax` tree for ``value`` whose every node carries ``span``.

    With ``spans`` (filled by :func:`strip`), a collection found there keeps its recorded
    span, and atoms inside it take that span too.  Values that are not readable
    collections (including improper lists) become atoms.
    """

    def span_of(v: Any, default: Span) -> Span:
        if spans is None:
            return default
        known = spans.get(id(v))
        return known[1] if known is not None and known[0] is v else default

    shape = _compound(value)
    if shape is None:
        return Syntax("atom", value, span)
    stack: list[tuple[str, Any, list[Syntax], Span]] = [
        (shape[0], iter(shape[1]), [], span_of(value, span))]
    while True:
        kind, children, nodes, here = stack[-1]
        for child in children:
            shape = _compound(child)
            if shape is None:
                nodes.append(Syntax("atom", child, here))
            else:
                stack.append((shape[0], iter(shape[1]), [], span_of(child, here)))
                break
        else:
            stack.pop()
            node = Syntax(kind, tuple(nodes), here)
            if not stack:
                return node
            stack[-1][2].append(node)
