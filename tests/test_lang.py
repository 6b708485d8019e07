"""The Flowmetal conformance suite: runs the assertions in ``tests/lang/*.fm``.

The format of a test file
-------------------------

A test file is Flowmetal source.  The runner reads it with the ordinary reader and runs its
top-level forms in order, each as a program of its own, in one ``Session`` per file (so a
``def`` or ``defmacro`` is seen by the forms after it).  Each program is given its real
position in the file, so spans, error messages and backtraces name ``file:line:col``.

A top-level form whose head is one of these words is an *assertion*:

``(expect EXPECTED EXPR)``
    EXPECTED and EXPR are evaluated (in that order); the assertion holds if their values
    are equal by Flowmetal ``=``.
``(expect-error :type EXPR)`` / ``(expect-error :type "text" EXPR)``
    EXPR must raise an error map whose ``:type`` is ``:type`` (and whose ``:message``
    contains ``"text"``).  An error found while reading or analyzing EXPR counts as well
    (``:read-error``, ``:syntax-error``).
``(expect-output "text" EXPR)``
    EXPR must run without error and print exactly ``"text"`` (``print``, ``prn``, ...).
``(pending "reason" ASSERTION)``
    A known bug that cannot be fixed in the standard library or the primitives: ASSERTION
    is reported as a strict expected failure (so it shows up once fixed).  By convention
    these live in ``pending.fm``.

Every other top-level form is *setup*; a setup form that fails is reported as a failure,
and the forms after it still run.  Assertions are recognised only at the top level (the
prelude, ``tests/lang/prelude.fm``, makes a nested one a syntax error) so that each one
has an exact position.  One failing assertion never hides another: all of a file's
failures are reported together, each with its position, the expected and the actual.

Each file is one pytest item; each pending assertion is one more.  ``test_assertion_count``
checks that at least ``MIN_ASSERTIONS`` (non-pending) assertions ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import pytest

from flowmetal.interpreter import Session
from flowmetal.printer import to_string
from flowmetal.procedures import PRIMITIVES
from flowmetal.reader import Syntax, read_syntax_all
from flowmetal.values import TRUE, FlowmetalError, Keyword, Map, Symbol, Vector, kw

LANG = Path(__file__).resolve().parent / "lang"
ROOT = LANG.parent.parent
PRELUDE = LANG / "prelude.fm"
FILES = sorted(p for p in LANG.glob("*.fm") if p != PRELUDE)
MIN_ASSERTIONS = 300
FUEL = 5_000_000  # reductions allowed to one evaluation: a runaway test fails, not hangs
SLICE = 1_000_000

ASSERTIONS = ("expect", "expect-error", "expect-output")
K_TYPE, K_MESSAGE = kw("type"), kw("message")


# ---------------------------------------------------------------------------------------
# Running forms


@dataclass
class Outcome:
    """How one evaluation ended: ``ok`` (``value``) or ``error`` (``error``)."""

    status: str
    value: Any = None
    error: Any = None
    output: str = ""
    reductions: int = 0

    def describe(self) -> str:
        out = f" (printed {self.output!r})" if self.output else ""
        if self.status == "ok":
            return f"returned {show(self.value)}{out}"
        if self.status == "fuel":
            return f"did not finish within its fuel{out}"
        return f"raised {show(self.error)}{out}"


def show(value: Any, limit: int = 400) -> str:
    text = to_string(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_map(exc: FlowmetalError) -> Map:
    """The error map for an error raised while reading or analyzing."""
    return Map({K_TYPE: Keyword(exc.kind), K_MESSAGE: str(exc), kw("data"): exc.data,
                kw("backtrace"): Vector()})


class Source:
    """A test file's text, its forms, and a way to run any form at its own position."""

    def __init__(self, text: str, file: str, fuel: int = FUEL):
        self.text = text
        self.file = file
        self.fuel = fuel
        self.line_starts = [0]
        for i, c in enumerate(text):
            if c == "\n":
                self.line_starts.append(i + 1)
        self.forms = read_syntax_all(text, file)

    def offset(self, line: int, col: int) -> int:
        return self.line_starts[line - 1] + col - 1

    def snippet(self, form: Syntax) -> str:
        s = form.span
        return self.text[self.offset(s.line, s.col):self.offset(s.end_line, s.end_col)]

    def where(self, form: Syntax) -> str:
        return f"{self.file}:{form.span.line}:{form.span.col}"

    def run(self, session: Session, form: Syntax) -> Outcome:
        """Evaluate ``form`` in ``session`` as a program placed where the form is."""
        s = form.span
        padded = "\n" * (s.line - 1) + " " * (s.col - 1) + self.snippet(form)
        try:
            m = session.machine(session.load(padded, self.file))
        except FlowmetalError as exc:
            return Outcome("error", error=error_map(exc))
        fuel = self.fuel
        while m.status == "running" and fuel > 0:
            m.run(min(SLICE, fuel))
            fuel -= SLICE
        output, reductions = "".join(m.output), m.reductions
        if m.status == "done":
            return Outcome("ok", value=m.val, output=output, reductions=reductions)
        if m.status == "error":
            return Outcome("error", error=m.error, output=output, reductions=reductions)
        return Outcome("fuel", output=output, reductions=reductions)


