"""One suite, both stores: the store protocol's contract (``flowmetal/store/base.py``)
checked against an LMDB directory and a PostgreSQL schema alike, through the protocol
and the runtime that uses it."""

from __future__ import annotations

import threading
import time

import pytest

from flowmetal.printer import to_string
from flowmetal.runtime import api
from flowmetal.runtime.migrate import export_task, import_task
from flowmetal.runtime.records import Lease, Status, decode_data, encode_data, result_value
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.store.engine import Unit, copy_store
from flowmetal.store.tables import TaskFilter

from .durable_helpers import expire_leases, log_entries, output_chunks, requests_and_answers
from .pg_helpers import drop_schema, new_schema, require_postgres, schema_url

KINDS = ["lmdb", "postgres"]


def make_store(kind: str, tmp_path, name: str = "store"):
    """A fresh store of ``kind`` and what removes it."""
    if kind == "lmdb":
        return open_store(str(tmp_path / name)), lambda: None
    require_postgres()
    schema = new_schema()
    store = open_store(schema_url(schema))

    def drop() -> None:
        store.close()
        drop_schema(schema)
    return store, drop


def finish(store, *ids: str, timeout: float = 20.0, http: bool = False, **options
           ) -> Worker:
    """Run the store's tasks until these have finished (with an HTTP connector too)."""
    worker = Worker(store, poll=0.01, **options)
    if http:
        from flowmetal.connectors.http import HttpConnector

        worker.connector = HttpConnector(store)
    end = time.monotonic() + timeout

    def done() -> bool:
        assert time.monotonic() < end, "the tasks did not finish"
        with store.view() as view:
            return all(view.task(t).finished for t in ids)
    worker.run(until=done)
    return worker


def value(store, task_id: str) -> str:
    return to_string(result_value(store.get(task_id)))


def test_a_task_runs_to_its_result_with_every_effect(store, tmp_path):
    source = """
    (def kid (spawn (fn [x] (sleep 0.01) (* x 2)) 21))
    (send (self) :note)
    (def t (now))
    (def r (random 10))
    [(join kid) (receive) (< 0 t) (< r 10)
     (try (receive :timeout 0.05) (catch :timeout e :timed-out))]
    """
    tid = api.start(store, source, str(tmp_path / "main.fm"))
    finish(store, tid)
    assert value(store, tid) == "[42 :note true true :timed-out]"
    pairs = requests_and_answers(log_entries(store, tid))
    assert [op for op, _ in pairs] == ["spawn", "send", "now", "random", "join",
                                       "next-message", "next-message"]


def test_output_is_committed_with_its_step_and_shown_once(store, tmp_path):
    tid = api.start(store, '(dotimes [i 3] (println "line" i) (sleep 0)) :ok',
                    str(tmp_path / "p.fm"))
    shown: list[str] = []
    rec = api.run_foreground(store, tid, shown.append)
    assert rec.status == Status.DONE
    assert "".join(shown) == "line 0\nline 1\nline 2\n"
    assert "".join(output_chunks(store, tid)) == "".join(shown)
    shown.clear()
    api.run_foreground(store, tid, shown.append)
    assert shown == []


def test_a_stale_step_is_refused_and_changes_nothing(store, tmp_path):
    tid = api.start(store, "(loop [i 0] (now) (recur (inc i)))", str(tmp_path / "p.fm"))
    a = Worker(store, worker_id="A", lease_seconds=30.0)
    a.round()
    a.round()
    steps = store.get(tid).steps
    expire_leases(store)
    b = Worker(store, worker_id="B", lease_seconds=30.0)
    assert b.round() == 1  # B takes the task over: a new epoch
    lease = store.get(tid).lease
    assert (lease.worker, lease.epoch) == ("B", 2)
    a.round()  # A's step was made at epoch 1: refused
    rec = store.get(tid)
    assert rec.steps == steps and rec.lease.worker == "B"
    a.stop()
    b.stop()
    api.cancel(store, tid)
    finish(store, tid)
    assert store.get(tid).status == Status.CANCELLED


