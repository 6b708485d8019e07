"""Several worker processes on one LMDB store: they share the tasks, never run one task
twice at once, and take over the tasks of a SIGKILLed worker once its leases expire,
from the last committed step."""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict

import pytest

from flowmetal.printer import to_string
from flowmetal.runtime import api
from flowmetal.runtime.records import TaskRecord, result_value
from flowmetal.store import open_store

from .durable_helpers import (
    ForkServer,
    log_entries,
    output_chunks,
    requests_and_answers,
    worker_process,
)

BUSY = """
(defn spin [n] (loop [i 0 acc 0] (if (< i n) (recur (inc i) (+ acc i)) acc)))
(loop [i 0]
  (when (< i LINES)
    (println "TAG line" i (spin 200))
    (if (= 0 (mod i 4)) (sleep 0.005) (now))
    (recur (inc i))))
:finished
"""


def busy(tag: str, lines: int) -> str:
    return BUSY.replace("TAG", tag).replace("LINES", str(lines))


def expected_output(tag: str, lines: int) -> str:
    return "".join(f"{tag} line {i} 19900\n" for i in range(lines))


def read_steps(path: str) -> list[dict]:
    """The steps a worker process recorded as committed."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def check_chain(steps: list[dict], rec: dict) -> None:
    """The committed steps of one task follow each other: each starts where the one
    before ended, epochs only grow, and one epoch belongs to one worker."""
    steps = sorted(steps, key=lambda s: s["at"])
    assert len(steps) == rec.steps, (len(steps), rec.steps)
    assert steps[0]["before"] == 0
    for a, b in zip(steps, steps[1:]):
        assert b["before"] == a["after"], (a, b)
        assert b["epoch"] >= a["epoch"], (a, b)
    assert steps[-1]["after"] == rec.reductions
    owner: dict[int, str] = {}
    for s in steps:
        assert owner.setdefault(s["epoch"], s["worker"]) == s["worker"], s


def wait_all(procs, timeout: float) -> list[int]:
    end = time.monotonic() + timeout
    codes = []
    for p in procs:
        try:
            codes.append(p.wait(max(0.1, end - time.monotonic())))
        except Exception:
            for q in procs:
                q.kill()
                q.wait(10)
            raise
    return codes


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"))


def test_worker_processes_share_the_tasks_and_never_run_one_twice(store, tmp_path):
    ids = {api.start(store, busy(f"t{i}", 12), str(tmp_path / f"t{i}.fm")): f"t{i}"
           for i in range(24)}
    errors = open(tmp_path / "stderr", "w")
    procs = [worker_process({"store": store.path, "slice": 30, "lease": 5.0, "batch": 3,
                             "id": f"w{n}", "record": str(tmp_path / f"w{n}.steps"),
                             "seconds": 90.0}, errors) for n in range(3)]
    codes = wait_all(procs, 120)
    errors.close()
    assert codes == [0, 0, 0], (tmp_path / "stderr").read_text()
    steps = [s for n in range(3) for s in read_steps(str(tmp_path / f"w{n}.steps"))]
    by_task = defaultdict(list)
    for s in steps:
        by_task[s["task"]].append(s)
    with store.view() as view:
        records = {tid: view.task(tid) for tid in ids}
    for tid, tag in ids.items():
        rec = records[tid]
        assert rec.status == "done"
        assert to_string(result_value(rec)) == ":finished"
        assert "".join(output_chunks(store, tid)) == expected_output(tag, 12)
        check_chain(by_task[tid], rec)
        requests_and_answers(log_entries(store, tid))
    workers = {s["worker"] for s in steps}
    print({w: sum(s["worker"] == w for s in steps) for w in sorted(workers)}, "steps")
    assert len(workers) >= 2, workers
    # Steps of different workers were committed while the others were at work.
    spans = {w: (min(s["at"] for s in steps if s["worker"] == w),
                 max(s["at"] for s in steps if s["worker"] == w)) for w in workers}
    assert max(lo for lo, _ in spans.values()) < min(hi for _, hi in spans.values())


STEADY_LINES = 1_000  # enough steps that A is still busy when it is killed
STEADY = f"""
(loop [i 0]
  (when (< i {STEADY_LINES})
    (println "TAG line" i)
    (now)
    (recur (inc i))))
