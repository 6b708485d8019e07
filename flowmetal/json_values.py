"""JSON and Flowmetal values, both ways.

To JSON: maps are objects (keyword keys by their name, ``:a/b`` as ``"a/b"``; string
keys as they are; other keys are an error), vectors, lists and sets are arrays, nil is
null, true and false are booleans, integers, floats and strings are themselves, ratios
are floats, keywords and symbols are their names.  From JSON: objects are maps with
keyword keys, arrays are vectors, null is nil.  NaN and the infinities have no JSON form.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

from .printer import bounded_string
from .values import (
    FALSE,
    TRUE,
    Boolean,
    EmptyList,
    FlowmetalError,
    Keyword,
    Map,
    Pair,
    Set,
    Symbol,
    Vector,
    kw,
)

MAX_DEPTH = 512  # deeper JSON is refused rather than crashing the parser
INT_DIGITS = 4300  # digits of the longest integer read (Python's own limit)
_SURROGATE = re.compile("[\ud800-\udfff]")


def to_plain(value: Any, depth: int = 0) -> Any:
    """The value as plain Python data for ``json.dumps`` (FlowmetalError if it has no
    JSON form)."""
    if depth > MAX_DEPTH:
        raise FlowmetalError("json-encode: nested too deeply", "type-error")
    t = type(value)
    if value is None:
        return None
    if t is Boolean:
        return value is TRUE
    if t is str or t is int:
        return value
    if t is float:
        if not math.isfinite(value):
            raise FlowmetalError(f"json-encode: {value} has no JSON form", "type-error")
        return value
    if t is Fraction:
        return float(value)
    if t is Keyword or t is Symbol:
        return value.name
    if t is Map:
        out = {}
        for k, v in value.items():
            if type(k) is Keyword:
                key = k.name
            elif type(k) is str:
                key = k
            else:
                raise FlowmetalError(f"json-encode: a JSON object key must be a keyword or "
                                     f"a string, not {bounded_string(k, 80)}", "type-error")
            out[key] = to_plain(v, depth + 1)
        return out
    if t is Vector or t is Set or t is EmptyList:
        return [to_plain(v, depth + 1) for v in value]
    if t is Pair:
        items = []
        while type(value) is Pair:
            items.append(to_plain(value.first, depth + 1))
            value = value.rest
        return items
    raise FlowmetalError(f"json-encode: {bounded_string(value, 80)} has no JSON form",
                         "type-error")


def from_plain(data: Any) -> Any:
    """Plain data from ``json.loads`` as a Flowmetal value."""
    t = type(data)
    # (Loops, not comprehensions: one Python frame per level of the data.)
    if t is dict:
        items = {}
        for k, v in data.items():
            items[kw(k)] = from_plain(v)
        return Map(items)
    if t is list:
        values = []
        for v in data:
            values.append(from_plain(v))
        return Vector(values)
    if t is bool:
        return TRUE if data else FALSE
    return data


def encode(value: Any) -> str:
    """The value as JSON text."""
    import json  # (here: most commands never read or write JSON)

    return json.dumps(to_plain(value), ensure_ascii=False, separators=(",", ":"))


def parse(text: str | bytes) -> Any:
    """The plain data of JSON text, as ``json.loads`` makes it, refusing (ValueError,
    ``json.JSONDecodeError`` with the position where the text is not JSON) what JSON
    (RFC 8259) does not have: ``NaN``, ``Infinity``, a number too big for a float or of
    more than ``INT_DIGITS`` digits, a ``\\u`` escape of a lone surrogate (not a
    character, and no text can hold it), nesting deeper than ``MAX_DEPTH``."""
    import json  # (here: most commands never read or write JSON)

    data = json.loads(text, parse_constant=_not_json, parse_float=_finite, parse_int=_int)
    # Only an escape makes a lone surrogate: look for one only where escapes are.
    if (b"\\u" if type(text) is bytes else "\\u") in text and _has_surrogate(data):
        raise ValueError("a \\u escape names a lone surrogate, which is not a character")
    if _deeper_than(data, MAX_DEPTH):
        raise ValueError(f"nested deeper than {MAX_DEPTH}")
    return data


def decode(text: str | bytes) -> Any:
    """The Flowmetal value of JSON text (FlowmetalError, with the position if it is not
    JSON; see ``parse`` for what else is refused)."""
    import json

    try:
        return from_plain(parse(text))
    except json.JSONDecodeError as exc:
        raise FlowmetalError(f"json-decode: not JSON at line {exc.lineno} column "
                             f"{exc.colno}: {exc.msg}", "json-error") from None
    except ValueError as exc:  # (bytes that are not UTF-8 too)
        raise FlowmetalError(f"json-decode: {exc}", "json-error") from None
    except RecursionError:
        raise FlowmetalError(f"json-decode: nested deeper than {MAX_DEPTH}",
                             "json-error") from None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _int(text: str) -> int:
    if len(text) > INT_DIGITS:
        raise ValueError(f"a number of {len(text)} digits is longer than {INT_DIGITS}")
    return int(text)


def _finite(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise ValueError(f"the number {text[:40]} is too big for a float")
    return value


def _deeper_than(data: Any, most: int) -> bool:
    """Whether plain data nests arrays and objects more than ``most`` deep (without
    recursion: the data may be as deep as the parser allows)."""
    level = [data] if type(data) in (dict, list) else []
    for _ in range(most + 1):
        level = [v for x in level for v in (x.values() if type(x) is dict else x)
                 if type(v) in (dict, list)] if level else []
        if not level:
            return False
    return True


def _has_surrogate(data: Any) -> bool:
    """Whether a string in plain JSON data holds a surrogate code point."""
    t = type(data)
    if t is str:
        return _SURROGATE.search(data) is not None
    if t is dict:
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in data.items())
    if t is list:
        return any(_has_surrogate(v) for v in data)
    return False

