"""The machine: proper tail calls, deep recursion, fuel, syntax errors, backtraces."""

from __future__ import annotations

import resource
import sys

import pytest

from benchmarks.lang import PROGRAMS
from flowmetal.interpreter import EvalError, Session
from flowmetal.runtime.slices import FRAMES_PER_REDUCTION
from flowmetal.values import TRUE, Map, SyntaxError_, kw


def run(source: str):
    return Session().eval_string(source, "t.fm")


def frames(k) -> int:
    depth = 0
    while k is not None:
        depth, k = depth + 1, k[1]
    return depth


def test_deep_non_tail_recursion_returns():
    assert run("(defn d [n] (if (= n 0) 0 (+ 1 (d (- n 1))))) (d 100000)") == 100000


def test_ten_million_iteration_tail_loop_runs_in_constant_space():
    s = Session()
    m = s.machine(s.load("(defn lp [n] (if (= n 0) :done (lp (- n 1)))) (lp 10000000)"))
    m.run(1_000_000)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    deepest = 0
    while m.status == "running":
        m.run(1_000_000)
        deepest = max(deepest, frames(m.k))
    assert m.val == kw("done")
    assert deepest <= 2
    growth_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert growth_kb < 20_000


def test_mutual_recursion_in_tail_position():
    assert run("""
        (defn ev? [n] (if (= n 0) true (od? (- n 1))))
        (defn od? [n] (if (= n 0) false (ev? (- n 1))))
        (ev? 200001)""").value is False


def test_fuel_stops_and_resumes():
    s = Session()
    m = s.machine(s.load("(defn f [n acc] (if (= n 0) acc (f (- n 1) (+ acc n)))) (f 1000 0)"))
    steps = 0
    while m.run(7) == "running":
        steps += 1
    assert m.val == 500500
    assert steps > 100
    assert m.reductions == 7 * steps + (m.reductions - 7 * steps)


def test_fuel_of_one_reduction_makes_one_transition():
    s = Session()
    m = s.machine(s.load("(+ 1 (* 2 3))"))
    before = m.reductions
    m.run(1)
    assert m.reductions - before == 1


@pytest.mark.parametrize("source, line, col", [
    ("(let [a] 1)", 1, 6),
    ("\n  (if)", 2, 3),
    ("(fn x)", 1, 1),
    ("(def)", 1, 1),
    ("(do 1\n (let [1 2] 3))", 2, 8),
    ("(fn [a a] a)", 1, 8),
    ("(quote)", 1, 1),
    ("(try 1 (catch))", 1, 8),
    ("(defn f [x] (defmacro m [] 1))", 1, 13),
    ("(fn [x] (when x (def y 1)))", 1, 17),
    ("~x", 1, 1),
])
def test_syntax_errors_name_the_offending_form(source, line, col):
    with pytest.raises(SyntaxError_) as info:
        Session().load(source, "bad.fm")
    assert (info.value.span.file, info.value.span.line, info.value.span.col) == \
        ("bad.fm", line, col)
    assert str(info.value).startswith(f"bad.fm:{line}:{col}: ")


def test_macro_errors_are_syntax_errors_at_the_call():
    with pytest.raises(SyntaxError_) as info:
        Session().load("(defmacro m [x] (car x))\n(m 1)", "bad.fm")
    assert info.value.span.line == 2
    assert "in macro m" in str(info.value)


def test_backtrace_names_procedures_and_spans():
    source = "(defn f [x]\n  (/ x 0))\n(defn g [y]\n  (+ 1 (f y)))\n(g 3)"
    with pytest.raises(EvalError) as info:
        run(source)
    error = info.value.error
    assert error[kw("type")] == kw("arithmetic-error")
    trace = [(e[kw("proc")], e[kw("line")], e[kw("col")]) for e in error[kw("backtrace")]]
    assert trace[:2] == [("f", 2, 3), ("g", 4, 3)]


