"""Regular expressions: ``re-pattern re-find re-matches re-seq`` and the pieces the
standard library's ``replace`` works with (see ``flowmetal/regex.py``)."""

from __future__ import annotations

from typing import Any

from .. import regex as R
from ..printer import shown
from ..procedures import define
from ..values import FlowmetalError, Regex, boolean, make_list, truthy
from .strings import text


def pattern(op: str, x: Any) -> Regex:
    """``x`` if it is a regex, else a type error naming ``op``."""
    if type(x) is Regex:
        return x
    raise FlowmetalError(f"{op}: expected a regex, got {shown(x)}", "type-error")


@define("re-pattern", min_args=1)
def re_pattern(s: Any) -> Regex:
    """The regex whose pattern is the string s (a regex itself)."""
    if type(s) is Regex:
        return s
    try:
        return R.compile_regex(text("re-pattern", s))
    except R.RegexError as exc:
        where = "" if exc.offset is None else f" (at offset {exc.offset})"
        raise FlowmetalError(f"re-pattern: {exc}{where}", "regex-error") from None


@define("regex?", min_args=1)
def is_regex(x: Any) -> Any:
    """True for regexes."""
    return boolean(type(x) is Regex)


@define("re-find", min_args=2)
def re_find(re: Any, s: Any) -> Any:
    """The first match of re in s: the text, or [text group1 …] if re has groups; nil if
    there is none."""
    return R.find(pattern("re-find", re), text("re-find", s))


@define("re-matches", min_args=2)
def re_matches(re: Any, s: Any) -> Any:
    """The match of re against the whole of s (as re-find gives it), or nil."""
    return R.matches(pattern("re-matches", re), text("re-matches", s))


@define("re-seq", min_args=2)
def re_seq(re: Any, s: Any) -> Any:
    """A list of every match of re in s (as re-find gives them), or nil if there is none."""
    found = [R.match_value(m) for m in R.find_all(pattern("re-seq", re), text("re-seq", s))]
    return make_list(found) if found else None


@define("%re-splice", min_args=4)
def re_splice(op: Any, re: Any, s: Any, first_only: Any) -> Any:
    """s as a list alternating text and matches: (text match text … text)."""
    op = text("%re-splice", op)
    return make_list(R.splice(pattern(op, re), text(op, s), truthy(first_only), op))
