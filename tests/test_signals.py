"""SIGTERM and Ctrl-C (SIGINT) stop ``flowmetal run``, ``resume`` and ``worker`` within
a second whatever the task is doing, even inside a long primitive, and leave the task at
its last committed step, which a later worker finishes.

Every command is the real CLI in its own process over an LMDB store in a tmp dir.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flowmetal.store import open_store

from .cli_helpers import fm, ok, popen

TIMEOUT = 60
STOPS_WITHIN = 1.5  # seconds from the signal to the exit

# Two committed steps (the sleeps), then one long slice: most of it inside `sort`, a
# primitive that takes seconds on 1,500,000 items.
BUSY = """
(println "one")
(sleep 0.01)
(println "busy")
(sleep 0.01)
(def n (count (sort (reverse (range 1500000)))))
(println "done" n)
n
"""


def detail(store: Path, task_id: str) -> dict:
    return json.loads(ok(fm(store, "show", task_id, "--json")))


def output(store: Path, task_id: str) -> str:
    """The task's committed output, read from the store."""
    with open_store(str(store)).view() as view:
        return "".join(text for _, text in view.output(task_id))


def steps(store: Path, task_id: str) -> int:
    """The steps the task has committed (read in this process: quicker than the CLI)."""
    rec = open_store(str(store)).get(task_id)
    return rec.steps if rec is not None else 0


def wait_busy(store: Path, task_id: str, proc: subprocess.Popen) -> dict:
    """Wait until the task has committed its two sleeps and is inside its long slice."""
    deadline = time.monotonic() + TIMEOUT
    while steps(store, task_id) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the task never got busy"
        time.sleep(0.02)
    time.sleep(0.3)  # inside the range and the sort by now
    assert proc.poll() is None, proc.communicate()
    return detail(store, task_id)


def stop(proc: subprocess.Popen, signum: int) -> tuple[int, float]:
    """Send ``signum``; the exit status and the seconds the process took to exit."""
    sent = time.monotonic()
    proc.send_signal(signum)
    try:
        status = proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return status, time.monotonic() - sent


def start(store: Path, tmp_path: Path) -> str:
    (tmp_path / "busy.fm").write_text(BUSY, encoding="utf-8")
    return ok(fm(store, "start", "busy.fm")).strip()


def finish_later(store: Path, task_id: str, before: dict) -> None:
    """The stopped task is at the step committed before the signal; a worker finishes it."""
    after = detail(store, task_id)
    assert after["status"] == "runnable"
    assert after["steps"] == before["steps"]
    assert after["reductions"] == before["reductions"]
    ok(fm(store, "worker", "--until-idle"))
    done = detail(store, task_id)
    assert done["status"] == "done", done
    assert output(store, task_id) == "one\nbusy\ndone 1500000\n"


def the_task(store: Path) -> str:
    (row,) = json.loads(ok(fm(store, "tasks", "--json")))
    return row["id"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_run_stops_inside_a_long_primitive(tmp_path, procs, signum):
    store = tmp_path / "store"
    (tmp_path / "busy.fm").write_text(BUSY, encoding="utf-8")
    run = popen(procs, store, "run", "busy.fm")
    deadline = time.monotonic() + TIMEOUT
    while not (store / "data.mdb").exists() or not json.loads(
            ok(fm(store, "tasks", "--json"))):
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.05)
    task_id = the_task(store)
    before = wait_busy(store, task_id, run)
    status, took = stop(run, signum)
    out, err = run.communicate()
    assert took < STOPS_WITHIN, f"flowmetal run took {took:.1f} s to stop"
    assert status == 130, err
    assert out == "one\nbusy\n"
    assert f"flowmetal resume {task_id}" in err
    finish_later(store, task_id, before)


def test_resume_stops_inside_a_long_primitive(tmp_path, procs):
    store = tmp_path / "store"
    task_id = start(store, tmp_path)
    resume = popen(procs, store, "resume", task_id)
    before = wait_busy(store, task_id, resume)
    status, took = stop(resume, signal.SIGTERM)
    out, err = resume.communicate()
    assert took < STOPS_WITHIN, f"flowmetal resume took {took:.1f} s to stop"
    assert status == 130, err
    assert out == "one\nbusy\n"
    finish_later(store, task_id, before)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_worker_stops_inside_a_long_primitive(tmp_path, procs, signum):
    store = tmp_path / "store"
    task_id = start(store, tmp_path)
    worker = popen(procs, store, "worker")
    before = wait_busy(store, task_id, worker)
    status, took = stop(worker, signum)
    out, err = worker.communicate()
    assert took < STOPS_WITHIN, f"flowmetal worker took {took:.1f} s to stop"
    assert status == 0, err
    # It let go of its lease: a new worker takes the task at once.
    assert detail(store, task_id)["lease"] is None
    finish_later(store, task_id, before)


def test_worker_stops_in_a_cpu_bound_loop_and_keeps_its_steps(tmp_path, procs):
    store = tmp_path / "store"
    (tmp_path / "loop.fm").write_text(
        "(loop [i 0] (if (< i 3000000) (recur (inc i)) i))", encoding="utf-8")
    task_id = ok(fm(store, "start", "loop.fm")).strip()
    worker = popen(procs, store, "worker")
    deadline = time.monotonic() + TIMEOUT
    while steps(store, task_id) < 3:
        assert time.monotonic() < deadline and worker.poll() is None
        time.sleep(0.05)
    status, took = stop(worker, signal.SIGTERM)
    worker.communicate()
    assert took < STOPS_WITHIN and status == 0, (took, status)
    stopped = detail(store, task_id)
    assert stopped["status"] == "runnable" and stopped["steps"] >= 3
    ok(fm(store, "worker", "--until-idle"))
    done = detail(store, task_id)
    assert done["status"] == "done" and done["steps"] > stopped["steps"]