:finished
"""


def steady_output(tag: str) -> str:
    return "".join(f"{tag} line {i}\n" for i in range(STEADY_LINES))


@pytest.fixture
def server():
    s = ForkServer()
    yield s
    s.close()


def diagnosis(rec: dict, mine: list[dict], tmp_path) -> str:
    """What A and B committed of the task, for a failure message."""
    fields = {k: getattr(rec, k) for k in ("status", "steps", "reductions", "epoch", "lease")}
    theirs = [s for s in read_steps(str(tmp_path / "A.steps")) if s["task"] == rec.id]
    return f"at the kill: {fields}\nA's last steps: {theirs[-3:]}\nB's first: {mine[:3]}"


def test_a_killed_workers_tasks_resume_elsewhere_after_its_leases_expire(store, tmp_path,
                                                                         server):
    """Worker A holds every task; B, started meanwhile, can take none; A is SIGKILLed;
    B takes each task once A's lease on it has run out, from A's last committed step."""
    ids = {api.start(store, STEADY.replace("TAG", f"k{i}"), str(tmp_path / f"k{i}.fm")):
           f"k{i}" for i in range(4)}
    errors = str(tmp_path / "stderr")
    first = server.start({"store": store.path, "slice": 50, "lease": 1.0, "id": "A",
                          "record": str(tmp_path / "A.steps"), "stderr": errors,
                          "seconds": 60.0})
    second = None
    try:
        end = time.monotonic() + 30
        while True:
            with store.view() as view:
                if all(view.task(t).steps >= 3 for t in ids):
                    break
            assert time.monotonic() < end and server.wait(first, 0.002) is None, \
                "A made no progress"
        second = server.start({"store": store.path, "slice": 50, "lease": 1.0, "id": "B",
                               "record": str(tmp_path / "B.steps"), "stderr": errors,
                               "ready": str(tmp_path / "B.ready"), "seconds": 60.0})
        while not os.path.exists(tmp_path / "B.ready"):
            assert time.monotonic() < end and server.wait(second, 0.002) is None, \
                "B did not start"
        time.sleep(0.2)  # B runs, but every task is leased to A
        assert server.kill(first) == -9
        killed = time.time()
        # A write transaction: A may have died inside its commit, after the commit was
        # made but before readers were told of it (LMDB tells them when the next writer
        # takes the lock A held), and B will resume from that commit.
        with store.backend.write() as t:
            at_kill = {tid: TaskRecord.from_bytes(t.get_task(tid)) for tid in ids}
        assert read_steps(str(tmp_path / "B.steps")) == [], at_kill
        code = server.wait(second, 60)
    finally:
        for pid in (first, second):
            if pid is not None:
                server.kill(pid)
    assert code == 0, open(errors).read()
    b_steps = read_steps(str(tmp_path / "B.steps"))
    held = 0
    for tid, tag in ids.items():
        rec = at_kill[tid]
        mine = sorted((s for s in b_steps if s["task"] == tid), key=lambda s: s["at"])
        assert "".join(output_chunks(store, tid)) == steady_output(tag)
        requests_and_answers(log_entries(store, tid))
        if rec.status == "done":
            assert mine == []
            continue
        assert mine, "B did not resume " + tag
        # Resumed from the last step A committed, after A's lease ran out.
        assert mine[0]["before"] == rec.reductions, diagnosis(rec, mine, tmp_path)
        if rec.lease and rec.lease.worker == "A":
            held += 1
            assert mine[0]["started"] >= rec.lease.until, (rec, mine[0])
            assert rec.lease.until > killed - 0.5, (rec, killed)
        final = store.get(tid)
        assert final.status == "done"
        assert final.steps == rec.steps + len(mine), (rec, final, mine)
        assert mine[-1]["after"] == final.reductions, (final, mine[-1])
    assert held >= 2, at_kill
