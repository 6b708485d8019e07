"""JSON and Flowmetal values, both ways.

To JSON: maps are objects (keyword keys by their name, ``:a/b`` as ``"a/b"``; string
keys as they are; other keys are an error), vectors, lists and sets are arrays, nil is
null, true and false are booleans, integers, floats and strings are themselves, ratios
are floats, keywords and symbols are their names.  From JSON: objects are maps with
keyword keys, arrays are vectors, null is nil.  NaN and the infinities have no JSON form.
"""

from __future__ import annotations

import math
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
    if t is dict:
        return Map({kw(k): from_plain(v) for k, v in data.items()})
    if t is list:
        return Vector(from_plain(v) for v in data)
    if t is bool:
        return TRUE if data else FALSE
    return data


def encode(value: Any) -> str:
    """The value as JSON text."""
    import json  # (here: most commands never read or write JSON)

    return json.dumps(to_plain(value), ensure_ascii=False, separators=(",", ":"))


def decode(text: str | bytes) -> Any:
    """The Flowmetal value of JSON text (FlowmetalError with the position if it is not
    JSON)."""
    import json

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FlowmetalError(f"json-decode: not JSON at line {exc.lineno} column "
                             f"{exc.colno}: {exc.msg}", "json-error") from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise FlowmetalError(f"json-decode: {type(exc).__name__}", "json-error") from None
    return from_plain(data)