# ---------------------------------------------------------------------------------------
# Assertions


@dataclass
class Result:
    """One checked top-level form: an assertion, or a setup form that failed."""

    where: str
    line: int
    col: int
    text: str
    assertion: bool
    passed: bool
    detail: str = ""
    pending: str | None = None

    def report(self) -> str:
        if not self.line:
            return f"{self.where}:{self.detail}"
        first = self.text.splitlines()[0] if self.text else ""
        if len(first) > 100 or "\n" in self.text:
            first = first[:100] + " ..."
        what = "assertion" if self.assertion else "setup form"
        return f"{self.where}: {what} failed: {first}\n{self.detail}"


def _head(form: Syntax) -> str | None:
    if form.kind == "list" and form.value and form.value[0].kind == "atom" and \
            type(form.value[0].value) is Symbol:
        return form.value[0].value.name
    return None


def _is_string(form: Syntax) -> bool:
    return form.kind == "atom" and type(form.value) is str


def equal(a: Any, b: Any) -> bool:
    """Flowmetal ``=``."""
    return PRIMITIVES["="].fn(a, b) is TRUE


def check(src: Source, session: Session, form: Syntax) -> tuple[bool, str]:
    """Run one assertion form; (passed, what went wrong)."""
    head, args = _head(form), form.value[1:]
    if head == "expect":
        if len(args) != 2:
            return False, "  (expect EXPECTED EXPR) takes exactly two forms"
        want = src.run(session, args[0])
        if want.status != "ok":
            return False, f"  expected value {want.describe()}"
        got = src.run(session, args[1])
        if got.status == "ok" and equal(want.value, got.value):
            return True, ""
        return False, f"  expected: {show(want.value)}\n  actual:   {got.describe()}"
    if head == "expect-error":
        if not (len(args) in (2, 3) and args[0].kind == "atom"
                and type(args[0].value) is Keyword and (len(args) == 2 or _is_string(args[1]))):
            return False, "  (expect-error :type EXPR) or (expect-error :type \"text\" EXPR)"
        kind = args[0].value
        text = args[1].value if len(args) == 3 else None
        got = src.run(session, args[-1])
        wanted = f"an error of type {show(kind)}" + (
            f" whose message contains {text!r}" if text is not None else "")
        err = got.error
        if got.status == "error" and type(err) is Map and err.get(K_TYPE) is kind:
            message = err.get(K_MESSAGE)
            if text is None or (type(message) is str and text in message):
                return True, ""
        return False, f"  expected: {wanted}\n  actual:   {got.describe()}"
    if head == "expect-output":
        if len(args) != 2 or not _is_string(args[0]):
            return False, "  (expect-output \"text\" EXPR) takes a string and a form"
        got = src.run(session, args[1])
        if got.status == "ok" and got.output == args[0].value:
            return True, ""
        return False, (f"  expected output: {args[0].value!r}\n"
                       f"  actual output:   {got.output!r}; the form {got.describe()}")
    raise AssertionError(head)


@dataclass
class FileResults:
    results: list[Result] = field(default_factory=list)

    @property
    def assertions(self) -> list[Result]:
        return [r for r in self.results if r.assertion and r.pending is None]

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if not r.passed and r.pending is None]

    def pending(self, line: int, col: int) -> Result:
        for r in self.results:
            if r.pending is not None and (r.line, r.col) == (line, col):
                return r
        raise LookupError(f"no pending assertion at {line}:{col}")


@lru_cache(maxsize=1)
def prelude() -> Source:
    return Source(PRELUDE.read_text(encoding="utf-8"), "tests/lang/prelude.fm")


