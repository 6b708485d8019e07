"""Reporting errors to a person: uncaught Flowmetal errors and errors in source text."""

from __future__ import annotations

from typing import Any

from .machine import (
    K_BACKTRACE,
    K_COL,
    K_DATA,
    K_FILE,
    K_LINE,
    K_MESSAGE,
    K_MORE,
    K_PROC,
    K_REPEATED,
    K_TYPE,
)
from .printer import bounded_string, display_string, to_string
from .values import TRUE, FlowmetalError, Map

SHOWN_CHARS = 2000  # of an error's data (or a thrown value) shown to a person


def format_error(error: Any) -> str:
    """The text shown for an uncaught error value, without a final newline.

    For an error map::

        error: MESSAGE (:type)
          data: DATA                      (only when :data is not nil)
          at PROC (FILE:LINE:COL)         (one line per frame, innermost first)

    Any other thrown value is shown as ``error: uncaught VALUE``.  DATA and VALUE are
    cut at ``SHOWN_CHARS`` characters (the store keeps them whole).
    """
    if type(error) is not Map:
        return f"error: uncaught {bounded_string(error, SHOWN_CHARS)}"
    message = error.get(K_MESSAGE)
    kind = error.get(K_TYPE)
    head = "error: " + (display_string(message) if message is not None else "(no message)")
    if kind is not None:
        head += f" ({to_string(kind)})"
    lines = [head]
    data = error.get(K_DATA)
    if data is not None:
        lines.append(f"  data: {bounded_string(data, SHOWN_CHARS)}")
    frames = error.get(K_BACKTRACE)
    if frames is not None and not isinstance(frames, (list, tuple)):
        frames = None
    for frame in frames or ():
        if type(frame) is Map and frame.get(K_MORE) is TRUE:
            lines.append("  ... (outer frames left out)")
        else:
            lines.append("  at " + _frame_text(frame))
            repeated = frame.get(K_REPEATED) if type(frame) is Map else None
            if repeated:
                lines.append(f"  ... the frame above repeated {repeated} more times")
    return "\n".join(lines)


def error_summary(error: Any) -> str:
    """An uncaught error in one line: ``MESSAGE (:type) at FILE:LINE:COL`` (the
    innermost frame of its backtrace), or ``uncaught VALUE``."""
    head = format_error(error).split("\n", 1)[0].removeprefix("error: ")
    frames = error.get(K_BACKTRACE) if type(error) is Map else None
    frame = frames[0] if isinstance(frames, (list, tuple)) and frames else None
    if type(frame) is Map and frame.get(K_FILE) is not None:
        head += (f" at {display_string(frame.get(K_FILE))}:{frame.get(K_LINE)}:"
                 f"{frame.get(K_COL)}")
    return head


def _frame_text(frame: Any) -> str:
    if type(frame) is not Map:
        return to_string(frame)
    proc = frame.get(K_PROC)
    name = proc if type(proc) is str else to_string(proc)
    return f"{name} ({display_string(frame.get(K_FILE))}:{frame.get(K_LINE)}:{frame.get(K_COL)})"


def format_source_error(exc: FlowmetalError, file: str) -> str:
    """``file:line:col: message`` for a read or syntax error (``file`` if no position)."""
    span = exc.span
    if span is None:
        return f"{file}: {exc.message}"
    return f"{span[0]}:{span[1]}:{span[2]}: {exc.message}"

