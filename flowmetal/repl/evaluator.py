"""Evaluating the REPL's input: one session for the whole REPL, each input run in slices.

Each input is analyzed as a program of its own, named ``<repl-N>`` so backtraces and the
inspector can show its source, and run on a machine in slices of reductions.  A Ctrl-C
(KeyboardInterrupt) between two transitions leaves the machine, and so the session's
globals, consistent: the REPL reports the interruption and carries on with every
definition made so far.

Effects that need no task are answered here: ``sleep`` sleeps, ``now`` and ``random``
answer at once.  ``spawn``, ``send``, ``receive`` and ``join`` need a durable task, so they
raise a ``:needs-task`` error that says to use ``,spawn``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from ..interpreter import Session
from ..machine import Machine, error_value, site_backtrace
from ..printer import to_string
from ..reader import Syntax, read_syntax_all
from ..report import format_error, format_source_error
from ..values import FlowmetalError, Keyword, Map, Symbol, Vector, kw
from .console import Console
from .spans import line_at, span_text

SLICE = 10_000
RESULT_NAMES = (Symbol("*1"), Symbol("*2"), Symbol("*3"))
LAST_ERROR = Symbol("*e")
DEFINERS = (Symbol("def"), Symbol("defn"), Symbol("defmacro"))
K_OP = kw("op")
TASK_ONLY = {"spawn": "spawn", "send": "send", "next-message": "receive", "join": "join"}


@dataclass
class Outcome:
    """How one evaluation ended: ``status`` is "done", "error", "syntax-error",
    "interrupted" or "empty" (no forms); ``value`` or ``error`` is set accordingly."""

    status: str
    value: Any = None
    error: Any = None
    seconds: float = 0.0
    reductions: int = 0


class Evaluator:
    """Runs the REPL's inputs in one session; shows output, values and errors on
    ``console``."""

    def __init__(self, console: Console, slice_size: int = SLICE):
        self.console = console
        self.slice_size = slice_size
        self.count = 0
        self.running: Machine | None = None  # the machine being run, while it runs
        self.definitions: dict[str, str] = {}
        self.reset()

    def reset(self) -> None:
        """A fresh session: only the standard library, no definitions, no results."""
        self.session = Session()
        self.definitions = {}
        for name in (*RESULT_NAMES, LAST_ERROR):
            self.session.globals[name] = None

    @property
    def last_error(self) -> Any:
        """The value of ``*e``."""
        return self.session.globals.get(LAST_ERROR)

    def next_name(self) -> str:
        """The file name of the next input: ``<repl-N>``."""
        self.count += 1
        return f"<repl-{self.count}>"

    def evaluate(self, text: str, file: str | None = None,
                 session: Session | None = None) -> Outcome:
        """Analyze and run ``text`` (named ``file``, default ``<repl-N>``) in the REPL's
        session, or in ``session`` (whose definitions ``,spawn`` does not take); show
        its value or its error."""
        file = file or self.next_name()
        own = session is None
        session = session or self.session
        try:
            forms = read_syntax_all(text, file)
            program = session.load(text, file)
        except FlowmetalError as exc:
            return self._syntax_error(exc, text, file)
        except RecursionError:
            return self._syntax_error(FlowmetalError("input nested too deeply", "syntax-error"),
                                      text, file)
        if not forms:
            return Outcome("empty")
        m = session.machine(program)
        m.write = self.console.write
        outcome = self.run(m)
        if own:
            self._remember_definitions(forms, text)
        if outcome.status == "done":
            g = self.session.globals
            g[RESULT_NAMES[2]], g[RESULT_NAMES[1]] = g[RESULT_NAMES[1]], g[RESULT_NAMES[0]]
            g[RESULT_NAMES[0]] = outcome.value
            self.console.fresh_line()
            self.console.value(to_string(outcome.value))
        elif outcome.status == "error":
            self.session.globals[LAST_ERROR] = outcome.error
            self.console.fresh_line()
            self.show_error(outcome.error)
        return outcome

    def run(self, m: Machine) -> Outcome:
        """Run ``m`` to its end, answering the effects it can; Ctrl-C stops it."""
        started = time.perf_counter()
        self.running = m
        try:
            while True:
                status = m.run(self.slice_size)
                if status == "running":
                    continue
                if status == "waiting":
                    self._answer(m)
                    continue
                break
        except KeyboardInterrupt:
            self.console.fresh_line()
            self.console.line("interrupted: back at the prompt, definitions kept", "error")
            return Outcome("interrupted", seconds=time.perf_counter() - started,
                           reductions=m.reductions)
        finally:
            self.running = None
        seconds = time.perf_counter() - started
        if status == "done":
            return Outcome("done", value=m.val, seconds=seconds, reductions=m.reductions)
        return Outcome("error", error=m.error, seconds=seconds, reductions=m.reductions)

    def _answer(self, m: Machine) -> None:
        request = m.request
        op = request.get(K_OP).name if type(request) is Map else ""
        if op == "sleep":
            time.sleep(request.get(kw("seconds")) or 0)
            m.answer(None)
        elif op == "now":
            m.answer(time.time())
        elif op == "random":
            below = request.get(kw("below"))
            m.answer(random.randrange(below) if below else random.random())
        else:
            name = TASK_ONLY.get(op, op)
            message = (f"{name} needs a durable task: run the expression as one with "
                       ",spawn EXPR")
            m.answer_error(error_value("needs-task", message, Map({kw("op"): kw(name)}),
                                       site_backtrace(m, m.k)))

    def show_error(self, error: Any) -> None:
        """Show an uncaught error: message, type, data and backtrace."""
        for line in format_error(error).splitlines():
            self.console.line(line, "error")

    def _syntax_error(self, exc: FlowmetalError, text: str, file: str) -> Outcome:
        self.console.line(format_source_error(exc, file), "error")
        span = exc.span
        if span is not None and span[0] == file:
            source = line_at(text, span[1])
            if source is not None:
                start = span[2] - 1
                end = span[4] - 1 if span[3] == span[1] else len(source)
                self.console.source("  ", source, start, max(end, start + 1), error=True)
        error = error_value(exc.kind or "syntax-error", exc.message, exc.data, Vector(
            [Map({kw("proc"): "<toplevel>", kw("file"): span[0], kw("line"): span[1],
                  kw("col"): span[2]})] if span else []))
        self.session.globals[LAST_ERROR] = error
        return Outcome("syntax-error", error=error)

    def _remember_definitions(self, forms: list[Syntax], text: str) -> None:
        """Keep the source of each top-level definition that took effect (for ``,spawn``,
        whose task gets them); a new definition of a name replaces the old one."""
        g, macros = self.session.globals, self.session.cenv.macros
        for form in forms:
            if form.kind != "list" or len(form.value) < 2:
                continue
            head, name = form.value[0], form.value[1]
            if head.kind != "atom" or head.value not in DEFINERS or name.kind != "atom" \
                    or type(name.value) is not Symbol:
                continue
            if name.value in g or name.value in macros:
                self.definitions[name.value.name] = span_text(text, form.span)

    def program_with_definitions(self, expr: str) -> str:
        """The source of a program made of this session's definitions and ``expr``."""
        parts = list(self.definitions.values())
        parts.append(expr)
        return "\n\n".join(parts) + "\n"

    def names(self) -> dict[str, str]:
        """Every name bound in the session, with what it is: "special form", "macro",
        "primitive", "fn" or "value"."""
        from ..analyzer import SPECIAL_FORMS
        from ..procedures import Closure, Continuation, Primitive

        out: dict[str, str] = {}
        for sym, value in list(self.session.globals.items()):
            t = type(value)
            out[sym.name] = ("primitive" if t is Primitive else
                             "fn" if t in (Closure, Continuation) else "value")
        for sym in self.session.cenv.macros:
            out[sym.name] = "macro"
        for sym in SPECIAL_FORMS:
            if not sym.name.startswith("%"):
                out[sym.name] = "special form"
        for name in ("catch", "finally"):
            out[name] = "special form"
        return out


def keyword_names() -> list[str]:
    """The keywords read so far in this process (for completion), without the colon."""
    return sorted(k for k in list(Keyword._table))

