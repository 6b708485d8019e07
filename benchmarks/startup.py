"""Start-up: how long the commands a user types most take in a fresh process.

    python -m benchmarks.startup [--quick] [--runs N] [--dir DIR]

Each figure is the median of N fresh processes (default 21; ``--quick``: 5) with its
ratio to ``python -c 1``, the bare interpreter, measured in the same run; the commands
take turns, so a change of the machine's load touches them all alike:

- ``flowmetal -e 1``: a task in a scratch store, run to its end, its value printed;
- ``flowmetal tasks``: the table of a store holding 20 finished tasks;
- ``flowmetal start examples/hello.fm``: a task stored, its id printed;

each with the analysis cache warm, and once with an empty cache (the first run after
an install or an upgrade: the standard library is analyzed and kept); then 100
``flowmetal start`` calls in a row (``--quick``: 10) beside as many ``python -c 1``.

Every process is ``python -m flowmetal`` with the interpreter running this benchmark (a
console-script shim, such as pyenv's, would add its own time).  Processes run with
their bytecode cached, as an installed Flowmetal's is: ``PYTHONDONTWRITEBYTECODE`` is
unset and ``PYTHONPYCACHEPREFIX`` points into the run's directory, warmed by one run of
each command before timing.  ``FLOWMETAL_CACHE`` and ``FLOWMETAL_HOME`` are in that
directory too (a temporary one unless ``--dir``; removed afterwards).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELLO = ROOT / "examples" / "hello.fm"
BASELINE = ("python -c 1", ["-c", "1"])
COMMANDS = [
    ("flowmetal -e 1", ["-m", "flowmetal", "-e", "1"]),
    ("flowmetal tasks", ["-m", "flowmetal", "tasks"]),
    ("flowmetal start hello.fm", ["-m", "flowmetal", "start", str(HELLO)]),
]


def environment(where: Path, cache: Path) -> dict[str, str]:
    """The environment of a timed process: bytecode cached under ``where``, the store
    and the analysis cache there too."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONDONTWRITEBYTECODE", "FLOWMETAL_NO_CACHE", "FLOWMETAL_SERVER")}
    env.update(PYTHONPYCACHEPREFIX=str(where / "pycache"), FLOWMETAL_CACHE=str(cache),
               FLOWMETAL_HOME=str(where / "store"))
    return env


def timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    """Seconds one fresh process running ``python ARGS`` takes to end (it must
    succeed)."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], env=env, cwd=cwd,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n"
                         f"{proc.stderr.decode(errors='replace')}")
    return elapsed


def prepare(where: Path, env: dict[str, str]) -> None:
    """Warm the bytecode cache (with the analysis cache off) and fill the store with the
    tasks ``flowmetal tasks`` lists."""
    for _ in range(20):
        timed(["-m", "flowmetal", "run", str(HELLO)], env, where)
    for _, args in [BASELINE, *COMMANDS]:
        timed(args, dict(env, FLOWMETAL_NO_CACHE="1"), where)


def cold_runs(where: Path, env: dict[str, str]) -> dict[str, float]:
    """Each command's first run, with an analysis cache of its own, empty."""
    out = {}
    for i, (name, args) in enumerate(COMMANDS):
        cache = where / f"cold-cache-{i}"
        out[name] = timed(args, dict(env, FLOWMETAL_CACHE=str(cache)), where)
        shutil.rmtree(cache, ignore_errors=True)
    return out


def warm_runs(where: Path, env: dict[str, str], runs: int) -> dict[str, list[float]]:
    """``runs`` rounds, each running the baseline and every command once."""
    for _, args in COMMANDS:  # fill the cache
        timed(args, env, where)
    out: dict[str, list[float]] = {name: [] for name, _ in [BASELINE, *COMMANDS]}
    for _ in range(runs):
        for name, args in [BASELINE, *COMMANDS]:
            out[name].append(timed(args, env, where))
    return out


def in_a_row(where: Path, env: dict[str, str], count: int) -> tuple[float, float]:
    """Seconds for ``count`` ``flowmetal start`` calls in a row, and for as many bare
    interpreters."""
    start = time.perf_counter()
    for _ in range(count):
        timed(COMMANDS[2][1], env, where)
    starts = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(count):
        timed(BASELINE[1], env, where)
    return starts, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print its figures."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.startup",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer runs (a smoke run)")
    p.add_argument("--runs", type=int, help="fresh processes per figure (default 21)")
    p.add_argument("--dir", help="where to make the store and caches (default: temporary)")
    ns = p.parse_args(argv)
    runs = ns.runs or (5 if ns.quick else 21)
    count = 10 if ns.quick else 100
    where = Path(tempfile.mkdtemp(prefix="flowmetal-startup-", dir=ns.dir))
    try:
        env = environment(where, where / "cache")
        prepare(where, env)
        cold = cold_runs(where, env)
        warm = warm_runs(where, env, runs)
        starts, bare = in_a_row(where, env, count)
    finally:
        shutil.rmtree(where, ignore_errors=True)
    base = statistics.median(warm[BASELINE[0]])
    print(f"start-up, median of {runs} fresh processes each, ratio to python -c 1 "
          f"(load average {os.getloadavg()[0]:.2f})")
    print(f"{BASELINE[0]:<28}{base * 1000:8.1f} ms")
    for name, _ in COMMANDS:
        median = statistics.median(warm[name])
        print(f"{name:<28}{median * 1000:8.1f} ms {median / base:5.2f}x   "
              f"first run, cold cache: {cold[name] * 1000:7.1f} ms {cold[name] / base:5.2f}x")
    print(f"{f'{count} x flowmetal start':<28}{starts:8.2f} s  {starts / bare:5.2f}x   "
          f"({starts / count * 1000:.1f} ms each; {count} x python -c 1: {bare:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
