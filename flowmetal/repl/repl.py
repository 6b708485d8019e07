"""The REPL: what one input does, whichever front end read it.

``Repl`` holds the session (through its ``Evaluator``), the store it works on, the task
being inspected and the REPL's worker.  ``submit(text)`` runs a meta-command or
evaluates Flowmetal.  ``main`` picks the front end: the prompt_toolkit one on a terminal
(``interactive.py``), the plain line one otherwise (``plain.py``), so piped input works
as a script with the same semantics.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from ..runtime.records import TaskError
from ..store import StoreError
from ..values import FlowmetalError
from .commands import is_command, run_command
from .console import Console
from .evaluator import Evaluator, Outcome
from .inspector import Inspector


class Repl:
    """The state of one REPL and what its inputs do."""

    def __init__(self, console: Console, store_path: str | None = None):
        self.console = console
        self.evaluator = Evaluator(console)
        self.store_path = store_path
        self.inspector: Inspector | None = None
        self.last_task: str | None = None
        self.done = False
        self.failures = 0
        self._store: Any = None
        self._worker: Any = None

    def store(self, create: bool = False) -> Any:
        """The store (``--store``, $FLOWMETAL_HOME or ./.flowmetal), opened on first use;
        unless ``create``, a missing store is a StoreError."""
        if self._store is None:
            from ..interpreter import base
            from ..store import open_store

            self._store = open_store(self.store_path, create=create)
            base()
        return self._store

    def background(self) -> Any:
        """The REPL's worker for the store (started by its first task)."""
        if self._worker is None:
            from .background import BackgroundWorker

            self._worker = BackgroundWorker(self.store(create=True), self.console)
        return self._worker

    def shows_output_of(self, task_id: str) -> bool:
        """True if the REPL's worker shows this task's output as it commits (a task
        started here, or one those spawned)."""
        return self._worker is not None and task_id in self._worker.followed

    def attach(self, task: str) -> None:
        """Inspect ``task`` (an id, or a part of one naming one task)."""
        run_command(self, f",attach {task}")

    def prompt(self) -> str:
        """The prompt: ``fm> ``, or while a task is inspected ``fm[ID#FRAME]> ``."""
        if self.inspector is None:
            return "fm> "
        return f"fm[{self.inspector.id[-6:]}#{self.inspector.index}]> "

    def evaluate(self, text: str, file: str | None = None, session: Any = None) -> Outcome:
        """Evaluate Flowmetal source (in the REPL's session or ``session``), counting
        failures."""
        outcome = self.evaluator.evaluate(text, file, session)
        if outcome.status in ("error", "syntax-error"):
            self.failures += 1
        return outcome

    def submit(self, text: str) -> None:
        """Do what one input says: a meta-command or Flowmetal code.  Nothing raised
        here stops the REPL; Ctrl-C returns to the prompt."""
        if not text.strip():
            return
        try:
            if is_command(text):
                run_command(self, text)
            else:
                self.evaluate(text)
        except KeyboardInterrupt:
            self.console.fresh_line()
            self.console.line("interrupted", "error")
        except (TaskError, StoreError) as exc:
            self.failures += 1
            self.console.line(str(exc), "error")
        except FlowmetalError as exc:
            self.failures += 1
            self.console.line(f"error: {exc.message}", "error")
        except Exception as exc:
            self.failures += 1
            if os.environ.get("FLOWMETAL_TRACEBACK"):
                traceback.print_exc()
            self.console.line(f"internal error: {type(exc).__name__}: {exc}", "error")

    def close(self) -> None:
        """Stop the REPL's worker (its tasks stay in the store)."""
        if self._worker is not None:
            self._worker.stop()


def interactive_terminal() -> bool:
    """True when standard input and output are both terminals that can be drawn on."""
    try:
        tty = sys.stdin.isatty() and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False
    return tty and os.environ.get("TERM", "") != "dumb"


def main(store_path: str | None = None, attach: str | None = None) -> int:
    """Run a REPL on the terminal, or a plain one when standard input or output is not
    a terminal; with ``attach``, start by inspecting that task.  The exit status: 0, or
    (plain REPL) 1 if an input failed."""
    if interactive_terminal():
        from .interactive import GREETING, run_interactive

        repl = Repl(Console(color=True), store_path)
        repl.console.line(GREETING, "note")

        def runner(repl: Repl) -> int:
            return run_interactive(repl, greet=False)
    else:
        from .plain import run_plain

        repl = Repl(Console(errors=sys.stderr), store_path)
        runner = run_plain
    try:
        if attach is not None:
            repl.attach(attach)
            if repl.inspector is None:
                return 2
        return runner(repl)
    finally:
        repl.close()
