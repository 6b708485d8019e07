"""Building HTML text in which every value is escaped unless it is already HTML.

``Html`` marks text that is HTML; ``h(template, ...)`` fills a template's ``{}`` fields
with values escaped by ``html.escape`` (quotes too, so a value is safe inside an
attribute), except values that are ``Html`` already.  Nothing else in the UI writes
markup, so a value (task output, program text, a message) can never become markup.
"""

from __future__ import annotations

import html
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlencode


class Html(str):
    """Text that is HTML: made by ``h``, ``esc`` or ``join``, never from a value."""

    __slots__ = ()


def esc(value: Any) -> Html:
    """``value`` as HTML text: escaped, unless it is ``Html``; None is empty."""
    if isinstance(value, Html):
        return value
    return Html("" if value is None else html.escape(str(value), quote=True))


def h(template: str, *args: Any, **kwargs: Any) -> Html:
    """``template`` (HTML written here, never a value) with its fields filled by escaped
    values."""
    return Html(template.format(*(esc(a) for a in args),
                                **{k: esc(v) for k, v in kwargs.items()}))


def join(parts: Iterable[Any], sep: str = "") -> Html:
    """The parts, each escaped unless it is ``Html``, one after another."""
    return Html(sep.join(esc(p) for p in parts))


def url(path: str, **params: Any) -> str:
    """``path`` with the query of the params that are set (an escaped value still goes
    through ``esc`` in an attribute)."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return f"{path}?{query}" if query else path
