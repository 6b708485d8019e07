"""Durations, sizes and counts as a person writes them on a command line (``30s``,
``1.5h``, ``7d``; ``64M``; ``none``) and as ``flowmetal show`` writes them back."""

from __future__ import annotations

import math
import re

DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
SIZE_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20,
              "mb": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30}
NONE_WORDS = ("none", "never", "forever", "inf")
_NUMBER = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([a-zA-Z]*)\s*")


class QuantityError(ValueError):
    """Text that is not the quantity asked for; the message says what would be."""


def parse_duration(text: str, none_ok: bool = True) -> float:
    """Seconds from ``30``, ``30s``, ``500ms``, ``5m``, ``2h``, ``7d``, ``1w``;
    ``none`` (with ``none_ok``) is ``math.inf``."""
    if none_ok and text.strip().lower() in NONE_WORDS:
        return math.inf
    match = _NUMBER.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or (unit or "s") not in DURATION_UNITS:
        raise QuantityError(f"expected a duration such as 30s, 5m, 2h or 7d"
                            f"{' (or none)' if none_ok else ''}, got {text!r}")
    return float(match.group(1)) * DURATION_UNITS[unit or "s"]


def parse_size(text: str) -> int:
    """Bytes from ``1000``, ``64K``, ``64M``, ``1G`` (powers of 1024)."""
    match = _NUMBER.fullmatch(text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in SIZE_UNITS:
        raise QuantityError(f"expected a size such as 1000, 64K, 64M or 1G, got {text!r}")
    return int(float(match.group(1)) * SIZE_UNITS[unit])


def parse_count(text: str, none_ok: bool = True) -> int | None:
    """A positive whole number (``_`` separators allowed); ``none`` (with
    ``none_ok``) is None."""
    if none_ok and text.strip().lower() in NONE_WORDS:
        return None
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise QuantityError(f"expected a positive whole number{' (or none)' if none_ok else ''}"
                            f", got {text!r}")
    return value


def duration_text(seconds: float | None) -> str:
    """``1d``, ``2h30m``, ``45s``, ``1.5s``; ``none`` for None or infinity."""
    if seconds is None or seconds == math.inf:
        return "none"
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:g}s"
    out, left = [], int(round(seconds))
    for unit in ("d", "h", "m", "s"):
        size = int(DURATION_UNITS[unit])
        if left >= size or (unit == "s" and not out):
            out.append(f"{left // size}{unit}")
            left %= size
    return "".join(out)


def size_text(size: int) -> str:
    """``64 MiB``, ``1.5 KiB``, ``100 bytes``."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} bytes"
