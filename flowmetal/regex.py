"""Regular expressions: patterns as Clojure writes them, run on Python's ``re``.

A pattern is kept as written (``#"a\\d"`` is the pattern ``a\\d``: backslashes are not
doubled); the only change made to it is that a bare ``"`` becomes ``\\"``, which matches
the same text and lets every pattern print as a ``#"…"`` literal that reads back.
The dialect is Python's, with Java's spellings of what Clojure programs use most
accepted too: named groups ``(?<name>…)``, back references ``\\k<name>`` and the end of
input ``\\z``.  Matches take Clojure's shapes: the matched text when the pattern has no
groups, else a vector of the match and each group (nil for a group that took no part).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from . import limits
from .values import FlowmetalError, Regex, Vector

__all__ = ["RegexError", "compile_regex", "find", "find_all", "match_value", "matches",
           "replace", "split", "splice"]

_CHECK_EVERY = 4096  # matches between two checks of a result's size


class RegexError(ValueError):
    """A pattern that does not compile; ``offset`` is where in the pattern, if known."""

    def __init__(self, message: str, offset: int | None):
        super().__init__(message)
        self.offset = offset


_JAVA_NAMED_GROUP = re.compile(r"\(\?<(?=[A-Za-z])")


def _normalize(pattern: str) -> str:
    """The pattern with each bare ``"`` escaped (so it prints as a literal)."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(pattern[i:i + 2])
            i += 2
            continue
        out.append('\\"' if c == '"' else c)
        i += 1
    return "".join(out)


def _python_dialect(pattern: str) -> str:
    """The pattern in Python's dialect: Java's named groups, ``\\k<name>`` and ``\\z``
    rewritten (outside character classes)."""
    out, i, n, in_class = [], 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            nxt = pattern[i + 1]
            end = pattern.find(">", i + 3) if pattern.startswith("k<", i + 1) else -1
            if not in_class and end > 0:
                out.append(f"(?P={pattern[i + 3:end]})")
                i = end + 1
                continue
            out.append("\\Z" if nxt == "z" and not in_class else pattern[i:i + 2])
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
            if pattern.startswith("^]", i + 1) or pattern.startswith("]", i + 1):
                skip = 3 if pattern[i + 1] == "^" else 2
                out.append(pattern[i:i + skip])
                i += skip
                continue
        elif _JAVA_NAMED_GROUP.match(pattern, i):
            out.append("(?P<")
            i += 3
            continue
        out.append(c)
        i += 1
    return "".join(out)


def compile_regex(pattern: str) -> Regex:
    """The regex for ``pattern``; raises :class:`RegexError` if it does not compile."""
    pattern = _normalize(pattern)
    try:
        compiled = re.compile(_python_dialect(pattern))
    except re.error as exc:
        raise RegexError(f"invalid regular expression: {exc.msg}", exc.pos) from None
    except (RecursionError, OverflowError, MemoryError) as exc:
        raise RegexError(f"invalid regular expression: {type(exc).__name__}", None) from None
    return Regex(pattern, compiled)


def match_value(m: re.Match) -> Any:
    """A match as Clojure gives it: the text, or a vector of the text and the groups."""
    if not m.re.groups:
        return m.group()
    return Vector((m.group(), *m.groups()))


def find(regex: Regex, s: str) -> Any:
    """The first match of ``regex`` in ``s`` (see :func:`match_value`), or nil."""
    m = regex.compiled.search(s)
    return None if m is None else match_value(m)


def matches(regex: Regex, s: str) -> Any:
    """The match of ``regex`` against the whole of ``s``, or nil."""
    m = regex.compiled.fullmatch(s)
    return None if m is None else match_value(m)


def find_all(regex: Regex, s: str, op: str = "re-seq") -> Iterator[re.Match]:
    """Every match, left to right; after an empty match the search moves on one
    character, as Java's ``Matcher.find`` does.  Stops with a ``:limit-error`` naming
    ``op`` when there are more than a task's state could hold."""
    for n, m in enumerate(regex.compiled.finditer(s), 1):
        if n % _CHECK_EVERY == 0:
            limits.check_items(op, n)
        yield m


