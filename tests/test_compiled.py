"""Pure procedures compiled to Python (``flowmetal/compiled.py``) are only a faster route:
with compiling on and off (``FLOWMETAL_COMPILE=0``) a program gives the same value, error,
backtrace and reductions, and a machine run with any fuel stops at the same state.  The
fallbacks: deep recursion, fuel running out, Ctrl-C and SIGTERM inside compiled code,
and redefinition of a global a compiled procedure calls.
"""

from __future__ import annotations

import signal
import threading
import traceback

import pytest

from flowmetal import machine as M
from flowmetal.compiled import enabled
from flowmetal.interpreter import Session
from flowmetal.runtime.slices import Interrupted
from flowmetal.values import Symbol

from .cli_helpers import fm, ok, popen
from .test_signals import STOPS_WITHIN, detail, output, stop, wait_busy

FIB = "(defn fib [n] (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))"
DEEP = "(defn deep [n] (if (= n 0) 0 (+ 1 (deep (- n 1)))))"


def compiling(monkeypatch, on: bool) -> None:
    monkeypatch.setenv("FLOWMETAL_COMPILE", "1" if on else "0")


@pytest.fixture(autouse=True)
def compiled_code_on(monkeypatch):
    """These are tests of compiled code: on, whatever the environment running the suite
    says (a test turns it off where it compares)."""
    monkeypatch.delenv("FLOWMETAL_FASTPATH", raising=False)
    compiling(monkeypatch, True)


def run(source: str, fuel: int = 1_000_000) -> tuple:
    """(status, value or error, reductions) of ``source`` run in slices of ``fuel``."""
    s = Session()
    m = s.machine(s.load(source, "t.fm"))
    while m.status == "running":
        before = m.reductions
        m.run(fuel)
        assert m.reductions - before <= fuel
    return m.status, m.val if m.status == "done" else m.error, m.reductions


def both(monkeypatch, source: str, fuel: int = 1_000_000) -> tuple:
    compiling(monkeypatch, False)
    off = run(source, fuel)
    compiling(monkeypatch, True)
    on = run(source, fuel)
    assert on == off
    return on


def test_the_switch_reads_the_environment(monkeypatch):
    for value, on in (("0", False), ("off", False), ("1", True), ("", True)):
        monkeypatch.setenv("FLOWMETAL_COMPILE", value)
        assert enabled() is on
    monkeypatch.setenv("FLOWMETAL_COMPILE", "1")
    monkeypatch.setenv("FLOWMETAL_FASTPATH", "0")
    assert not enabled()


def fast_of(session: Session, name: str):
    return session.globals[Symbol(name)].code.fast


def test_a_pure_procedure_runs_compiled_with_the_machines_reductions(monkeypatch):
    s = Session()
    s.eval_string(FIB)
    m = s.machine(s.load("(fib 20)"))
    m.run_to_end()
    assert m.val == 6765 and fast_of(s, "fib") is not None
    assert both(monkeypatch, FIB + "(fib 20)") == ("done", 6765, 32837)


def test_an_impure_procedure_is_not_compiled():
    s = Session()
    s.eval_string('(defn noisy [n] (if (< n 1) n (do (print n) (noisy (- n 1)))))')
    s.eval_string("(noisy 3)")
    s.eval_string("(noisy 3)")
    assert fast_of(s, "noisy") is None


@pytest.mark.parametrize("fuel", [1, 7, 100, 999, 10_000])
def test_any_fuel_stops_where_the_machine_does(monkeypatch, fuel):
    source = FIB + "(defn loop-to [i acc] (if (< i 300) (loop-to (+ i 1) (+ acc (fib 5))) acc))" \
        "(+ (fib 12) (loop-to 0 0) (reduce + (map fib (range 15))))"
    status, value, _ = both(monkeypatch, source, fuel)
    assert (status, value) == ("done", 144 + 300 * 5 + 986)


def test_a_100000_deep_recursion_returns(monkeypatch):
    assert both(monkeypatch, DEEP + "(deep 100000)")[:2] == ("done", 100000)


