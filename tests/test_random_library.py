"""rand, rand-int, rand-nth and shuffle in durable tasks on a real LMDB store: each draws
from one ``random`` request whose answer is recorded in the task's log, and the value the
task computed from it survives a resume by another worker."""

from __future__ import annotations

import pytest

from flowmetal.procedures import PRIMITIVES
from flowmetal.runtime import api
from flowmetal.runtime.records import decode_data, result_value
from flowmetal.store import open_store
from flowmetal.values import Vector, kw

from .durable_helpers import log_entries, requests_and_answers, run_until_finished

DRAWS = """
(def v (shuffle (range 40)))
(def r (rand-int 1000))
(def e (rand-nth [:a :b :c]))
(def f (rand 10))
[v r e f]
"""

RESUMED = """
(def v (shuffle (range 30)))
(def n (rand-int 1000000))
(sleep 0.2)
[v n (shuffle [7]) (shuffle [])]
"""


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"))


def ops(store, task_id: str) -> list[str]:
    """The ops of the task's answered requests, in request order."""
    return [op for op, _ in requests_and_answers(log_entries(store, task_id))]


def random_answers(store, task_id: str) -> list:
    """The values of the task's recorded random answers, in request order."""
    with store.view() as view:
        return [decode_data(bytes(e.details["value"])) for _, e in view.log(task_id)
                if e.kind == "answer" and e.details.get("op") == "random"]


def test_each_draw_is_one_recorded_random_answer(store, tmp_path):
    task = api.start(store, DRAWS, str(tmp_path / "draws.fm"))
    run_until_finished(store, [task])
    rec = store.get(task)
    assert rec.status.value == "done", rec.error
    v, r, e, f = result_value(rec)
    assert ops(store, task) == ["random"] * 4
    seed, r_answer, e_answer, f_answer = random_answers(store, task)
    # shuffle's order is the one its recorded number picks; the others are the answers.
    assert v == PRIMITIVES["%shuffle"].fn(Vector(range(40)), seed)
    assert sorted(v) == list(range(40)) and list(v) != list(range(40))
    assert r == r_answer and 0 <= r < 1000
    assert e == [kw("a"), kw("b"), kw("c")][e_answer]
    assert f == 10 * f_answer and 0 <= f < 10


def test_a_resumed_task_keeps_its_draws(store, tmp_path):
    task = api.start(store, RESUMED, str(tmp_path / "resumed.fm"))
    # The first worker stops while the task sleeps; a second one finishes it.
    first = run_until_waiting(store, task)
    assert first
    run_until_finished(store, [task])
    rec = store.get(task)
    assert rec.status.value == "done", rec.error
    v, n, one, none = result_value(rec)
    assert ops(store, task) == ["random", "random", "sleep"]  # none for 0 or 1 items
    seed, n_answer = random_answers(store, task)
    assert v == PRIMITIVES["%shuffle"].fn(Vector(range(30)), seed)
    assert n == n_answer
    assert (one, none) == (Vector([7]), Vector())


def run_until_waiting(store, task_id: str) -> bool:
    """Run a worker until the task waits on its sleep; whether it did."""
    import time

    from flowmetal.runtime.worker import Worker

    end = time.monotonic() + 20

    def until() -> bool:
        with store.view() as view:
            return view.task(task_id).status.value == "waiting" or time.monotonic() > end

    Worker(store).run(until=until)
    with store.view() as view:
        return view.task(task_id).status.value == "waiting"
