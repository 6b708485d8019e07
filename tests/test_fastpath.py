"""One evaluator: the fast path (``fastpath.py``) and the per-node closures of
``machine.py`` agree.  Every top-level form of the conformance suite (``tests/lang``) and
a corpus of calls (failing in every position a call can stand in) is run in two fresh
interpreters, one with the fast path on and one with ``FLOWMETAL_FASTPATH=0``; each
form's value, output, error, backtrace and number of reductions (so the steps of a
durable task) must be the same in both.

(``.ci/run`` also runs the language tests, the examples and the README transcript with the
fast path off.)
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from flowmetal.fastpath import enabled

ROOT = Path(__file__).resolve().parent.parent

# Errors raised by calls in each position a call can take (a tail call, an argument of a
# primitive or of a closure, a let init, an if test, inside a nested direct call, from
# the body a call enters in its own step, and by throw/error reached through them), then
# what the fast path inlines.
CALLS = [
    "(defn f [x] (+ x 1)) (f 1 2)",
    "(defn f [x & r] (+ x 1)) (f)",
    "(defn f [x] (+ x 1)) (+ 1 (f 1 2))",
    "(defn f [x & r] x) (+ 1 (f))",
    "(+ 1 (1 2))",
    "(1 2)",
    "(let [a (1 2)] a)",
    "(defn g [] (h)) (g)",
    "(defn g [x] (if (first x) 1 2)) (+ 1 (g 5))",
    "(defn g [x] (/ x 0)) (list (g 1))",
    "(defn g [x] (throw {:type :boom})) (list (g 1))",
    '(defn g [x] (error "bad")) (defn h [] (list (g 1) 2)) (h)',
    '(defn g [x] (error "bad")) (defn h [] (g 1)) (defn i [] (list (h))) (i)',
    "(list (:a 1 2 3))",
    "({:a 1} 1 2 3)",
    "(list ([1 2] 5))",
    "(letrec [a (fn [] b) b (a)] b)",
    "(defn f [] (def y (g)) (def g (fn [] 1)) y) (f)",
    "(try (+ 1 (first 5)) (catch e (:backtrace e)))",
    "(defn f [x] (first x)) (try (list (f 5)) (catch e (:backtrace e)))",
    "(defn f [& xs] (apply + xs)) (f 1 :a)",
    "(defn f [x] (let [y (first x)] y)) (list (f 1))",
    "(defn f [x] (do (first x) 1)) (list (f 1))",
    "(apply (fn [x] x) [1 2])",
    "(map (fn [x] (first x)) [1 2])",
    "(defn f [x] (if (= x 0) (first x) (+ 1 (f (- x 1))))) (f 5)",
    "(dynamic-wind (fn [] 1) (fn [] (first 1)) (fn [] 2))",
    "(defn f [a b] (+ a b)) (f 1 (f 2))",
    "(defn f [a b] (+ a b)) (f (f 2) 1)",
    "(defn f [x] (list ((fn [y] (first y)) x))) (f 1)",
    "(defn f [n] (if (zero? n) (throw :x) (list (f (dec n))))) (try (f 3) (catch e e))",
    '(defn f [n] (if (zero? n) (error "x") (list (f (dec n))))) (f 3)',
    "(defn f [x] (nth x 5)) (defn g [] (vector (f [1]))) (g)",
    "(let [f (fn ([] (first 1)) ([x] x))] (list (f)))",
    "(let [f (fn ([] (first 1)) ([x] x))] (list (f 1 2 3)))",
    # Arithmetic and comparison inlined for ints, = as Python's ==, if's test.
    "(let [x ##NaN] [(= x x) (= [x] [x]) (= ##NaN ##NaN)])",
    "(let [x 2147483648 y -2147483649] [(+ x x) (- y 1) (< x y) (= x 2147483648.0)])",
    "(let [x 2] [(+ x 1.5) (* x 1/3) (< x 5/2) (= x true) (= (list 1) [1])])",
    "(let [x 2] (- x nil))",
    '(let [x "a"] (+ x 1))',
    "(let [x ()] [(if x 1 2) (if 0 1 2) (if false 1 2) (if nil 1 2)])",
]


def outcomes() -> list[list]:
    """``[where, how it ended, reductions]`` for every form of the corpus, run in this
    process."""
    from flowmetal.interpreter import Session
    from tests.test_lang import FILES, Source, prelude

    results: list[list] = []
    for path in FILES:
        session = Session()
        for src in (prelude(), Source(path.read_text(encoding="utf-8"), path.name)):
            for form in src.forms:
                results.append(_outcome(src, session, form))
    for i, text in enumerate(CALLS):
        src = Source(text, f"call-{i}.fm")
        session = Session()
        for form in src.forms:
            results.append(_outcome(src, session, form))
    return results


def _outcome(src: Any, session: Any, form: Any) -> list:
    got = src.run(session, form)
    return [src.where(form), got.describe(), got.reductions]


def run(fastpath: str) -> list[list]:
    env = dict(os.environ, FLOWMETAL_FASTPATH=fastpath)
    r = subprocess.run([sys.executable, "-c", "import json, tests.test_fastpath as t; "
                        "print(json.dumps(t.outcomes()))"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    # Python's object addresses differ between any two processes.
    return json.loads(re.sub(r"0x[0-9a-f]+", "0x…", r.stdout))


def test_the_switch_reads_the_environment(monkeypatch):
    monkeypatch.setenv("FLOWMETAL_FASTPATH", "0")
    assert not enabled()
    monkeypatch.setenv("FLOWMETAL_FASTPATH", "1")
    assert enabled()
    monkeypatch.delenv("FLOWMETAL_FASTPATH")
    assert enabled()


def test_the_fast_path_and_the_per_node_closures_agree():
    fast, slow = run("1"), run("0")
    assert len(fast) == len(slow) > 500
    differ = [f"{where}:\n  fast path: {a} in {n} reductions\n  per node:  {b} in {m}"
              for (where, a, n), (_, b, m) in zip(fast, slow) if (a, n) != (b, m)]
    assert not differ, f"{len(differ)} forms differ:\n" + "\n".join(differ[:20])
