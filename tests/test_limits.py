"""A task's limits hold before the memory is spent, on a real LMDB store in a tmp dir:
size checks in a worker follow the task's own state limit, a continuation too deep is
refused while it grows (not after the slice), the default depth is one a worker can
afford, and slices are bounded in time, so one big busy task does not starve the others
of its worker.  (The size checks themselves: tests/lang/limits.fm.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from flowmetal.runtime import api
from flowmetal.runtime.records import Limits, result_value
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.values import Map, kw


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"), sync=False)


def start(store, tmp_path, source: str, name: str = "main.fm", **options) -> str:
    path = tmp_path / name
    path.write_text(source, encoding="utf-8")
    return api.start(store, source, str(path), **options)


def run_until(store, done, timeout: float, **worker_options) -> Worker:
    """Run worker rounds until ``done()`` (at most ``timeout`` seconds)."""
    worker = Worker(store, **worker_options)
    end = time.monotonic() + timeout
    try:
        while not done():
            if time.monotonic() > end:
                raise TimeoutError(f"not done within {timeout} s")
            if worker.round() == 0:
                worker.idle()
    finally:
        worker.stop()
    return worker


def finished(store, task_id: str) -> bool:
    return store.get(task_id).finished


def error_of(store, task_id: str) -> Map:
    rec = store.get(task_id)
    assert rec.status == "failed", rec.status
    return result_value(rec)


def test_a_task_state_limit_bounds_the_values_its_primitives_build(store, tmp_path):
    # 1,000,000 items fit the default state (64 MiB) but not a state of 1 MiB.
    source = "(try (count (range 1000000)) (catch :limit-error e (:data e)))"
    small = start(store, tmp_path, source, "small.fm", limits={"state": 1 << 20})
    default = start(store, tmp_path, source, "default.fm")
    run_until(store, lambda: finished(store, small) and finished(store, default), 60)
    assert result_value(store.get(small)) == Map({kw("limit"): kw("state"),
                                                  kw("size"): 1_000_000,
                                                  kw("max"): (1 << 20) // 8})
    assert result_value(store.get(default)) == 1_000_000


def test_a_deep_continuation_is_refused_while_it_grows(store, tmp_path):
    # One slice could run the whole recursion (two million frames, then back up); the
    # depth limit stops it when the continuation passes 1,000 frames.
    source = "(defn f [n] (if (zero? n) 0 (+ 1 (f (dec n))))) (f 2000000)"
    task_id = start(store, tmp_path, source, limits={"depth": 1000})
    run_until(store, lambda: finished(store, task_id), 60, slice_size=10_000_000)
    error = error_of(store, task_id)
    assert error[kw("type")] == kw("limit-error")
    assert error[kw("data")] == Map({kw("limit"): kw("depth")})
    assert store.get(task_id).reductions < 20_000


def test_the_default_depth_is_affordable(tmp_path):
    """An endless recursion fails on the default depth limit within seconds and a few
    hundred MB, instead of building a continuation of gigabytes."""
    assert Limits().depth == 200_000
    # VmHWM is this process's own peak: ru_maxrss carries a forking parent's (pytest's,
    # hundreds of MB late in a run) across exec.
    code = ("import re\n"
            "from flowmetal.cli import main\n"
            "status = main(['-e', '(defn f [n] (+ 1 (f n))) (f 1)'])\n"
            "peak = re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]\n"
            "print(peak, status)\n")
    env = dict(os.environ)
    env.pop("FLOWMETAL_HOME", None)
    started = time.monotonic()
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=300, cwd=tmp_path, env=env)
    took = time.monotonic() - started
    rss_kb, status = r.stdout.split()
    assert status == "1", r.stderr
    assert "continuation deeper than 200000 frames" in r.stderr
    assert int(rss_kb) < 600_000, f"{int(rss_kb) // 1024} MB"
    assert took < 120


BIG_BUSY = """
(def big (loop [s "abcdefghij" i 0] (if (< i 21) (recur (str s s) (inc i)) s)))
(loop [i 0] (recur (inc i)))
"""


def test_a_big_busy_task_does_not_starve_a_small_one(store, tmp_path):
    """A 20 MB state gets slices of 5,000,000 reductions (its commits cost in proportion
    to its size), seconds of work each; but a slice also ends after 0.1 s, so the small
    task on the same worker makes a step every round."""
    big = start(store, tmp_path, BIG_BUSY, "big.fm")
    worker = Worker(store)
    end = time.monotonic() + 60
    while store.get(big).steps < 2:  # the big string is built and committed
        assert time.monotonic() < end
        worker.round()
    assert store.get(big).state_bytes > 20_000_000
    small = start(store, tmp_path, "(dotimes [i 10] (now)) :small-done", "small.fm")
    started = time.monotonic()
    try:
        while not finished(store, small):
            assert time.monotonic() - started < 20, \
                f"the small task made {store.get(small).steps} steps in 20 s"
            worker.round()
    finally:
        worker.stop()
    assert result_value(store.get(small)) == kw("small-done")
    assert store.get(big).status == "runnable"