def test_leases_and_timers_are_judged_by_the_stores_clock(store, tmp_path):
    tid = api.start(store, "(sleep 0.2) :woke", str(tmp_path / "p.fm"))
    worker = Worker(store)
    while store.get(tid).status != Status.WAITING:
        worker.round()
    with store.view() as view:
        clock = view.clock()
        due = view.next_timer()
    assert 0.0 < due - clock <= 0.25
    finish(store, tid)
    assert value(store, tid) == ":woke"


def test_an_answer_is_delivered_exactly_once(store, tmp_path):
    tid = api.start(store, "[(receive) (receive :timeout 0.3)]", str(tmp_path / "p.fm"))
    worker = Worker(store)
    while store.get(tid).status != Status.WAITING:
        worker.round()
    threads = [threading.Thread(target=api.send, args=(store, tid, i)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    finish(store, tid)
    assert value(store, tid) in ("[0 1]", "[1 0]")
    answers = [e for e in log_entries(store, tid) if e["kind"] == "answer"]
    assert len(answers) == 2


def test_a_task_cannot_be_claimed_by_two_workers_at_once(store, tmp_path):
    ids = [api.start(store, "(dotimes [i 20] (now)) :ok", str(tmp_path / f"p{i}.fm"))
           for i in range(6)]
    a, b = Worker(store, worker_id="A", batch=4), Worker(store, worker_id="B", batch=4)
    a.round()
    b.round()
    mine = {s.task_id for s in a.pending}
    theirs = {s.task_id for s in b.pending}
    assert mine and theirs and not mine & theirs
    end = time.monotonic() + 20
    while any(not store.get(t).finished for t in ids):
        assert time.monotonic() < end
        a.round()
        b.round()
    a.stop()
    b.stop()
    assert all(value(store, t) == ":ok" for t in ids)
    for t in ids:
        assert [op for op, _ in requests_and_answers(log_entries(store, t))] == ["now"] * 20


def test_views_list_filter_and_page(store, tmp_path):
    def start(i: int) -> str:
        return api.start(store, f"{i}", str(tmp_path / ("even.fm" if i % 2 else "odd.fm")))

    ids = [start(i) for i in range(3)]
    finish(store, *ids)
    ids += [start(i) for i in range(3, 7)]
    with store.view() as view:
        every = [r.id for r in view.tasks(limit=100)]
        assert every == sorted(ids)
        first = view.tasks(limit=3)
        rest = view.tasks(after=first[-1].id, limit=100)
        assert [r.id for r in first + rest] == every
        newest = view.tasks(limit=2, descending=True)
        assert [r.id for r in newest] == every[::-1][:2]
        done = view.tasks(TaskFilter(status=("done",)))
        assert sorted(r.id for r in done) == sorted(ids[:3])
        evens = view.tasks(TaskFilter(name="even.fm"))
        assert len(evens) == 3
        assert view.tasks(TaskFilter(id_prefix=ids[4]))[0].id == ids[4]
        counts = view.count()
        assert counts.get("done") == 3 and counts.get("runnable") == 4


def test_release_gives_up_a_stopped_workers_leases(store, tmp_path):
    tid = api.start(store, "(loop [i 0] (now) (recur (inc i)))", str(tmp_path / "p.fm"))
    worker = Worker(store, worker_id="gone")
    worker.round()
    assert store.get(tid).lease.worker == "gone"
    assert store.release("gone") == 1
    assert store.get(tid).lease is None
    worker.pending = []
    worker.lock.release()
    api.cancel(store, tid)
    finish(store, tid)


def test_dead_workers_leases_are_released_by_their_liveness_lock(store, tmp_path):
    tid = api.start(store, "(loop [i 0] (now) (recur (inc i)))", str(tmp_path / "p.fm"))
    worker = Worker(store, worker_id="w1")
    worker.round()
    assert store.worker_alive("w1")
    assert store.release_dead() == 0
    worker.lock.release()  # as if its process died
    assert not store.worker_alive("w1")
    assert store.release_dead() == 1
    assert store.get(tid).lease is None
    api.cancel(store, tid)
    finish(store, tid)


def test_an_unreadable_record_fails_that_task_alone(store, tmp_path):
    good = api.start(store, "(now) :good", str(tmp_path / "g.fm"))
    bad = api.start(store, "(now) :bad", str(tmp_path / "b.fm"))
    with store.backend.write() as t:
        unit = Unit(t)
        rec = unit.get(bad)
        from flowmetal.store.engine import columns

        t.put_task(bad, b"\xff not a record", columns(rec))
    with store.view() as view:
        listed = [r.id for r in view.tasks()]
        assert good in listed and bad not in listed and view.skipped == 1
    finish(store, good)
    rec = store.get(bad)
    assert rec.status == Status.FAILED
    assert ":corrupt-state" in to_string(result_value(rec))


def test_a_big_result_is_stored_and_described_not_printed(store, tmp_path):
    tid = api.start(store, "(bit-shift-left 1 500000)", str(tmp_path / "p.fm"))
    began = time.monotonic()
    finish(store, tid)
    assert time.monotonic() - began < 10
    assert result_value(store.get(tid)) == 1 << 500_000
    from flowmetal.runtime import inspect

    with store.view() as view:
        done = [inspect.log_entry(seq, e) for seq, e in view.log(tid) if e.kind == "done"]
    assert done[0]["details"]["value"].startswith("#<integer of 500,001 bits>")


def test_a_blocked_task_waits_for_its_code(store, tmp_path):
    rec_id = api.start(store, "(now) :ran", str(tmp_path / "p.fm"))
    program = store.get(rec_id).program
    with store.backend.write() as t:
        unit = Unit(t)
        rec = unit.get(rec_id)
        rec.programs = [p for p in rec.programs if p != program] + ["0" * 64]  # no such code
        unit.put(rec)
        unit.flush()
    worker = Worker(store)
    worker.round()
    worker.round()
    rec = store.get(rec_id)
    assert rec.status == Status.RUNNABLE and "not in the program store" in rec.blocked
    with store.backend.write() as t:
        unit = Unit(t)
        rec = unit.get(rec_id)
        rec.programs = [p for p in rec.programs if p != "0" * 64] + [program]
        unit.put(rec)
        unit.flush()
    worker.stop()
    finish(store, rec_id)
    assert value(store, rec_id) == ":ran" and store.get(rec_id).blocked is None


def test_send_and_cancel_refuse_ended_or_unknown_tasks(store, tmp_path):
    from flowmetal.runtime.records import TaskError

    tid = api.start(store, ":x", str(tmp_path / "p.fm"))
    finish(store, tid)
    with pytest.raises(TaskError, match="it is done"):
        api.send(store, tid, 1)
    with pytest.raises(TaskError, match="no task"):
        api.cancel(store, "nope")


def test_deploy_and_spawn_by_name(store, tmp_path):
    api.deploy(store, '(str "hi " (first *command-line-args*))', str(tmp_path / "g.fm"),
               "greeter")
    tid = api.start(store, '[(join (spawn "greeter" "you"))'
                    ' (try (spawn "nobody") (catch :spawn-error e :missing))]',
                    str(tmp_path / "main.fm"))
    finish(store, tid)
    assert value(store, tid) == '["hi you" :missing]'


@pytest.mark.parametrize("other", KINDS)
def test_a_task_moves_between_stores_and_finishes(store, tmp_path, other):
    target, drop = make_store(other, tmp_path, "target")
    try:
        tid = api.start(store, "(def m (receive)) (println \"got\" m) [:moved m]",
                        str(tmp_path / "p.fm"))
        worker = Worker(store)
        while store.get(tid).status != Status.WAITING:
            worker.round()
        worker.stop()
        files: list[bytes] = []
        export_task(store, tid, files.append)
        assert store.get(tid).status == Status.MOVED
        rec = import_task(target, files[0])
        assert rec.status == Status.WAITING
        api.send(target, tid, 5)
        finish(target, tid)
        assert value(target, tid) == "[:moved 5]"
        assert "".join(output_chunks(target, tid)) == "got 5\n"
    finally:
        drop()


@pytest.mark.parametrize("other", KINDS)
def test_a_whole_store_is_copied(store, tmp_path, other):
    target, drop = make_store(other, tmp_path, "copy")
    try:
        waiting = api.start(store, "(receive :timeout 600)", str(tmp_path / "w.fm"))
        done = api.start(store, '(println "hello") 7', str(tmp_path / "d.fm"))
        fresh = api.start(store, "(+ 1 2)", str(tmp_path / "f.fm"))
        worker = Worker(store)
        while store.get(waiting).status != Status.WAITING or \
                store.get(done).status != Status.DONE:
            worker.round()
        worker.stop()
        assert copy_store(store, target) >= 3
        assert value(target, done) == "7"
        assert "".join(output_chunks(target, done)) == "hello\n"
        api.send(target, waiting, "late")
        finish(target, waiting, fresh)
        assert value(target, waiting) == '"late"'
        assert value(target, fresh) == "3"
        with target.view() as view:
            assert view.next_timer() is None or view.task(waiting).finished
    finally:
        drop()


def test_messages_are_kept_encoded_until_read(store, tmp_path):
    tid = api.start(store, "(receive (fn [m] (= m :b)))", str(tmp_path / "p.fm"))
    worker = Worker(store)
    while store.get(tid).status != Status.WAITING:
        worker.round()
    store.send(tid, encode_data("a"))
    store.send(tid, encode_data("b"))
    with store.view() as view:
        queued = [decode_data(m.value) for _, m in view.inbox(tid)]
    assert queued == ["a", "b"]
    api.send(store, tid, decode_data(encode_data(_kw("b"))))
    finish(store, tid)
    with store.view() as view:
        assert [decode_data(m.value) for _, m in view.inbox(tid)] == ["a", "b"]


def _kw(name: str):
    from flowmetal.values import kw

    return kw(name)


def test_a_lease_of_a_claimed_task_names_the_store_clock(store, tmp_path):
    tid = api.start(store, "(loop [i 0] (now) (recur (inc i)))", str(tmp_path / "p.fm"))
    worker = Worker(store, lease_seconds=30.0)
    worker.round()
    lease = store.get(tid).lease
    with store.view() as view:
        clock = view.clock()
    assert isinstance(lease, Lease) and 25.0 < lease.until - clock <= 30.0
    worker.stop()
    api.cancel(store, tid)
    finish(store, tid)


def test_the_tasks_command_filters_and_pages(store, tmp_path, capsys):
    import json

    from flowmetal import cli

    done = [api.start(store, "1", str(tmp_path / "a.fm")) for _ in range(2)]
    finish(store, *done)
    waiting = api.start(store, "(receive :timeout 600)", str(tmp_path / "b.fm"))

    def listed(*args: str) -> list[str]:
        assert cli.main(["--store", store.location, "tasks", "--json", *args]) == 0
        return [t["id"] for t in json.loads(capsys.readouterr().out)]

    assert listed("--status", "done") == sorted(done)
    assert listed("--name", "b.fm") == [waiting]
    assert listed("--limit", "1") == [sorted(done)[0]]
    assert listed("--limit", "5", "--after", sorted(done)[0]) == [sorted(done)[1], waiting]
    assert listed("--id", waiting[:18]) == [waiting]
    api.cancel(store, waiting)


def test_a_spawned_file_comes_from_the_program_store(store, tmp_path):
    """``(spawn "child.fm" ...)`` is stored when its parent starts, so a worker with no
    such file (deleted here) runs it; a ``#!`` line is fine; the child sees its ``*file*``
    and ``*command-line-args*``."""
    child = tmp_path / "child.fm"
    child.write_text('#!/usr/bin/env flowmetal\n[*file* *command-line-args*]\n')
    tid = api.start(store, '(join (spawn "child.fm" "a" 2))', str(tmp_path / "parent.fm"))
    child.unlink()
    finish(store, tid)
    assert value(store, tid) == f'["{child}" ["a" "2"]]'


# --- removing tasks, cancel in the language, runs of one tree, idleness --------------------


def test_remove_deletes_finished_tasks_with_their_journals_all_or_none(store, tmp_path):
    from flowmetal.runtime.records import TaskError

    done = api.start(store, '(println "out") (send (self) :m) :ok', str(tmp_path / "p.fm"))
    waiting = api.start(store, "(receive :timeout 60)", str(tmp_path / "w.fm"))
    finish(store, done)
    with pytest.raises(TaskError, match=f"cannot remove task {waiting}: it is waiting"):
        store.remove([done, waiting])
    assert store.get(done).status == Status.DONE  # all or none
    with pytest.raises(TaskError, match="no task nope"):
        store.remove(["nope"])
    (gone,) = store.remove([done])
    assert (gone.id, gone.status) == (done, Status.DONE)
    with store.view() as view:
        assert view.task(done) is None
        assert list(view.log(done)) == [] and list(view.output(done)) == []
        assert view.continuation(done) is None and view.inbox(done) == []
        assert [r.id for r in view.tasks()] == [waiting]
    # The id is free again: nothing of the old task shows through a new record.
    api.cancel(store, waiting)
    finish(store, waiting)
    assert [r.id for r in store.remove([waiting])] == [waiting]


def test_prune_deletes_old_finished_tasks_of_the_statuses_asked(store, tmp_path):
    ids = {}
    for name, source in [("done", ":ok"), ("failed", "(error \"no\")"),
                         ("waits", "(receive :timeout 60)")]:
        ids[name] = api.start(store, source, str(tmp_path / f"{name}.fm"))
    parent = api.start(store, "(def k (spawn (fn [] :kid))) (sleep 0.01) (receive :timeout 60)",
                       str(tmp_path / "parent.fm"))
    finish(store, ids["done"], ids["failed"])
    Worker(store).run(until=lambda: len(store.get(parent).children) == 1 and
                      store.get(store.get(parent).children[0]).finished)
    kid = store.get(parent).children[0]
    assert store.prune(("done",), 3600.0) == []  # none ended an hour ago
    assert store.prune(("done",), 0.0, page=1) == [ids["done"]]  # the kid's parent runs
    assert store.prune(("failed", "cancelled"), 0.0) == [ids["failed"]]
    api.cancel(store, parent)
    finish(store, parent)
    assert sorted(store.prune(("done", "cancelled"), 0.0)) == sorted([parent, kid])
    with store.view() as view:
        assert [r.id for r in view.tasks()] == [ids["waits"]]


def test_cancel_in_the_language_stops_another_task(store, tmp_path):
    source = """
    (def kid (spawn (fn [] (try (receive :timeout 60) (catch :cancelled e :caught)))))
    (def quick (spawn (fn [] :quick)))
    (sleep 0.05)
    [(cancel kid) (join kid) (do (join quick) (cancel quick))
     (try (cancel "nosuchtask") (catch :no-such-task e :none))
     (str (self)) (= (task-id (self)) (str (self)))]
    """
    tid = api.start(store, source, str(tmp_path / "main.fm"))
    finish(store, tid)
    assert value(store, tid) == f'[true :caught false :none "{tid}" true]'
    kid = store.get(tid).children[0]
    with store.view() as view:
        cancels = [e for _, e in view.log(kid) if e.kind == "cancel"]
    assert cancels[0].details == {"by": tid}


def test_a_task_can_cancel_itself(store, tmp_path):
    tid = api.start(store, "(cancel (self)) (println \"not reached\")", str(tmp_path / "p.fm"))
    finish(store, tid)
    rec = store.get(tid)
    assert rec.status == Status.CANCELLED
    with store.view() as view:
        assert list(view.output(tid)) == []


def test_a_watched_round_claims_only_the_watched_tree(store, tmp_path):
    other = api.start(store, ":other", str(tmp_path / "other.fm"))
    main = api.start(store, "(join (spawn (fn [] (println \"kid\") :kid)))",
                     str(tmp_path / "main.fm"))
    shown: list[str] = []
    rec = api.run_foreground(store, main, shown.append)
    assert rec.status == Status.DONE and "".join(shown) == "kid\n"
    assert store.get(other).status == Status.RUNNABLE and store.get(other).steps == 0


def test_waits_without_a_timeout_use_the_default_and_nil_waits_forever(store, tmp_path):
    limits = {"wait": 7200.0}
    default = api.start(store, "(receive)", str(tmp_path / "d.fm"), limits=limits)
    forever = api.start(store, "[(receive :timeout nil) (join (self) :timeout nil)]",
                        str(tmp_path / "f.fm"))
    given = api.start(store, "(receive :timeout 30)", str(tmp_path / "g.fm"), limits=limits)
    nolimit = api.start(store, "(receive)", str(tmp_path / "n.fm"),
                        limits={"wait": float("inf")})
    worker = Worker(store)
    rounds_until(worker, lambda: all(store.get(t).status == Status.WAITING
                                     for t in (default, forever, given, nolimit)))
    worker.stop()
    d, f, g, n = (store.get(t) for t in (default, forever, given, nolimit))
    assert d.waiting.by_default and 7199 < d.waiting.until - d.updated <= 7200
    assert (f.waiting.until, f.waiting.by_default) == (None, False)
    assert not g.waiting.by_default and 29 < g.waiting.until - g.updated <= 30
    assert (n.waiting.until, n.waiting.by_default) == (None, True)
    with store.view() as view:
        assert view.has_work()  # the given :timeout 30 is waited out
    api.cancel(store, given)
    Worker(store).run(until=lambda: store.get(given).finished)
    with store.view() as view:
        assert view.next_timer() is not None  # the default wait's
        assert not view.has_work()  # no sleep, no runnable task: nothing to wait out
    api.send(store, forever, 1)
    with store.view() as view:
        assert view.has_work()


def rounds_until(worker: Worker, done) -> None:
    """Run the worker's rounds until ``done()``."""
    while not done():
        worker.round()


def test_has_work_counts_sleeps_and_given_timeouts_but_not_blocked_tasks(store, tmp_path):
    sleeper = api.start(store, "(sleep 60)", str(tmp_path / "s.fm"))
    worker = Worker(store)
    rounds_until(worker, lambda: store.get(sleeper).status == Status.WAITING)
    with store.view() as view:
        assert view.has_work()
    api.cancel(store, sleeper)
    rounds_until(worker, lambda: store.get(sleeper).finished)
    blocked = api.start(store, "(now) :ran", str(tmp_path / "p.fm"))
    with store.backend.write() as t:
        unit = Unit(t)
        rec = unit.get(blocked)
        rec.programs = [*rec.programs, "0" * 64]  # no such code
        unit.put(rec)
        unit.flush()
    with store.view() as view:
        assert view.has_work()  # runnable, not known to be blocked yet
    worker.round()
    worker.round()
    assert store.get(blocked).blocked
    with store.view() as view:
        assert not view.has_work()
    worker.stop()


def test_concurrent_updates_of_a_setting_lose_nothing(store):
    """Each update_setting is one read-modify-write: none is lost to another writer."""
    import threading

    def bump() -> None:
        for _ in range(15):
            store.update_setting("counter", lambda v: str(int(v or 0) + 1))

    threads = [threading.Thread(target=bump) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.setting("counter") == "60"
    assert store.update_setting("counter", lambda v: None) is None
    assert store.setting("counter") is None


def test_lmdb_journal_items_are_cbor_byte_strings_of_every_length():
    import cbor2

    from flowmetal.store.lmdb import _bytes_item

    for n in (0, 1, 23, 24, 255, 256, 65535, 65536, 70000):
        data = bytes(n)
        assert _bytes_item(data) == cbor2.dumps(data)
