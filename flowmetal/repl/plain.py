"""The plain line REPL, for input that is not a terminal (a pipe, a file) or a dumb one.

It reads lines until they make complete forms (the reader decides, as at the terminal),
then evaluates them; a line that starts with a meta-command runs it.  A first line that
starts with ``#!`` is a comment, so ``flowmetal < script.fm`` runs a script made to be
executable.  Values go to
standard output, errors to standard error, and the REPL goes on after an error, as the
interactive one does.  Prompts are shown only when the input is a terminal.
"""

from __future__ import annotations

import sys
from typing import TextIO

from ..reader import is_complete
from .commands import is_command
from .repl import Repl


def run_plain(repl: Repl, stdin: TextIO | None = None, prompts: bool | None = None) -> int:
    """Read and run inputs from ``stdin`` until its end or ``,quit``.  The exit status:
    0, or 1 if an input failed (so a script of inputs can be checked)."""
    stdin = stdin if stdin is not None else sys.stdin
    if prompts is None:
        try:
            prompts = stdin.isatty()
        except (AttributeError, ValueError):
            prompts = False
    pending: list[str] = []
    first_line = True
    while not repl.done:
        if prompts:
            repl.console.write(repl.prompt() if not pending else
                               " " * (len(repl.prompt()) - 4) + "... ")
        try:
            line = stdin.readline()
        except KeyboardInterrupt:
            pending.clear()
            repl.console.write("\n")
            continue
        if not line:
            break
        if first_line:
            first_line = False
            if line.startswith("#!"):
                continue
        if not pending and is_command(line):
            repl.submit(line.strip())
            continue
        pending.append(line)
        text = "".join(pending)
        if not text.strip():
            pending.clear()
        elif is_complete(text):
            pending.clear()
            repl.submit(text)
    if "".join(pending).strip():
        repl.submit("".join(pending))  # incomplete: the reader says what is missing
    if prompts:
        repl.console.write("\n")
    return 1 if repl.failures else 0
