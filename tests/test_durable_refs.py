"""Atoms, delays and regexes are durable task state: on a real LMDB store, a task that
waits between its swaps resumes — in the same worker, or decoded by a new one — with its
atoms' values and identity, its delays forced at most once, and its regexes."""

from __future__ import annotations

import pytest

from flowmetal.printer import to_string
from flowmetal.runtime import api
from flowmetal.runtime.records import result_value
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.values import kw

from .durable_helpers import expire_leases, output_chunks, status

PROGRAM = """
(def hits (atom 0))
(def log (atom []))
(def pair [hits hits])
(def d (delay (swap! log conj :forced) (* 6 7)))
(def words #"b+")
(defn step [tag] (swap! hits inc) (swap! log conj tag))
(step :a)
(sleep 0.02)
(step :b)
(println "forced" (force d))
(step (receive))
(swap! (second pair) + 100)
(sleep 0.01)
(println "again" @d)
[@hits @(first pair) (identical? (first pair) (second pair)) @log (realized? d)
 (re-find words "abbbc")]
"""

EXPECTED = '[103 103 true [:a :b :forced :c] true "bbb"]'


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"))


def _start(store, tmp_path) -> str:
    path = tmp_path / "refs.fm"
    path.write_text(PROGRAM)
    return api.start(store, PROGRAM, str(path))


def _finish(store, tid: str, fresh_worker_each_wait: bool) -> None:
    """Run the task to its end, sending it :c when it waits for a message; with
    ``fresh_worker_each_wait`` every wait is resumed by a new worker, which decodes the
    continuation from the store."""
    worker = Worker(store, slice_size=1000, poll=0.01)
    sent = False
    for _ in range(10_000):
        state = status(store, tid)
        if state == "done":
            return
        assert state in ("runnable", "waiting"), state
        rec = api.get(store, tid)
        if state == "waiting" and rec.waiting.op == "next-message" and not sent:
            api.send(store, tid, kw("c"))
            sent = True
        if state == "waiting" and fresh_worker_each_wait:
            del worker
            expire_leases(store)
            worker = Worker(store, slice_size=1000, poll=0.01)
        worker.round()
    raise AssertionError("the task did not finish")


@pytest.mark.parametrize("fresh", [False, True], ids=["one-worker", "worker-per-wait"])
def test_atoms_and_delays_survive_waits(store, tmp_path, fresh):
    tid = _start(store, tmp_path)
    _finish(store, tid, fresh)
    assert to_string(result_value(api.get(store, tid))) == EXPECTED
    assert "".join(output_chunks(store, tid)) == "forced 42\nagain 42\n"