def run_source(text: str, file: str, fuel: int = FUEL) -> FileResults:
    """Run a test file's text; every assertion and every failing setup form is a Result."""
    session = Session()
    pre = prelude()
    for form in pre.forms:
        outcome = pre.run(session, form)
        if outcome.status != "ok":
            raise RuntimeError(f"{pre.where(form)}: the prelude failed: {outcome.describe()}")
    out = FileResults()
    try:
        src = Source(text, file, fuel)
    except FlowmetalError as exc:
        out.results.append(Result(file, 0, 0, "", False, False, f" cannot read the file: {exc}"))
        return out
    for form in src.forms:
        line, col, snippet = form.span.line, form.span.col, src.snippet(form)
        head = _head(form)
        pending = None
        if head == "pending":
            args = form.value[1:]
            if len(args) != 2 or not _is_string(args[0]) or _head(args[1]) not in ASSERTIONS:
                out.results.append(Result(src.where(form), line, col, snippet, True, False,
                                          "  (pending \"reason\" ASSERTION) is malformed"))
                continue
            pending, form, head = args[0].value, args[1], _head(args[1])
            line, col, snippet = form.span.line, form.span.col, src.snippet(form)
        if head in ASSERTIONS:
            try:
                passed, detail = check(src, session, form)
            except Exception as exc:  # a bug in the implementation, not in the test
                passed, detail = False, f"  Python exception: {type(exc).__name__}: {exc}"
            out.results.append(Result(src.where(form), line, col, snippet, True, passed,
                                      detail, pending))
            continue
        try:
            outcome = src.run(session, form)
        except Exception as exc:
            outcome = Outcome("error", error=f"Python exception: {type(exc).__name__}: {exc}")
        if outcome.status != "ok":
            out.results.append(Result(src.where(form), line, col, snippet, False, False,
                                      f"  {outcome.describe()}"))
    return out


@cache
def run_file(path: Path) -> FileResults:
    return run_source(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))


def pending_items() -> list:
    """One pytest param per ``(pending "reason" ASSERTION)`` form, read at collection time."""
    params = []
    for path in FILES:
        try:
            forms = read_syntax_all(path.read_text(encoding="utf-8"), path.name)
        except FlowmetalError:
            continue  # the file's own test item reports it
        for form in forms:
            if _head(form) == "pending":
                args = form.value[1:]
                reason = args[0].value if args and _is_string(args[0]) else "malformed"
                s = form.value[2].span if len(args) == 2 else form.span
                params.append(pytest.param(
                    path, s.line, s.col, id=f"{path.name}:{s.line}",
                    marks=pytest.mark.xfail(strict=True, reason=reason,
                                            raises=pytest.fail.Exception)))
    return params


# ---------------------------------------------------------------------------------------
# The tests


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_lang_file(path: Path) -> None:
    failures = run_file(path).failures
    if failures:
        pytest.fail(f"{len(failures)} failure(s) in {path.name}:\n\n"
                    + "\n\n".join(f.report() for f in failures), pytrace=False)


@pytest.mark.parametrize(("path", "line", "col"), pending_items())
def test_pending(path: Path, line: int, col: int) -> None:
    result = run_file(path).pending(line, col)
    if not result.passed:
        pytest.fail(result.report(), pytrace=False)


def test_assertion_count() -> None:
    counts = {p.name: len(run_file(p).assertions) for p in FILES}
    total = sum(counts.values())
    assert total >= MIN_ASSERTIONS, f"only {total} assertions ran: {counts}"


def test_wrong_expectations_are_reported() -> None:
    text = "\n".join([
        '(expect 3 (+ 1 1))',
        '(expect-error :arity-error (+ 1 1))',
        '(expect-error :type-error "no such text" (+ 1 "a"))',
        '(expect-output "yes" (print "no"))',
        '(expect 1 (undefined-procedure))',
        '(def broken (car))',
        '(expect-error :type-error (throw 42))',
        '  (expect [1 2] (list 1 2))',
        '(expect 2 (+ 1 1))',
        '(pending "a known bug" (expect 1 2))',
        '(expect-error :arity-error ((fn [x] x)))',
        '(expect-output "ok" (print "ok"))',
        '(expect 1 (loop [] (recur)))',
    ])
    out = run_source(text, "self-test.fm", fuel=100_000)
    bad = {(r.line, r.col): r for r in out.failures}
    assert sorted(bad) == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 1), (7, 1), (8, 3),
                           (13, 1)]
    assert all(r.assertion for key, r in bad.items() if key != (6, 1))
    assert not bad[(6, 1)].assertion
    report = bad[(1, 1)].report()
    assert report.startswith("self-test.fm:1:1: assertion failed: (expect 3 (+ 1 1))")
    assert "expected: 3" in report and "actual:   returned 2" in report
    assert "returned 2" in bad[(2, 1)].report()
    assert "no such text" in bad[(3, 1)].report()
    assert "'yes'" in bad[(4, 1)].report() and "'no'" in bad[(4, 1)].report()
    assert ":unbound" in bad[(5, 1)].report() and "self-test.fm" in bad[(5, 1)].report()
    assert "raised 42" in bad[(7, 1)].report()
    assert "expected: [1 2]" in bad[(8, 3)].report() and "(1 2)" in bad[(8, 3)].report()
    assert "did not finish" in bad[(13, 1)].report()
    assert len(out.assertions) == 11
    assert [r.passed for r in out.results if r.pending] == [False]
    assert out.pending(10, 24).pending == "a known bug"


def test_assertions_only_at_top_level() -> None:
    out = run_source("(let [x 1] (expect 1 x))", "nested.fm")
    assert len(out.failures) == 1
    assert ":syntax-error" in out.failures[0].report()
