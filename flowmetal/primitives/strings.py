"""Strings, symbols and keywords, and turning values into text."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .. import limits, regex
from ..printer import display_string, shown, to_string
from ..procedures import define
from ..values import FlowmetalError, Keyword, Regex, Symbol, Vector, boolean, make_list
from .collections import items


def text(op: str, x: Any) -> str:
    """``x`` if it is a string, else a type error naming ``op``."""
    if type(x) is str:
        return x
    raise FlowmetalError(f"{op}: expected a string, got {shown(x)}", "type-error")


def _str1(x: Any) -> str:
    return "" if x is None else display_string(x)


@define("str", min_args=0, max_args=None)
def str_(*xs: Any) -> str:
    """The concatenated display text of the arguments (nil is empty)."""
    return joined("str", "", [_str1(x) for x in xs])


def joined(op: str, sep: str, parts: list[str]) -> str:
    """``sep.join(parts)``, refused before it is built if too long for the task."""
    if len(parts) > 1:
        limits.check_chars(op, sum(map(len, parts)) + len(sep) * (len(parts) - 1))
    return sep.join(parts)


@define("pr-str", min_args=0, max_args=None)
def pr_str(*xs: Any) -> str:
    """The readable text of the arguments, separated by spaces."""
    return " ".join(to_string(x) for x in xs)


@define("string?", min_args=1)
def is_string(x: Any) -> Any:
    """True for strings."""
    return boolean(type(x) is str)


@define("symbol?", min_args=1)
def is_symbol(x: Any) -> Any:
    """True for symbols."""
    return boolean(type(x) is Symbol)


@define("keyword?", min_args=1)
def is_keyword(x: Any) -> Any:
    """True for keywords."""
    return boolean(type(x) is Keyword)


@define("symbol", min_args=1)
def symbol(name: Any) -> Symbol:
    """The symbol with this name."""
    return name if type(name) is Symbol else Symbol(text("symbol", name))


@define("keyword", min_args=1)
def keyword(name: Any) -> Keyword:
    """The keyword with this name (no colon)."""
    if type(name) is Keyword:
        return name
    if type(name) is Symbol:
        return Keyword(name.name)
    return Keyword(text("keyword", name))


@define("name", min_args=1)
def name_(x: Any) -> str:
    """The name of a symbol or keyword (without namespace); a string itself."""
    if type(x) in (Symbol, Keyword):
        return x.name.rsplit("/", 1)[-1] if "/" in x.name[1:] else x.name
    return text("name", x)


@define("namespace", min_args=1)
def namespace(x: Any) -> Any:
    """The namespace part of :ns/k or ns/s, or nil."""
    if type(x) not in (Symbol, Keyword):
        raise FlowmetalError(f"namespace: expected a symbol or keyword, got {shown(x)}",
                             "type-error")
    return x.name.rsplit("/", 1)[0] if "/" in x.name[1:] else None


@define("subs", min_args=2, max_args=3)
def subs(s: Any, start: Any, end: Any = None) -> str:
    """The part of s from start to end (exclusive)."""
    s = text("subs", s)
    end = len(s) if end is None else end
    if not (type(start) is int and type(end) is int and 0 <= start <= end <= len(s)):
        raise FlowmetalError("subs: indexes out of range", "index-error")
    return s[start:end]


@define("upper-case", min_args=1)
def upper(s: Any) -> str:
    """s in upper case."""
    return text("upper-case", s).upper()


@define("lower-case", min_args=1)
def lower(s: Any) -> str:
    """s in lower case."""
    return text("lower-case", s).lower()


@define("trim", min_args=1)
def trim(s: Any) -> str:
    """s without leading and trailing whitespace."""
    return text("trim", s).strip()


@define("triml", min_args=1)
def triml(s: Any) -> str:
    """s without leading whitespace."""
    return text("triml", s).lstrip()


@define("trimr", min_args=1)
def trimr(s: Any) -> str:
    """s without trailing whitespace."""
    return text("trimr", s).rstrip()


@define("blank?", min_args=1)
def is_blank(s: Any) -> Any:
    """True if s is nil, empty or only whitespace."""
    return boolean(s is None or not text("blank?", s).strip())


@define("capitalize", min_args=1)
def capitalize(s: Any) -> str:
    """s with its first character in upper case and the rest in lower case."""
    s = text("capitalize", s)
    return s[:1].upper() + s[1:].lower()


@lru_cache(maxsize=256)
def _literal(sep: str) -> Regex:
    return regex.compile_regex(re.escape(sep))


def _separator(op: str, sep: Any) -> Regex:
    """``sep`` as a regex: a string stands for itself, literally."""
    return sep if type(sep) is Regex else _literal(text(op, sep))


@define("split", min_args=2, max_args=3)
def split(s: Any, sep: Any, limit: Any = 0) -> Vector:
    """A vector of the parts of s between matches of sep (a regex, or a string taken
    literally); trailing empty parts are dropped unless limit is negative, and a positive
    limit makes at most that many parts (Java's String.split, as Clojure's)."""
    if type(limit) is not int:
        raise FlowmetalError(f"split: expected an integer limit, got {shown(limit)}",
                             "type-error")
    return Vector(regex.split(_separator("split", sep), text("split", s), limit))


@define("split-lines", min_args=1)
def split_lines(s: Any) -> Vector:
    """A vector of the lines of s (split at \\n or \\r\\n; trailing empty lines dropped)."""
    parts = text("split-lines", s).replace("\r\n", "\n").split("\n")
    while len(parts) > 1 and not parts[-1]:
        parts.pop()
    return Vector(parts)


@define("%join-strings", min_args=1, max_args=2)
def join(sep_or_coll: Any, coll: Any = None) -> str:
    """(join coll) or (join sep coll): the display text of the items, separated."""
    if coll is None and type(sep_or_coll) is not str:
        return joined("join", "", [_str1(x) for x in items("join", sep_or_coll)])
    sep = text("join", sep_or_coll)
    return joined("join", sep, [_str1(x) for x in items("join", coll)])


@define("starts-with?", min_args=2)
def starts_with(s: Any, prefix: Any) -> Any:
    """True if s begins with prefix."""
    return boolean(text("starts-with?", s).startswith(text("starts-with?", prefix)))


@define("ends-with?", min_args=2)
def ends_with(s: Any, suffix: Any) -> Any:
    """True if s ends with suffix."""
    return boolean(text("ends-with?", s).endswith(text("ends-with?", suffix)))


@define("includes?", min_args=2)
def includes(s: Any, part: Any) -> Any:
    """True if part occurs in s."""
    return boolean(text("includes?", part) in text("includes?", s))


@define("index-of", min_args=2)
def index_of(s: Any, part: Any) -> Any:
    """The index of the first occurrence of part in s, or nil."""
    i = text("index-of", s).find(text("index-of", part))
    return None if i < 0 else i


@define("last-index-of", min_args=2)
def last_index_of(s: Any, part: Any) -> Any:
    """The index of the last occurrence of part in s, or nil."""
    i = text("last-index-of", s).rfind(text("last-index-of", part))
    return None if i < 0 else i


def _replace(op: str, s: Any, match: Any, new: Any, first_only: bool) -> str:
    s, new = text(op, s), text(op, new)
    if type(match) is Regex:
        return regex.replace(match, s, new, first_only, op)
    old = text(op, match)
    count = min(1, s.count(old)) if first_only else s.count(old)
    limits.check_chars(op, len(s) + count * (len(new) - len(old)))
    return s.replace(old, new, 1 if first_only else -1)


@define("replace", min_args=3)
@define("%replace", min_args=3)
def replace(s: Any, match: Any, new: Any) -> str:
    """s with every occurrence of match (a string, or a regex) replaced by the string new
    (in which $1 or ${name} is a group of a regex match, and \\$ a dollar sign)."""
    return _replace("replace", s, match, new, False)


@define("%replace-first", min_args=3)
def replace_first(s: Any, match: Any, new: Any) -> str:
    """Like replace, for the first occurrence only."""
    return _replace("replace-first", s, match, new, True)


@define("%replacement", min_args=2)
def replacement(op: Any, new: Any) -> str:
    """What a replacement function returned, which must be a string."""
    if type(new) is str:
        return new
    raise FlowmetalError(f"{op}: the replacement function must return a string, got "
                         f"{shown(new)}", "type-error")


@define("chars", min_args=1)
def chars(s: Any) -> Any:
    """A list of the one-character strings of s."""
    return make_list(text("chars", s))


@define("parse-int", min_args=1)
def parse_int(s: Any) -> Any:
    """The integer written in s (decimal, of any length), or nil if it is not one."""
    from .numbers import parse_integer

    digits = text("parse-int", s).strip()
    if digits.lstrip("+-").isdigit():
        limits.check_digits("parse-int", len(digits))
    return parse_integer(digits)


@define("parse-float", min_args=1)
def parse_float(s: Any) -> Any:
    """The float written in s, or nil if it is not one."""
    try:
        return float(text("parse-float", s).strip())
    except ValueError:
        return None


@define("read-string", min_args=1)
def read_string(s: Any) -> Any:
    """The first form read from the string."""
    from ..reader import read_all

    forms = read_all(text("read-string", s), "<read-string>")
    return forms[0] if forms else None
