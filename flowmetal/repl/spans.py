"""Source text around a position: the text of a span, the line at a position, the extent
of the form that starts there, and the source of a program known by its file name."""

from __future__ import annotations

from pygments.token import Error, Punctuation, String

from ..program import PROGRAMS
from ..values import Span
from .console import Console
from .lexer import FlowmetalLexer

OPENERS = ("(", "[", "{", "#{")
CLOSERS = (")", "]", "}")


def offset(text: str, line: int, col: int) -> int:
    """The offset in ``text`` of 1-based ``line`` and ``col`` (clamped to the text)."""
    start = 0
    for _ in range(line - 1):
        found = text.find("\n", start)
        if found < 0:
            return len(text)
        start = found + 1
    end = text.find("\n", start)
    end = len(text) if end < 0 else end
    return min(start + max(col - 1, 0), end)


def span_text(text: str, span: Span) -> str:
    """The text a span covers."""
    return text[offset(text, span[1], span[2]):offset(text, span[3], span[4])]


def line_at(text: str, line: int) -> str | None:
    """Line number ``line`` (1-based) of ``text``, without its newline."""
    lines = text.split("\n")
    return lines[line - 1] if 0 < line <= len(lines) else None


def form_end(text: str, start: int) -> int:
    """Where the form starting at offset ``start`` of ``text`` ends (exclusive): after
    its closing bracket, or the end of ``text`` if it does not close there."""
    depth = 0
    in_string = False
    for pos, kind, part in FlowmetalLexer().get_tokens_unprocessed(text[start:]):
        end = start + pos + len(part)
        if kind is String and part == '"':
            in_string = not in_string
            if not in_string and depth == 0:
                return end
        elif in_string:
            continue
        elif kind is Punctuation and part in OPENERS:
            depth += 1
        elif kind is Punctuation and part in CLOSERS:
            depth -= 1
            if depth <= 0:
                return end
        elif depth == 0 and not part.isspace() and kind is not Error and \
                part not in ("'", "`", "~", "~@", "#_"):
            return end
    return len(text)


def program_source(file: str) -> str | None:
    """The source of the latest program analyzed here under the name ``file``."""
    found = None
    for program in list(PROGRAMS.values()):
        if program.file == file:
            found = program.source
    return found


def show_form(console: Console, prefix: str, source: str, col: int) -> None:
    """Show a line of source with the form that starts at 1-based ``col`` highlighted."""
    start = max(col - 1, 0)
    console.source(prefix, source, start, form_end(source, start))