def test_errors_have_the_machines_backtrace(monkeypatch):
    source = '(defn f [n] (if (zero? n) (first n) (+ 1 (f (dec n))))) (f 1) (f 5)'
    status, error, _ = both(monkeypatch, source)
    assert status == "error"


def test_an_entry_that_keeps_giving_up_steps_aside_until_later_runs(monkeypatch):
    # call-it looks pure (it calls its argument), but what it is given captures a
    # continuation: each compiled attempt gives up, and after a few the callers enter
    # the machine's way directly until later runs of a machine.
    source = """
        (defn call-it [f] (let [x (f)] x))
        (defn drive [n acc]
          (if (= n 0) acc (drive (- n 1) (+ acc (call-it (fn [] (call/cc (fn [k] (k n)))))))))
        (drive 500 0)"""
    assert both(monkeypatch, source)[:2] == ("done", 125250)
    compiling(monkeypatch, True)
    s = Session()
    s.eval_string(source)
    clause = s.globals[Symbol("call-it")].code.single
    paused = [item for item in M.PAUSED if item[0] is clause]
    assert paused and clause.enter is paused[0][2]
    for _ in range(paused[0][3]):
        s.machine(s.load("1")).run(10)
    assert clause.enter is paused[0][1]


def test_a_redefined_global_is_called(monkeypatch):
    s = Session()
    s.eval_string("(defn g [x] (* x 2)) (defn f [n] (+ (g n) 1))")
    assert [s.eval_string("(f 5)") for _ in range(3)] == [11, 11, 11]
    assert fast_of(s, "f") is not None
    s.eval_string("(defn g [x] (* x 10))")
    assert s.eval_string("(f 5)") == 51
    s.eval_string('(defn g [x] (print "impure") x)')
    m = s.machine(s.load("(f 5)"))
    m.run_to_end()
    assert (m.val, "".join(m.output)) == (6, "impure")


def interrupt_inside(m, exc: type[BaseException]) -> BaseException:
    """Run ``m`` until ``exc`` (raised from a timer signal) stops it; the exception."""
    def handler(signum, frame):
        raise exc

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.15)
    try:
        with pytest.raises(exc) as info:
            m.run(10**9)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return info.value


@pytest.mark.parametrize("exc", [KeyboardInterrupt, Interrupted], ids=["ctrl-c", "stop"])
def test_interrupted_compiled_code_leaves_the_machine_at_a_safe_point(monkeypatch, exc):
    assert threading.current_thread() is threading.main_thread()
    s = Session()
    s.eval_string(FIB + "(fib 3)")
    compiling(monkeypatch, False)
    m = s.machine(s.load("(fib 29)"))
    m.run_to_end()
    expected = (m.status, m.val, m.reductions)
    compiling(monkeypatch, True)
    m = s.machine(s.load("(fib 29)"))
    raised = interrupt_inside(m, exc)
    frames = traceback.extract_tb(raised.__traceback__)
    assert any(f.filename.startswith("<flowmetal compiled") for f in frames)
    m.run_to_end()
    assert (m.status, m.val, m.reductions) == expected


LOOP = """
(defn spin [i acc] (if (< i 3000000) (spin (+ i 1) (+ acc i)) acc))
(sleep 0.01)
(sleep 0.01)
(println (spin 0 0))
"""


def test_sigterm_inside_a_compiled_loop_leaves_the_task_to_finish(tmp_path, procs):
    store = tmp_path / "store"
    (tmp_path / "spin.fm").write_text(LOOP, encoding="utf-8")
    task_id = ok(fm(store, "start", "spin.fm")).strip()
    worker = popen(procs, store, "worker")
    before = wait_busy(store, task_id, worker)  # its two sleeps done, inside the loop
    status, took = stop(worker, signal.SIGTERM)
    worker.communicate()
    assert (status, took < STOPS_WITHIN) == (0, True), took
    # At a committed step of the loop, which a new worker finishes.
    assert detail(store, task_id)["status"] == before["status"] == "runnable"
    ok(fm(store, "worker", "--until-idle"))
    assert (detail(store, task_id)["status"], output(store, task_id)) == \
        ("done", f"{3000000 * 2999999 // 2}\n")
