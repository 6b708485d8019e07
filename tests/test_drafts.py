"""Drafts: steps whose commit is worked out outside the write lock are committed exactly
as the ordinary way would, and only while the record they start from is still stored;
a worker drafts by itself once it has had to wait for the store's write lock."""

from __future__ import annotations

import threading
import time

import pytest

from flowmetal.printer import to_string
from flowmetal.runtime import api
from flowmetal.runtime.records import Lease, result_value
from flowmetal.runtime.worker import Worker
from flowmetal.store import drafts, open_store
from flowmetal.store import lmdb as lmdb_module
from flowmetal.store.engine import Unit

from .durable_helpers import log_entries, output_chunks, requests_and_answers

LOCAL = """
(loop [i 0 seen []]
  (if (< i 5)
    (do (println "tick" i)
        (let [r (random 10)]
          (now)
          (sleep 0)
          (recur (inc i) (conj seen (< r 10)))))
    seen))
"""


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"))


def rounds_until_idle(worker: Worker) -> None:
    """Let the worker run until nothing is left to do now or later (at most 20 s)."""
    end = time.monotonic() + 20
    worker.run(until=lambda: time.monotonic() > end, idle_exit=True)
    assert time.monotonic() <= end, "the tasks did not finish"


def drafted(store, worker: Worker) -> bool:
    """Whether the store holds a draft of the worker's first pending step."""
    return any(d is not None for d in store.drafts.get(worker.id, [])[:1])


def summary(store, task_id: str) -> tuple:
    rec = store.get(task_id)
    entries = log_entries(store, task_id)
    kinds = [e["kind"] for e in entries]
    return (rec.status, to_string(result_value(rec)), "".join(output_chunks(store, task_id)),
            rec.steps, kinds)


def test_drafted_steps_commit_what_ordinary_steps_do(store, tmp_path):
    ordinary = api.start(store, LOCAL, str(tmp_path / "a.fm"))
    rounds_until_idle(Worker(store, draft="never"))
    counted = {"applied": 0}
    apply = drafts.apply

    def counting_apply(unit, draft, step):
        ok = apply(unit, draft, step)
        counted["applied"] += ok
        return ok

    drafted = api.start(store, LOCAL, str(tmp_path / "b.fm"))
    drafts.apply = counting_apply
    try:
        rounds_until_idle(Worker(store, draft="always"))
    finally:
        drafts.apply = apply
    assert summary(store, drafted) == summary(store, ordinary)
    assert summary(store, drafted)[1] == "[true true true true true]"
    # Every step but the last (which finishes the task) was committed from its draft.
    assert counted["applied"] == summary(store, drafted)[3] - 1
    requests_and_answers(log_entries(store, drafted))


def test_only_steps_that_touch_their_own_task_are_drafted(store, tmp_path):
    source = """
    (def other (spawn (fn [] (receive))))
    (send other :hello)
    (join other)
    """
    tid = api.start(store, source, str(tmp_path / "main.fm"))
    worker = Worker(store, draft="always")
    ops = []
    prepare = drafts.prepare

    def noting_prepare(step, *args):
        draft = prepare(step, *args)
        if step.task_id == tid and step.status == "waiting":
            ops.append((step.request.op, draft is not None))
        return draft

    drafts.prepare = noting_prepare
    try:
        rounds_until_idle(worker)
    finally:
        drafts.prepare = prepare
    assert ("spawn", False) in ops and ("send", False) in ops and ("join", False) in ops
    assert summary(store, tid)[:2] == ("done", ":hello")


@pytest.mark.parametrize("meanwhile", ["send", "cancel", "lease lost"])
def test_a_draft_whose_record_changed_is_not_used(store, tmp_path, meanwhile):
    source = "(loop [i 0] (now) (recur (inc i)))"
    tid = api.start(store, source, str(tmp_path / "main.fm"))
    worker = Worker(store, draft="always")
    for _ in range(3):
        worker.round()
    assert len(worker.pending) == 1
    assert drafted(store, worker)
    if meanwhile == "send":
        api.send(store, tid, 3)
    elif meanwhile == "cancel":
        api.cancel(store, tid)
    else:
        with store.backend.write() as t:
            unit = Unit(t)
            rec = unit.get(tid)
            rec.lease = Lease("someone else", rec.epoch + 1, time.time() + 60)
            rec.epoch += 1
            unit.put(rec)
            unit.flush()
    before = summary(store, tid)[3]
    applied = []
    apply = drafts.apply

    def noting_apply(unit, draft, step):
        applied.append(apply(unit, draft, step))
        return applied[-1]

    drafts.apply = noting_apply
    try:
        worker.round()
    finally:
        drafts.apply = apply
    assert applied == [False]
    status, _, _, steps, kinds = summary(store, tid)
    if meanwhile == "lease lost":  # the step is refused
        assert steps == before
    else:  # committed the ordinary way, with what happened meanwhile
        assert steps == before + 1
        assert kinds.count("message" if meanwhile == "send" else "cancel") == 1
    if meanwhile == "cancel":
        rounds_until_idle(worker)
        assert summary(store, tid)[0] == "cancelled"


def test_a_worker_drafts_once_it_waited_for_the_write_lock(store, tmp_path, monkeypatch):
    tid = api.start(store, "(loop [i 0] (now) (recur (inc i)))", str(tmp_path / "main.fm"))
    worker = Worker(store)  # draft="auto"
    for _ in range(5):
        worker.round()
    assert not drafted(store, worker)  # nobody else wants the lock
    held, release = threading.Event(), threading.Event()

    def hold_the_lock():
        with store.backend.write():
            held.set()
            release.wait(5)

    holder = threading.Thread(target=hold_the_lock)
    holder.start()
    held.wait(5)
    threading.Timer(lmdb_module.CONTENDED * 20, release.set).start()
    worker.round()  # waits for the holder
    holder.join()
    assert drafted(store, worker)
    monkeypatch.setattr(lmdb_module, "DRAFT_FOR", 0.0)
    store.backend.contended_until = time.monotonic()
    worker.round()
    assert not drafted(store, worker)  # the wait is long past
    api.cancel(store, tid)
    rounds_until_idle(worker)


def test_draft_modes_are_checked(store):
    with pytest.raises(ValueError, match="draft must be one of auto, always, never"):
        Worker(store, draft="sometimes")
