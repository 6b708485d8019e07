"""Where the REPL's output goes: a text stream, with styles when it is a terminal.

Everything the REPL shows (values, errors, program output, the inspector's listings)
goes through one ``Console``, so it comes out in order.  Styled text is a list of
``(style, text)`` fragments in prompt_toolkit's style notation; on a plain stream the
styles are dropped and a highlighted span of source is underlined with carets instead.
"""

from __future__ import annotations

import sys
import threading
from typing import TextIO

Fragments = list[tuple[str, str]]

STYLES = {
    "error": "ansired",
    "note": "ansibrightblack",
    "value": "",
    "heading": "bold",
    "span": "reverse",
    "task": "ansicyan",
    "signature": "bold",
}


class Console:
    """Writes the REPL's output to ``stream`` (default: standard output); with
    ``color``, styled fragments and Flowmetal values are rendered in color."""

    def __init__(self, stream: TextIO | None = None, color: bool = False,
                 errors: TextIO | None = None):
        self.stream = stream
        self.errors = errors
        self.color = color
        self.at_line_start = True
        # The REPL's worker thread writes too: one piece of output at a time.
        self.lock = threading.RLock()

    def _target(self, error: bool = False) -> TextIO:
        if error and self.errors is not None:
            return self.errors
        return self.stream if self.stream is not None else sys.stdout

    def write(self, text: str, error: bool = False) -> None:
        """Write ``text`` as it is (program output: shown at once)."""
        if not text:
            return
        with self.lock:
            out = self._target(error)
            out.write(text)
            out.flush()
            self.at_line_start = text.endswith("\n")

    def fresh_line(self) -> None:
        """Start a new line unless the output is at the start of one."""
        if not self.at_line_start:
            self.write("\n")

    def line(self, text: str = "", style: str = "", error: bool = False) -> None:
        """Write one line in a named style (``STYLES``); "error" lines go to the error
        stream, when the console has one."""
        self.fragments([(STYLES.get(style, style), text), ("", "\n")],
                       error or style == "error")

    def fragments(self, fragments: Fragments, error: bool = False) -> None:
        """Write styled fragments (styles dropped unless the console has color)."""
        if not self.color:
            self.write("".join(text for _, text in fragments), error)
            return
        self._render(fragments, error)

    def value(self, text: str) -> None:
        """Write the printed form of a value, highlighted as Flowmetal source."""
        if not self.color:
            self.write(text + "\n")
            return
        from prompt_toolkit.formatted_text import PygmentsTokens, to_formatted_text

        from .lexer import FlowmetalLexer

        tokens = [(kind, part) for _, kind, part in
                  FlowmetalLexer().get_tokens_unprocessed(text)]
        self.fragments([*to_formatted_text(PygmentsTokens(tokens)), ("", "\n")])

    def source(self, prefix: str, text: str, start: int, end: int,
               error: bool = False) -> None:
        """Write a line of source with columns ``start`` to ``end`` (0-based, end
        exclusive) highlighted: in reverse video on a terminal, else with carets below."""
        start = max(0, min(start, len(text)))
        end = max(start + 1, min(end, len(text)))
        if self.color:
            self.fragments([("", prefix + text[:start]), (STYLES["span"], text[start:end]),
                            ("", text[end:] + "\n")], error)
            return
        pad = "".join(c if c == "\t" else " " for c in text[:start])
        self.write(f"{prefix}{text}\n{' ' * len(prefix)}{pad}{'^' * (end - start)}\n",
                   error)

    def _render(self, fragments: Fragments, error: bool) -> None:
        from prompt_toolkit import print_formatted_text
        from prompt_toolkit.formatted_text import FormattedText

        with self.lock:
            out = self._target(error)
            print_formatted_text(FormattedText(fragments), end="", file=out)
            out.flush()
            text = "".join(part for _, part in fragments)
            if text:
                self.at_line_start = text.endswith("\n")