def split(regex: Regex, s: str, limit: int = 0) -> list[str]:
    """``s`` cut at the matches of ``regex``, as Java's ``String.split(regex, limit)``:
    a positive limit makes at most that many parts; zero drops trailing empty parts; a
    negative limit keeps them.  A match of nothing at the start makes no empty first part."""
    parts, start = [], 0
    if s:
        for m in find_all(regex, s, "split"):
            if 0 < limit <= len(parts) + 1:
                break
            if m.end() == 0:
                continue  # an empty match at the start cuts off nothing
            parts.append(s[start:m.start()])
            start = m.end()
    parts.append(s[start:])
    if limit == 0:
        while len(parts) > 1 and not parts[-1]:
            parts.pop()
        if len(parts) == 1 and not parts[0] and s:
            parts = []
    return parts


def splice(regex: Regex, s: str, first_only: bool = False, op: str = "replace"
           ) -> list[Any]:
    """``s`` as alternating text and matches: ``[text, match, text, …, text]``, with
    each match in Clojure's shape (what a replacement function is called with)."""
    out: list[Any] = []
    start = 0
    for m in find_all(regex, s, op):
        out += (s[start:m.start()], match_value(m))
        start = m.end()
        if first_only:
            break
    out.append(s[start:])
    return out


def _replacement(template: str, regex: Regex) -> Callable[[re.Match], str]:
    """The function a Java replacement string stands for: ``$1``, ``${name}`` insert
    groups, ``\\x`` is a literal x (Java's ``Matcher.appendReplacement``)."""
    groups, names = regex.compiled.groups, regex.compiled.groupindex
    pieces: list[str | int] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c == "\\":
            if i + 1 >= n:
                raise FlowmetalError("replace: the replacement ends in `\\`: "
                                     "a character to escape is missing", "regex-error")
            pieces.append(template[i + 1])
            i += 2
        elif c == "$":
            if template.startswith("{", i + 1):
                end = template.find("}", i + 2)
                name = template[i + 2:end] if end > 0 else ""
                if name not in names:
                    raise FlowmetalError(f"replace: the pattern has no group named {name!r}",
                                         "regex-error")
                pieces.append(names[name])
                i = end + 1
                continue
            j = i + 1
            if j >= n or not template[j].isdigit() or not template[j].isascii():
                raise FlowmetalError("replace: `$` in the replacement must be followed by a "
                                     "group number or {name} (write \\$ for a dollar sign)",
                                     "regex-error")
            number = int(template[j])
            j += 1
            # Java takes further digits while they still name a group.
            while j < n and template[j].isascii() and template[j].isdigit() and \
                    number * 10 + int(template[j]) <= groups:
                number = number * 10 + int(template[j])
                j += 1
            if number > groups:
                raise FlowmetalError(f"replace: the pattern has no group {number}",
                                     "regex-error")
            pieces.append(number)
            i = j
        else:
            j = i
            while j < n and template[j] not in "\\$":
                j += 1
            pieces.append(template[i:j])
            i = j

    def expand(m: re.Match) -> str:
        return "".join(p if type(p) is str else (m.group(p) or "") for p in pieces)

    return expand


def replace(regex: Regex, s: str, template: str, first_only: bool = False,
            op: str = "replace") -> str:
    """``s`` with the matches of ``regex`` replaced by the Java replacement ``template``;
    a result too long for the task is refused as it grows."""
    expand = _replacement(template, regex)
    out, start, size = [], 0, 0
    for m in find_all(regex, s, op):
        piece = expand(m)
        out += (s[start:m.start()], piece)
        size += m.start() - start + len(piece)
        start = m.end()
        limits.check_chars(op, size + len(s) - start)
        if first_only:
            break
    out.append(s[start:])
    return "".join(out)