def test_backtrace_of_a_deep_error_is_bounded():
    with pytest.raises(EvalError) as info:
        run("(defn d [n] (if (= n 0) (error \"bottom\") (+ 1 (d (- n 1))))) (d 50000)")
    trace = info.value.error[kw("backtrace")]
    assert 1 <= len(trace) <= 64
    assert trace[0][kw("proc")] == "d"


def test_redefining_a_primitive_in_the_program_is_honoured():
    assert run("(defn twice [x] (inc x)) (defn inc [x] (* 2 x)) (twice 5)") == 10


def test_simple_expression_nesting_beyond_the_compile_limit():
    nested = "1"
    for _ in range(300):
        nested = f"(+ 1 {nested})"
    assert run(nested) == 301


def test_unbound_symbol_error_points_at_the_symbol_use():
    with pytest.raises(EvalError) as info:
        run("(defn f []\n  (nope 1))\n(f)")
    assert info.value.error[kw("type")] == kw("unbound")
    assert info.value.error[kw("backtrace")][0][kw("line")] == 2


def test_backtrace_counts_repeated_frames():
    with pytest.raises(EvalError) as info:
        run("(defn d [n] (if (= n 0) (error \"bottom\") (+ 1 (d (- n 1))))) (d 100)")
    trace = info.value.error[kw("backtrace")]
    assert trace[1][kw("repeated")] == 99


def test_backtrace_past_the_limit_says_frames_were_left_out():
    source = "\n".join(f"(defn f{i} [] (+ 1 (f{i + 1})))" for i in range(80))
    source += "\n(defn f80 [] (error \"deep\"))\n(f0)"
    with pytest.raises(EvalError) as info:
        run(source)
    trace = info.value.error[kw("backtrace")]
    assert trace[-1] == Map({kw("more"): TRUE})
    assert len(trace) == 65


GENERATOR = PROGRAMS["call/cc generator"][0]  # the benchmark's own program


def test_a_call_cc_generator_takes_five_transitions_per_item():
    # A step runs on through the if, do, let and set! it reaches to the next call
    # (machine.runs_on), a continuation returns into a do or let frame in the step of
    # its call, and a step that stops at (k v) of such a continuation makes it
    # (machine.stop_at): the generator's call, call/cc and the continuation back into
    # the walk, the walk's call, call/cc and the continuation back to the caller, and
    # the caller's tail call.
    s = Session()
    s.eval_string(GENERATOR)
    reductions = []
    for n in (10, 30):
        m = s.machine(s.load(f"(drain (make-gen {n}) 0)"))
        m.run_to_end()
        assert m.val == n * (n - 1) // 2
        reductions.append(m.reductions)
    assert reductions[1] - reductions[0] == 5 * 20


def _python_depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


@pytest.mark.parametrize("body", [
    # a long cond: ifs in tail position, each run on into the next
    "(cond " + " ".join(f"(= x {i}) (f {i})" for i in range(300)) + " :else (f -1))",
    # lets whose inits take steps, set! in do, nested 150 deep
    "".join(f"(let [a{i} (do (set! x (+ x 0)) (f {i}))] " for i in range(150)) + "x"
    + ")" * 150,
    # ifs whose tests are ifs whose tests are ifs...
    "(if " * 100 + "(f x)" + " (f 1) (f 2))" * 100,
], ids=["cond", "lets", "if-tests"])
def test_a_step_adds_few_frames_and_a_bounded_python_stack(body):
    s = Session()
    m = s.machine(s.load(f"(defn f [v] v) (defn g [x] {body}) (g 299)"))
    depth = frames(m.k)
    python = _python_depth()
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(python + 200)
    try:
        while m.run(1) == "running":
            now = frames(m.k)
            assert now - depth <= FRAMES_PER_REDUCTION
            depth = now
    finally:
        sys.setrecursionlimit(limit)
    assert m.status == "done"
