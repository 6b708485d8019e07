"""The machine: proper tail calls, deep recursion, fuel, syntax errors, backtraces."""

from __future__ import annotations

import resource

import pytest

from flowmetal.interpreter import EvalError, Session
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
