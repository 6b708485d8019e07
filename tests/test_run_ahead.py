"""A worker runs the tasks its round claimed while the store sends that round's commit
(on PostgreSQL, whose commit is sent and then awaited); what ran for a commit that did
not come back done is thrown away and run again from the committed state."""

from __future__ import annotations

import threading
import time

import pytest

from flowmetal.printer import to_string
from flowmetal.runtime import api
from flowmetal.runtime import worker as worker_module
from flowmetal.runtime.records import result_value
from flowmetal.runtime.worker import Worker

from .durable_helpers import log_entries, requests_and_answers, run_until_finished
from .pg_helpers import base_url, pg_store, pg_url  # noqa: F401  (fixtures)

STEPS = 300
# Every (now) is a step of its own; the times must never go back, and the messages
# sent meanwhile are taken in order at the end.
PROGRAM = f"""
(defn times [i last ok]
  (if (= i {STEPS})
    ok
    (let [t (now)]
      (times (inc i) t (and ok (>= t last))))))
(def ok (times 0 0 true))
(defn take [n got]
  (if (= n 0) got (take (dec n) (conj got (receive :timeout 30)))))
[ok (take 10 [])]
"""


@pytest.fixture
def counted(monkeypatch):
    """How often rounds ran their claimed tasks ahead, and how often that was undone."""
    counts = {"ran": 0, "undone": 0}
    call, undo = worker_module._RunAhead.__call__, worker_module._RunAhead.undo

    def counting_call(self, result):
        call(self, result)
        counts["ran"] += self.result is result

    def counting_undo(self):
        counts["undone"] += bool(self.ran)
        undo(self)
    monkeypatch.setattr(worker_module._RunAhead, "__call__", counting_call)
    monkeypatch.setattr(worker_module._RunAhead, "undo", counting_undo)
    return counts


def check_finished(store, task_id: str) -> None:
    rec = api.get(store, task_id)
    assert str(rec.status) == "done", rec
    assert to_string(result_value(rec)) == "[true [0 1 2 3 4 5 6 7 8 9]]"
    answers = requests_and_answers(log_entries(store, task_id))
    assert [op for op, _ in answers] == ["now"] * STEPS + ["next-message"] * 10
    assert rec.steps == STEPS + 10 + 1


def test_a_round_tells_when_its_commit_is_sent_with_the_round_it_returns(store):
    task_id = api.start(store, "(dotimes [i 3] (now))", "t.fm")
    seen = []
    result = store.round("w", [], 5, 30.0, {}, on_sent=seen.append)
    assert [c.record.id for c in result.claimed] == [task_id]
    if type(store.backend).__name__ == "PostgresStore":
        assert seen == [result]  # called once, with the result the round returns
    else:
        assert seen == []  # LMDB commits in the calling thread: nothing to overlap


def test_steps_run_ahead_of_their_rounds_commit_end_as_when_run_after(store, counted):
    task_id = api.start(store, PROGRAM, "t.fm")
    for i in range(10):
        api.send(store, task_id, i)
    run_until_finished(store, [task_id], batch=1)
    check_finished(store, task_id)
    if type(store.backend).__name__ == "PostgresStore":
        assert counted["ran"] >= STEPS // 2


def test_steps_run_ahead_of_a_commit_that_fails_are_run_again(store, counted):
    """Messages sent while the task runs change its row under the worker's round: the
    round's commit is refused (the row it kept has another version now) and tried
    again; what ran ahead of the refused commit is undone."""
    task_id = api.start(store, PROGRAM, "t.fm")
    done = threading.Event()

    def sender() -> None:
        for i in range(10):
            time.sleep(0.005)
            api.send(store, task_id, i)
        done.set()
    thread = threading.Thread(target=sender)
    thread.start()
    try:
        run_until_finished(store, [task_id], batch=1, slice_size=1_000)
    finally:
        thread.join()
    assert done.is_set()
    check_finished(store, task_id)
    if type(store.backend).__name__ == "PostgresStore":
        assert counted["ran"] > 0 and counted["undone"] > 0


def test_a_connection_lost_at_commit_undoes_the_steps_run_ahead(pg_store, counted):  # noqa: F811
    """The server ends the worker's connection while a round's commit is on its way:
    the round is unavailable, what ran ahead is undone, the steps wait, and the task
    ends as if nothing had happened."""
    import psycopg

    from flowmetal.store.engine import TaskStore

    store = TaskStore(pg_store)
    task_id = api.start(store, PROGRAM, "t.fm")
    for i in range(10):
        api.send(store, task_id, i)
    worker = Worker(store, batch=1, log=lambda text: None)
    killer = psycopg.connect(base_url(), autocommit=True)
    in_flight = {"pid": None}
    killed = 0
    original = worker_module._RunAhead.__call__

    def kill_then_run(self, result):
        nonlocal killed
        pid = in_flight["pid"]
        if killed < 3 and pid is not None and result.claimed and \
                result.claimed[0].record.steps % 40 == 39:
            killed += 1
            killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        original(self, result)
    worker_module._RunAhead.__call__ = kill_then_run
    try:
        end = time.monotonic() + 60
        while not api.get(store, task_id).finished and time.monotonic() < end:
            ahead = pg_store._ahead  # the transaction the next round commits in
            in_flight["pid"] = ahead.conn.pgconn.backend_pid if ahead is not None else None
            worker.round()
    finally:
        worker_module._RunAhead.__call__ = original
        worker.stop()
        killer.close()
    assert killed == 3
    assert counted["undone"] >= 1
    check_finished(store, task_id)
