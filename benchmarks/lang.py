"""Language speed: each program in Flowmetal and the same algorithm in plain Python.

    python -m benchmarks.lang [--repeat N]

For each program it prints the best wall time over N runs, the machine's reductions
per second, the ratio to plain Python measured in the same run, and the target ratio
where there is one (NOTES.md, "Figures").
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from collections.abc import Callable

from flowmetal.interpreter import Session

PROGRAMS: dict[str, tuple[str, str, Callable[[], object]]] = {}
TARGETS = {"fib(25)": 5, "tak(18,12,6)": 5, "call/cc generator": 60}


def program(name: str, setup: str, expr: str):
    """Register a benchmark: Flowmetal setup + expression, and its Python twin."""

    def register(py: Callable[[], object]):
        PROGRAMS[name] = (setup, expr, py)
        return py

    return register


@program("fib(25)", "(defn fib [n] (if (< n 2) n (+ (fib (- n 1)) (fib (- n 2)))))",
         "(fib 25)")
def py_fib():
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    return fib(25)


@program("tak(18,12,6)", """
(defn tak [x y z]
  (if (not (< y x))
    z
    (tak (tak (- x 1) y z) (tak (- y 1) z x) (tak (- z 1) x y))))""", "(tak 18 12 6)")
def py_tak():
    def tak(x, y, z):
        if not y < x:
            return z
        return tak(tak(x - 1, y, z), tak(y - 1, z, x), tak(z - 1, x, y))

    return tak(18, 12, 6)


@program("tail loop 1e6", "(defn loop-to [i n acc] (if (< i n) (loop-to (+ i 1) n (+ acc i)) acc))",
         "(loop-to 0 1000000 0)")
def py_loop():
    acc, i = 0, 0
    while i < 1_000_000:
        acc += i
        i += 1
    return acc


@program("closures", """
(defn make-adder [n] (fn [x] (+ x n)))
(defn compose-all [fs] (reduce (fn [f g] (fn [x] (g (f x)))) identity fs))
(defn run [n] ((compose-all (map make-adder (range n))) 0))""", "(run 20000)")
def py_closures():
    def make_adder(n):
        return lambda x: x + n

    def compose(f, g):
        return lambda x: g(f(x))

    def compose_all(fs):
        f = lambda x: x  # noqa: E731
        for g in fs:
            f = compose(f, g)
        return f

    return compose_all([make_adder(i) for i in range(20000)])(0)


@program("call/cc generator", """
(defn make-gen [n]
  (let [return nil
        resume nil]
    (fn []
      (call/cc
        (fn [r]
          (set! return r)
          (if resume
            (resume nil)
            (letrec [walk (fn [i]
                            (when (< i n)
                              (call/cc (fn [k] (set! resume k) (return i)))
                              (walk (+ i 1))))]
              (walk 0)
              (return nil))))))))
(defn drain [g acc] (let [x (g)] (if (nil? x) acc (drain g (+ acc x)))))""",
         "(drain (make-gen 50000) 0)")
def py_generator():
    def gen(n):
        i = 0
        while i < n:
            yield i
            i += 1

    acc = 0
    for x in gen(50000):
        acc += x
    return acc


def best_of(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    """The best wall time of ``repeat`` calls and the last result."""
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def run_flowmetal(setup: str, expr: str, repeat: int) -> tuple[float, object, int]:
    """Best wall time of evaluating ``expr`` after ``setup``, with its reductions."""
    s = Session()
    s.eval_string(setup, "bench.fm")
    program = s.load(expr, "bench.fm")
    best, value, reductions = float("inf"), None, 0
    for _ in range(repeat):
        m = s.machine(program)
        start = time.perf_counter()
        m.run_to_end()
        best = min(best, time.perf_counter() - start)
        if m.status != "done":
            raise SystemExit(f"{expr} failed: {m.error!r}")
        value, reductions = m.val, m.reductions
    return best, value, reductions


def target_text(name: str, ratio: float) -> str:
    """``<=5x ok`` / ``<=5x MISS`` for a program with a target ratio, else blank."""
    target = TARGETS.get(name)
    if target is None:
        return ""
    return f"<={target}x {'ok' if ratio <= target else 'MISS'}"


def main(argv: list[str] | None = None) -> int:
    """Print the table of figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    sys.setrecursionlimit(100_000)  # the Python baselines recurse deeply (compose-all)
    print(f"{'program':<20} {'flowmetal':>11} {'python':>10} {'ratio':>7} {'reductions/s':>14}"
          f" {'target':>7}")
    for name, (setup, expr, py) in PROGRAMS.items():
        fm_time, fm_value, reductions = run_flowmetal(setup, expr, args.repeat)
        py_time, py_value = best_of(py, args.repeat)
        if fm_value != py_value:
            raise SystemExit(f"{name}: flowmetal gave {fm_value!r}, python {py_value!r}")
        print(f"{name:<20} {fm_time * 1000:>9.1f}ms {py_time * 1000:>8.2f}ms "
              f"{fm_time / py_time:>6.1f}x {reductions / fm_time:>14,.0f}"
              f" {target_text(name, fm_time / py_time):>7}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
