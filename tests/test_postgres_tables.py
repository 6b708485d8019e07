"""The PostgreSQL store's tables (``store/postgres.py``) against a real server: every
``tables.Tables`` method's contract, locking between concurrent transactions, the schema's
versions, faults, wake-ups and worker liveness.  Skipped when PostgreSQL is unreachable
(see ``pg_helpers``)."""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time

import pytest

from flowmetal.store.base import StoreError, StoreRetry, StoreUnavailable
from flowmetal.store.tables import TaskColumns, TaskFilter

from .pg_helpers import base_url, drop_schema, new_schema, pg_store, pg_url, require_postgres
from .pg_helpers import schema_url as url_for

__all__ = ["pg_store", "pg_url"]  # fixtures

postgres = pytest.importorskip("flowmetal.store.postgres")
PostgresStore = postgres.PostgresStore
StoreConflict = postgres.StoreConflict


def cols(task_id: str, status: str = "runnable", program: str = "p0", name: str = "",
         parent: str | None = None, root: str | None = None, created: float = 1000.0,
         updated: float = 1000.0, lease_worker: str | None = None,
         lease_until: float | None = None) -> TaskColumns:
    return TaskColumns(status, program, name, parent, root or task_id, created, updated,
                       lease_worker, lease_until, None, None)


def add(t, task_id: str, runnable: bool = False, **kw) -> None:
    t.put_task(task_id, f"rec-{task_id}".encode(), cols(task_id, **kw))
    if runnable:
        t.runnable_add(task_id)


def in_thread(fn, *args):
    """Run ``fn`` in a thread; a function that waits for it and returns (or raises) what
    it did."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller
            out["error"] = exc
    thread = threading.Thread(target=run, daemon=True)
    thread.start()

    def join(timeout: float = 30.0):
        thread.join(timeout)
        assert not thread.is_alive(), "the thread did not finish"
        if "error" in out:
            raise out["error"]
        return out.get("value")
    return join


# ---------------------------------------------------------------------------------------
# URLs and the schema


def test_parse_url_schema_location_and_options():
    conninfo, schema, location = postgres.parse_url(
        "postgresql://bob:secret@db.example:6543/prod?schema=fm_a&sslmode=disable")
    assert schema == "fm_a"
    assert "secret" not in location
    assert location == "postgresql://bob@db.example:6543/prod?schema=fm_a"
    assert "search_path=fm_a" in conninfo and "schema=" not in conninfo
    assert "sslmode=disable" in conninfo and "password=secret" in conninfo
    _, schema, _ = postgres.parse_url(
        "postgresql://u@h/d?options=-csearch_path%3Dother_one")
    assert schema == "other_one"
    _, schema, _ = postgres.parse_url("host=h dbname=d user=u")
    assert schema == postgres.DEFAULT_SCHEMA
    with pytest.raises(StoreError, match="schema name"):
        postgres.parse_url("postgresql://u@h/d?schema=Bad-Name")
    with pytest.raises(StoreError, match="two schemas"):
        postgres.parse_url("postgresql://u@h/d?schema=a&options=-csearch_path%3Db")


def test_init_is_idempotent_and_versioned(pg_url):
    assert postgres.init_schema(pg_url) == postgres.SCHEMA_VERSION
    assert postgres.init_schema(pg_url) == postgres.SCHEMA_VERSION
    store = PostgresStore(pg_url, create=False)
    try:
        assert store.init(create=False) == postgres.SCHEMA_VERSION
        with store.read() as t:
            rows = t._query("SELECT value FROM meta WHERE key = 'version'")
        assert rows == [(str(postgres.SCHEMA_VERSION),)]
    finally:
        store.close()


def test_concurrent_init_applies_each_migration_once(pg_url):
    barrier = threading.Barrier(4)

    def init():
        barrier.wait()
        return postgres.init_schema(pg_url)
    joins = [in_thread(init) for _ in range(4)]
    assert [j() for j in joins] == [postgres.SCHEMA_VERSION] * 4
    store = PostgresStore(pg_url, create=False)
    store.close()


def test_uninitialized_schema_without_create_says_to_init(pg_url):
    with pytest.raises(StoreError, match="flowmetal store init"):
        PostgresStore(pg_url, create=False)


def test_newer_schema_is_refused(pg_store, pg_url):
    newer = postgres.SCHEMA_VERSION + 1
    with pg_store.write() as t:
        t._send("UPDATE meta SET value = %s WHERE key = 'version'", (str(newer),))
    with pytest.raises(StoreError, match=f"schema version {newer}.*upgrade Flowmetal"):
        PostgresStore(pg_url)
    with pytest.raises(StoreError, match="upgrade Flowmetal"):
        postgres.init_schema(pg_url)


def test_older_schema_without_create_says_to_migrate(pg_store, pg_url):
    with pg_store.write() as t:
        t._send("UPDATE meta SET value = '0' WHERE key = 'version'")
    with pytest.raises(StoreError, match="migrate"):
        PostgresStore(pg_url, create=False)


def test_schemas_are_separate(pg_store):
    require_postgres()
    other = PostgresStore(url_for(new_schema()))
    try:
        with pg_store.write() as t:
            add(t, "a")
        with other.read() as t:
            assert t.get_task("a") is None
    finally:
        other.drop()


# ---------------------------------------------------------------------------------------
# Task records and continuations


def test_task_round_trip_and_replace(pg_store):
    with pg_store.write() as t:
        add(t, "t1")
        add(t, "t2", status="waiting")
        assert t.get_task("t1") == b"rec-t1"  # its own write
    with pg_store.read() as t:
        assert t.get_task("t1") == b"rec-t1"
        assert t.get_task("nope") is None
        assert t.get_tasks(["t2", "nope", "t1"]) == {"t1": b"rec-t1", "t2": b"rec-t2"}
    with pg_store.write() as t:
        assert t.get_task("t1") == b"rec-t1"
        t.put_task("t1", b"new", cols("t1", status="done"))
        assert t.get_tasks(["t1"]) == {"t1": b"new"}
    with pg_store.read() as t:
        assert t.get_task("t1") == b"new"
        assert t.count_tasks(TaskFilter()) == {"done": 1, "waiting": 1}


def test_records_are_bytes_of_any_content(pg_store):
    data = bytes(range(256)) * 40
    with pg_store.write() as t:
        t.put_task("big", data, cols("big"))
        t.put_cont("big", data + b"\0")
    with pg_store.read() as t:
        assert t.get_task("big") == data
        assert t.get_cont("big") == data + b"\0"


def test_a_failed_transaction_writes_nothing(pg_store):
    with pytest.raises(RuntimeError), pg_store.write() as t:
        add(t, "t1", runnable=True)
        t.put_cont("t1", b"c")
        t.log_append("t1", b"e")
        t.flush()  # sent, but not committed
        raise RuntimeError("boom")
    with pg_store.read() as t:
        assert t.get_task("t1") is None
        assert t.get_cont("t1") is None
        assert list(t.log_items("t1")) == []
        assert not t.any_runnable()


def test_read_transaction_is_a_snapshot_and_cannot_write(pg_store):
    with pg_store.write() as t:
        add(t, "t1")
    with pg_store.read() as r:
        assert r.scan_tasks(TaskFilter()) == [b"rec-t1"]
        with pg_store.write() as t:
            add(t, "t2")
        assert r.scan_tasks(TaskFilter()) == [b"rec-t1"]  # one snapshot
        assert r.count_tasks(TaskFilter()) == {"runnable": 1}
        with pytest.raises(StoreError, match="read"):
            r.put_task("t3", b"x", cols("t3"))
    with pg_store.read() as r:
        assert len(r.scan_tasks(TaskFilter())) == 2


def test_continuations(pg_store):
    with pg_store.write() as t:
        assert t.get_cont("t1") is None
        t.put_cont("t1", b"one")
        assert t.get_cont("t1") == b"one"
        t.put_cont("t1", b"two")
    with pg_store.read() as t:
        assert t.get_cont("t1") == b"two"


def test_delete_task_data_keeps_the_record(pg_store):
    with pg_store.write() as t:
        add(t, "t1", runnable=True)
        add(t, "t2", runnable=True)
        for task in ("t1", "t2"):
            t.put_cont(task, b"c")
            t.inbox_put(task, 1, b"m")
            t.log_append(task, b"e1")
            t.output_append(task, "o1")
    with pg_store.write() as t:
        t.get_task("t1")
        t.log_append("t1", b"e2")  # pending when deleted
        t.delete_task_data("t1")
        assert t.get_cont("t1") is None
        assert list(t.log_items("t1")) == []
        assert list(t.inbox_items("t1")) == []
    with pg_store.read() as t:
        assert t.get_task("t1") == b"rec-t1"
        assert t.get_cont("t1") is None
        assert list(t.inbox_items("t1")) == []
        assert list(t.log_items("t1")) == []
        assert list(t.output_items("t1")) == []
        assert t.claimable("w", 0.0, 10) == ["t2"]
        assert list(t.log_items("t2")) == [(1, b"e1")]  # the other task untouched
    with pg_store.write() as t:
        t.get_task("t1")
        assert t.log_append("t1", b"again") == 1  # counts from 1 again
        assert t.output_append("t1", "again") == 1


# ---------------------------------------------------------------------------------------
# Listings


def _population(pg_store) -> list[dict]:
    tasks = []
    with pg_store.write() as t:
        for i in range(30):
            task = {"id": f"{i:02d}x{i % 4}", "status": ["runnable", "waiting", "done"][i % 3],
                    "program": ["abc123", "abd999", "zzz"][i % 3 if i < 27 else 0],
                    "name": "nightly" if i % 5 == 0 else "", "parent": None if i < 10 else
                    f"{i % 10:02d}x{i % 10 % 4}", "created": 100.0 + i}
            task["root"] = task["parent"] or task["id"]
            tid = task["id"]
            t.put_task(tid, tid.encode(), cols(tid, task["status"], task["program"],
                                                task["name"], task["parent"], task["root"],
                                                task["created"], task["created"]))
            tasks.append(task)
    return tasks


@pytest.mark.parametrize("where,pick", [
    (TaskFilter(), lambda k: True),
    (TaskFilter(status=("waiting",)), lambda k: k["status"] == "waiting"),
    (TaskFilter(status=("waiting", "done")), lambda k: k["status"] != "runnable"),
    (TaskFilter(program="abc123"), lambda k: k["program"] == "abc123"),
    (TaskFilter(program="ab"), lambda k: k["program"].startswith("ab")),
    (TaskFilter(program="a_c"), lambda k: False),  # LIKE's wildcards are literal
    (TaskFilter(name="nightly"), lambda k: k["name"] == "nightly"),
    (TaskFilter(parent="03x3"), lambda k: k["parent"] == "03x3"),
    (TaskFilter(root="03x3"), lambda k: k["root"] == "03x3"),
    (TaskFilter(id_prefix="1"), lambda k: k["id"].startswith("1")),
    (TaskFilter(id_prefix="%"), lambda k: False),
    (TaskFilter(created_after=110.0, created_before=120.0),
     lambda k: 110 < k["created"] < 120),
    (TaskFilter(status=("runnable",), program="abc", created_after=103.0),
     lambda k: k["status"] == "runnable" and k["program"].startswith("abc")
     and k["created"] > 103),
])
def test_scan_and_count_filters(pg_store, where, pick):
    tasks = _population(pg_store)
    want = sorted(k["id"] for k in tasks if pick(k))
    with pg_store.read() as t:
        assert [r.decode() for r in t.scan_tasks(where, limit=1000)] == want
        counts: dict[str, int] = {}
        for k in tasks:
            if pick(k):
                counts[k["status"]] = counts.get(k["status"], 0) + 1
        assert t.count_tasks(where) == counts


def test_scan_pages_by_id_both_ways(pg_store):
    tasks = _population(pg_store)
    ids = sorted(k["id"] for k in tasks)
    with pg_store.read() as t:
        got, after = [], ""
        while True:
            page = [r.decode() for r in t.scan_tasks(TaskFilter(), after, limit=7)]
            if not page:
                break
            assert len(page) <= 7
            got += page
            after = page[-1]
        assert got == ids
        got, before = [], ""
        while True:
            page = [r.decode() for r in t.scan_tasks(TaskFilter(), before, 7, descending=True)]
            if not page:
                break
            got += page
            before = page[-1]
        assert got == ids[::-1]
        assert t.scan_tasks(TaskFilter(status=("done",)), after=ids[10], limit=2) == \
            [i.encode() for i in ids if i > ids[10] and
             next(k for k in tasks if k["id"] == i)["status"] == "done"][:2]


def test_listing_in_a_write_transaction_sees_its_writes(pg_store):
    with pg_store.write() as t:
        add(t, "a", program="pp")
        add(t, "b", program="pp", status="waiting")
        assert t.scan_tasks(TaskFilter(program="pp")) == [b"rec-a", b"rec-b"]
        t.put_task("b", b"rec-b", cols("b", program="qq", status="done"))
        assert t.scan_tasks(TaskFilter(program="pp")) == [b"rec-a"]
        assert t.count_tasks(TaskFilter(program="qq")) == {"done": 1}


# ---------------------------------------------------------------------------------------
# Programs, names, workers


def test_programs_are_stored_once(pg_store):
    with pg_store.write() as t:
        assert t.get_program("h1") is None
        t.put_program("h1", b"first")
        t.put_program("h1", b"second")
        assert t.get_program("h1") == b"first"
    with pg_store.write() as t:
        t.put_program("h1", b"third")
    with pg_store.read() as t:
        assert t.get_program("h1") == b"first"


def test_names_are_replaced(pg_store):
    with pg_store.write() as t:
        assert t.get_name("deploy") is None
        t.put_name("deploy", "h1")
        assert t.get_name("deploy") == "h1"
    with pg_store.write() as t:
        t.put_name("deploy", "h2")
    with pg_store.read() as t:
        assert t.get_name("deploy") == "h2"


def test_workers(pg_store):
    with pg_store.write() as t:
        t.put_worker("w1", b"one")
        t.put_worker("w2", b"two")
        assert t.get_workers() == {"w1": b"one", "w2": b"two"}
    with pg_store.write() as t:
        t.put_worker("w1", b"one again")
        t.delete_worker("w2")
        assert t.get_workers() == {"w1": b"one again"}
    with pg_store.read() as t:
        assert t.get_workers() == {"w1": b"one again"}
        seen = t._query("SELECT seen FROM workers")[0][0]
        assert abs(seen - t.clock()) < 60


# ---------------------------------------------------------------------------------------
# Inboxes and journals


def test_inbox(pg_store):
    with pg_store.write() as t:
        add(t, "t1")
        for seq in (1, 2, 3):
            t.inbox_put("t1", seq, b"m%d" % seq)
        t.inbox_delete("t1", 2)
        assert list(t.inbox_items("t1")) == [(1, b"m1"), (3, b"m3")]
    with pg_store.write() as t:
        t.get_task("t1")
        t.inbox_put("t1", 4, b"m4")
        t.inbox_delete("t1", 1)
        assert list(t.inbox_items("t1", after=0)) == [(3, b"m3"), (4, b"m4")]
        t.inbox_delete("t1", 99)  # nothing there: nothing happens
    with pg_store.read() as t:
        assert list(t.inbox_items("t1")) == [(3, b"m3"), (4, b"m4")]
        assert list(t.inbox_items("t1", after=3)) == [(4, b"m4")]
        assert list(t.inbox_items("other")) == []


def test_journals_number_from_one_per_task(pg_store):
    with pg_store.write() as t:
        add(t, "a")
        add(t, "b")
        assert [t.log_append("a", b"a%d" % i) for i in range(3)] == [1, 2, 3]
        assert t.log_append("b", b"b0") == 1
        assert t.output_append("a", "x") == 1
        assert list(t.log_items("a", after=1)) == [(2, b"a1"), (3, b"a2")]
    for _ in range(2):  # later transactions go on counting
        with pg_store.write() as t:
            t.get_tasks(["a", "b"])
            t.log_append("a", b"more")
            t.output_append("a", "y")
    with pg_store.write() as t:  # an append without reading the record first
        assert t.log_append("a", b"blind") == 6
        assert t.output_append("b", "first") == 1
    with pg_store.read() as t:
        assert [s for s, _ in t.log_items("a")] == [1, 2, 3, 4, 5, 6]
        assert list(t.log_items("a", after=5)) == [(6, b"blind")]
        assert list(t.output_items("a")) == [(1, "x"), (2, "y"), (3, "y")]
        assert list(t.output_items("a", after=2)) == [(3, "y")]
        assert list(t.output_items("b")) == [(1, "first")]


def test_journals_of_new_tasks_and_of_tasks_without_records(pg_store):
    with pg_store.write() as t:
        assert t.get_task("new") is None
        add(t, "new")
        assert t.log_append("new", b"created") == 1
        assert t.log_append("ghost", b"no record") == 1
        assert t.log_append("ghost", b"still none") == 2
    with pg_store.write() as t:
        assert t.log_append("ghost", b"later") == 3
        assert t.log_append("new", b"next") == 2
    with pg_store.read() as t:
        assert [s for s, _ in t.log_items("ghost")] == [1, 2, 3]


def test_output_text_round_trips(pg_store):
    texts = ["plain", "ünïcödé ✓", "", "tab\tnew\nline", "x" * 10_000]
    with pg_store.write() as t:
        add(t, "t1")
        for text in texts:
            t.output_append("t1", text)
    with pg_store.read() as t:
        assert [x for _, x in t.output_items("t1")] == texts


# ---------------------------------------------------------------------------------------
# Timers


def test_timers_order_limit_and_delete(pg_store):
    with pg_store.write() as t:
        assert t.next_timer() is None
        t.timer_add(30.0, "b", 1, b"b1")
        t.timer_add(10.0, "c", 2, b"c2")
        t.timer_add(10.0, "a", 5, b"a5")
        t.timer_add(10.0, "a", 3, b"a3")
        t.timer_add(20.5, "a", 3, b"a3-later")  # another timer of the same request
        t.timer_add(99.0, "z", 0, b"deadline")
        assert t.next_timer() == 10.0
    with pg_store.write() as t:
        assert t.timers_due(25.0, 100) == [(10.0, "a", 3, b"a3"), (10.0, "a", 5, b"a5"),
                                           (10.0, "c", 2, b"c2"), (20.5, "a", 3, b"a3-later")]
        assert t.timers_due(25.0, 2) == [(10.0, "a", 3, b"a3"), (10.0, "a", 5, b"a5")]
        assert t.timers_due(5.0, 10) == []
        t.timer_delete(10.0, "a", 3)
        t.timer_delete(10.0, "a", 4)  # not armed
        t.timer_delete(11.0, "c", 2)  # not this one's due
        assert [x[:3] for x in t.timers_due(25.0, 10)] == [(10.0, "a", 5), (10.0, "c", 2),
                                                           (20.5, "a", 3)]
    with pg_store.read() as t:
        assert t.next_timer() == 10.0
        assert len(t.timers_due(1e9, 100)) == 5
    with pg_store.write() as t:
        for due, task, request, _ in t.timers_due(1e9, 100):
            t.timer_delete(due, task, request)
        assert t.next_timer() is None


def test_timers_due_skips_timers_another_transaction_holds(pg_store):
    with pg_store.write() as t:
        for i in range(6):
            t.timer_add(10.0 + i, f"t{i}", 1, b"x")
    held = threading.Event()
    done = threading.Event()

    def first():
        with pg_store.write() as t:
            got = [x[1] for x in t.timers_due(100.0, 2)]
            held.set()
            done.wait(10)
            for due, task, request, _ in t.timers_due(100.0, 2):
                t.timer_delete(due, task, request)
        return got
    join = in_thread(first)
    assert held.wait(10)
    try:
        with pg_store.write() as t:
            assert [x[1] for x in t.timers_due(100.0, 10)] == ["t2", "t3", "t4", "t5"]
        with pg_store.read() as t:  # a reader takes no locks and skips nothing
            assert len(t.timers_due(100.0, 10)) == 6
    finally:
        done.set()
    assert join() == ["t0", "t1"]
    with pg_store.read() as t:
        assert [x[1] for x in t.timers_due(100.0, 10)] == ["t2", "t3", "t4", "t5"]


# ---------------------------------------------------------------------------------------
# Claiming


def test_claimable_honours_leases_and_runnable_marks(pg_store):
    with pg_store.write() as t:
        add(t, "free", runnable=True, updated=5.0)
        add(t, "expired", runnable=True, updated=4.0, lease_worker="other", lease_until=50.0)
        add(t, "mine", runnable=True, updated=3.0, lease_worker="me", lease_until=500.0)
        add(t, "theirs", runnable=True, updated=2.0, lease_worker="other", lease_until=500.0)
        add(t, "idle", updated=1.0)
    with pg_store.write() as t:
        assert t.claimable("me", 100.0, 10) == ["mine", "expired", "free"]
        assert t.claimable("me", 100.0, 2) == ["mine", "expired"]
        assert t.claimable("other", 100.0, 10) == ["theirs", "expired", "free"]
        assert t.claimable("nobody", 600.0, 10) == ["theirs", "mine", "expired", "free"]
        assert t.any_runnable()
    with pg_store.read() as t:
        assert t.claimable("me", 100.0, 10) == ["mine", "expired", "free"]


def test_leased_lists_tasks_with_a_lease(pg_store):
    with pg_store.write() as t:
        add(t, "b", runnable=True, lease_worker="w1", lease_until=10.0)
        add(t, "a", runnable=True, lease_worker="w2", lease_until=1e9)
        add(t, "c", runnable=True)
        add(t, "d", status="done")
        assert t.leased() == ["a", "b"]
        t.put_task("c", b"c", cols("c", lease_worker="w1", lease_until=5.0))
        t.put_task("b", b"b", cols("b"))
        assert t.leased() == ["a", "c"]
    with pg_store.read() as t:
        assert t.leased() == ["a", "c"]


def test_claimable_sees_the_transactions_own_changes(pg_store):
    with pg_store.write() as t:
        for i, name in enumerate(["a", "b", "c"]):
            add(t, name, runnable=True, updated=10.0 + i)
        add(t, "d", updated=1.0)
    with pg_store.write() as t:
        t.get_tasks(["a", "b", "c", "d"])
        t.runnable_remove("a")
        t.runnable_add("d")
        t.put_task("b", b"b2", cols("b", updated=50.0))   # stepped: goes to the back
        t.put_task("c", b"c2", cols("c", updated=5.0, lease_worker="x", lease_until=1e9))
        add(t, "e", runnable=True, updated=0.5)           # new in this transaction
        assert t.claimable("me", 100.0, 10) == ["e", "d", "b"]
        assert t.claimable("x", 100.0, 10) == ["e", "d", "c", "b"]
        t.runnable_remove("e")
        t.runnable_remove("d")
        t.runnable_remove("b")
        t.runnable_remove("c")
        assert not t.any_runnable()
        t.runnable_add("a")
        assert t.any_runnable()
    with pg_store.read() as t:
        assert t.claimable("me", 100.0, 10) == ["a"]


def test_claimable_with_a_blind_runnable_mark_asks_the_database(pg_store):
    with pg_store.write() as t:
        add(t, "a", updated=2.0)
        add(t, "b", runnable=True, updated=1.0)
    with pg_store.write() as t:
        t.runnable_add("a")          # not read in this transaction
        t.runnable_add("missing")    # no such task: nothing to claim
        assert t.claimable("me", 100.0, 10) == ["b", "a"]


def test_a_new_task_marked_runnable_before_its_record_is_written(pg_store):
    """As the engine spawns: the mark first, a claim in between, the record last."""
    with pg_store.write() as t:
        add(t, "old", runnable=True, updated=1.0)
    with pg_store.write() as t:
        assert t.get_task("kid") is None
        t.runnable_add("kid")
        t.runnable_add("blind")  # neither read nor written: may not exist
        assert t.claimable("me", 100.0, 10) == ["old"]
        assert t.any_runnable()
        t.put_task("kid", b"rec-kid", cols("kid", updated=2.0))
        assert t.claimable("me", 100.0, 10) == ["old", "kid"]
    with pg_store.read() as t:
        assert t.claimable("me", 100.0, 10) == ["old", "kid"]
        assert t.get_task("blind") is None


def test_claimable_rotates_oldest_update_first(pg_store):
    with pg_store.write() as t:
        for i in range(6):
            add(t, f"t{i}", runnable=True, updated=float(i))
    seen: list[str] = []
    for round_ in range(3):
        with pg_store.write() as t:
            now = 100.0 + round_
            got = t.claimable("me", now, 2)
            seen += got
            for task in got:  # a step: the task goes to the back of the line
                t.put_task(task, b"r", cols(task, updated=now))
    assert sorted(seen) == [f"t{i}" for i in range(6)]


def test_claimable_skips_tasks_another_transaction_holds(pg_store):
    with pg_store.write() as t:
        for i in range(6):
            add(t, f"t{i}", runnable=True, updated=float(i))
    held = threading.Event()
    release = threading.Event()

    def first():
        with pg_store.write() as t:
            got = t.claimable("w1", 100.0, 2)
            t.get_task("t5")  # a record read is locked too
            held.set()
            release.wait(10)
            for task in got:
                t.put_task(task, b"r", cols(task, updated=100.0, lease_worker="w1",
                                            lease_until=200.0))
        return got
    join = in_thread(first)
    assert held.wait(10)
    try:
        with pg_store.write() as t:
            assert t.claimable("w2", 100.0, 10) == ["t2", "t3", "t4"]
    finally:
        release.set()
    assert join() == ["t0", "t1"]
    with pg_store.write() as t:  # now leased to w1
        assert t.claimable("w2", 100.0, 10) == ["t2", "t3", "t4", "t5"]
        assert t.claimable("w1", 100.0, 10) == ["t2", "t3", "t4", "t5", "t0", "t1"]


def test_claims_and_timers_asked_ahead_agree_with_asking_afresh(pg_store, monkeypatch):
    """A round's claim and timer queries are sent ahead with its first read; what they
    answer, merged with the round's own changes, must be what asking afresh answers."""
    rng = random.Random(11)
    ids = [f"t{i:02d}" for i in range(12)]
    fetched_ahead = []
    fetch = postgres.PgTables._fetch

    def counting(self, cur):
        fetched_ahead.append(cur)
        return fetch(self, cur)
    monkeypatch.setattr(postgres.PgTables, "_fetch", counting)

    def shuffle(t, task, now):
        lease = rng.choice([None, "w", "other"])
        until = None if lease is None else now + rng.choice([-5.0, 30.0])
        t.put_task(task, b"r", cols(task, updated=now + rng.uniform(-50, 5),
                                    lease_worker=lease, lease_until=until))
        (t.runnable_add if rng.random() < 0.7 else t.runnable_remove)(task)

    with pg_store.write() as t:
        now = t.clock()
        for task in ids:
            shuffle(t, task, now)
    for _ in range(30):
        with pg_store.write() as other:
            now = other.clock()
            for task in rng.sample(ids, 2):
                other.get_task(task)
                shuffle(other, task, now)
            other.timer_add(now + rng.uniform(-3, 3), rng.choice(ids), rng.randrange(3), b"o")
        with pg_store.write() as t:
            now = t.clock()
            steps = rng.sample(ids, 4)
            t.get_tasks(steps)
            for task in steps:
                shuffle(t, task, now)
                t.timer_add(now + rng.choice([-1.0, 0.0, 10.0]), task, 7, b"mine")
            if rng.random() < 0.5:  # a due timer disarmed before the round looks
                with pg_store.read() as r:
                    due_now = r.timers_due(now, 1)
                for due, task, request, _ in due_now:
                    t.timer_delete(due, task, request)
            limit = rng.choice([1, 2, 5, 100])
            assert t.timers_due(now, limit) == t.timers_due(now, limit)
            worker = rng.choice(["w", "w", "w", "v"])
            limit = rng.choice([1, 3, 6, 50])
            assert t.claimable(worker, now, limit) == t.claimable(worker, now, limit)
            for due, task, request, _ in t.timers_due(now, 100):
                t.timer_delete(due, task, request)
    assert len(fetched_ahead) > 20  # the rounds did use what was asked ahead


def test_a_claim_asked_ahead_that_runs_short_is_asked_again(pg_store):
    with pg_store.write() as t:
        for i in range(6):
            add(t, f"t{i}", runnable=True, updated=float(i))
    with pg_store.write() as t:
        assert t.claimable("w", t.clock(), 2) == ["t0", "t1"]  # the next asks 2 ahead
    with pg_store.write() as t:
        t.get_tasks(["t0", "t1"])
        t.runnable_remove("t0")  # the two asked ahead are gone: more lie beyond
        t.runnable_remove("t1")
        assert t.claimable("w", t.clock(), 2) == ["t2", "t3"]
    with pg_store.write() as t:
        t.timer_add(1.0, "a", 1, b"a")
        t.timer_add(2.0, "b", 1, b"b")
        t.timer_add(3.0, "c", 1, b"c")
        assert [x[1] for x in t.timers_due(t.clock(), 1)] == ["a"]
    with pg_store.write() as t:
        t.timer_delete(1.0, "a", 1)
        assert [x[1] for x in t.timers_due(t.clock(), 1)] == ["b"]


def test_timers_asked_ahead_are_fewer_than_asked_and_the_rest_asked_again(pg_store):
    """Ahead of a round the store asks for twice as many due timers as the last round
    found (at least 64), not the round's whole limit; when more are due, it asks again."""
    with pg_store.write() as t:
        assert t.timers_due(t.clock(), 10_000) == []  # the next asks 64 ahead
        for i in range(150):
            t.timer_add(1.0 + i, f"t{i:03d}", 1, b"x")
    assert pg_store._hint_timers == postgres._TIMERS_AHEAD
    with pg_store.write() as t:
        due = t.timers_due(t.clock(), 10_000)
        assert [x[1] for x in due] == [f"t{i:03d}" for i in range(150)]
    assert pg_store._hint_timers == 300
    with pg_store.write() as t:
        assert [x[1] for x in t.timers_due(t.clock(), 100)] == [f"t{i:03d}"
                                                               for i in range(100)]
    assert pg_store._hint_timers == 100  # (never more than the round's limit)


def test_a_record_read_in_a_write_transaction_is_locked_until_it_ends(pg_store):
    with pg_store.write() as t:
        add(t, "t1")
    held = threading.Event()

    def first():
        with pg_store.write() as t:
            t.get_task("t1")
            held.set()
            time.sleep(0.5)
            t.put_task("t1", b"first", cols("t1"))

    join = in_thread(first)
    assert held.wait(10)
    start = time.monotonic()
    with pg_store.write() as t:
        assert t.get_tasks(["t1"]) == {"t1": b"first"}  # waited for the commit
        t.put_task("t1", b"second", cols("t1"))
    assert time.monotonic() - start > 0.3
    join()
    with pg_store.read() as t:
        assert t.get_task("t1") == b"second"


# ---------------------------------------------------------------------------------------
# A round's next transaction, begun ahead; rows kept from one transaction to the next


def claim_round(store, worker: str = "w") -> list[str]:
    """A worker's round in miniature: claim and lease, which begins the next one ahead."""
    with store.write() as t:
        got = t.claimable(worker, t.clock(), 4)
        for task_id in got:
            t.get_task(task_id)
            t.put_task(task_id, b"leased", cols(task_id, lease_worker=worker,
                                                lease_until=t.clock() + 30))
    return got


def test_a_round_that_claims_begins_the_next_transaction_ahead(pg_store):
    with pg_store.write() as t:
        add(t, "t1", runnable=True)
    assert claim_round(pg_store) == ["t1"]
    assert pg_store._ahead is not None
    with pg_store.write() as t:
        assert t.optimistic
        begun = t.clock()
        assert t.get_task("t1") == b"leased"  # kept: not read again
        assert t.claimable("w", t.clock(), 4) == ["t1"]  # asked ahead
        t.put_task("t1", b"stepped", cols("t1", lease_worker="w"))
    # its clock is that of its BEGIN, sent with the last commit
    assert begun <= time.time() + 1
    with pg_store.read() as t:
        assert t.get_task("t1") == b"stepped"
        assert t._query("SELECT version FROM tasks WHERE id = 't1'") == [(2,)]
    assert pg_store._ahead is not None  # it claimed again
    with pg_store.write() as t:  # a transaction that claims nothing begins none
        assert t.optimistic
    assert pg_store._ahead is None
    with pg_store.write() as t:
        assert not t.optimistic


def test_a_kept_row_changed_meanwhile_fails_the_transaction_and_writes_nothing(
        pg_store, pg_url):
    with pg_store.write() as t:
        add(t, "t1", runnable=True)
        add(t, "t2")
    claim_round(pg_store)
    other = PostgresStore(pg_url)  # as another process
    try:
        with other.write() as t:
            t.get_task("t1")
            t.put_task("t1", b"other", cols("t1"))
    finally:
        other.close()
    with pytest.raises(StoreConflict, match="changed"):
        with pg_store.write() as t:
            assert t.optimistic
            assert t.get_task("t1") == b"leased"  # the kept row, not yet checked
            t.put_task("t1", b"stale", cols("t1"))
            t.put_task("t2", b"stale", cols("t2"))
            t.log_append("t1", b"stale")
    with pg_store.read() as t:
        assert t.get_task("t1") == b"other"
        assert t.get_task("t2") == b"rec-t2"
        assert list(t.log_items("t1")) == []
    with pg_store.write() as t:  # run again: the ordinary way
        assert not t.optimistic
        assert t.get_task("t1") == b"other"


def test_a_kept_row_read_again_changed_fails_at_once(pg_store, pg_url):
    with pg_store.write() as t:
        add(t, "t1", runnable=True)
    claim_round(pg_store)
    with pg_store.write() as t:
        t.get_task("t1")
        t.put_task("t1", b"mine", cols("t1", lease_worker="w", lease_until=1e12))
    assert pg_store._ahead is None
    claim_round(pg_store)
    other = PostgresStore(pg_url)
    try:
        with other.write() as t:
            t.get_task("t1")
            t.runnable_remove("t1")
    finally:
        other.close()
    with pytest.raises(StoreConflict):
        with pg_store.write() as t:
            assert t.get_task("t1") == b"leased"
            t.any_runnable()
            t._take_rows(t._query(f"SELECT {postgres._ROW} FROM tasks WHERE id = 't1' "
                                  "FOR UPDATE"))


def test_a_transaction_begun_ahead_holds_no_locks_and_lapses(pg_store, pg_url, monkeypatch):
    with pg_store.write() as t:
        add(t, "t1", runnable=True)
        t.timer_add(1.0, "t1", 1, b"due")
    claim_round(pg_store)
    assert pg_store._ahead is not None
    other = PostgresStore(pg_url)
    try:
        with other.write() as t:  # nothing waits for the idle transaction
            t._query("SELECT set_config('lock_timeout', '1s', true)")
            assert t.get_task("t1") == b"leased"
            assert [x[1] for x in t.timers_due(t.clock(), 10)] == ["t1"]
    finally:
        other.close()
    monkeypatch.setattr(postgres, "AHEAD_SECONDS", 0.0)
    time.sleep(0.01)
    with pg_store.write() as t:  # too old: rolled back, and a fresh one begun
        assert not t.optimistic
        assert [x[1] for x in t.timers_due(t.clock(), 10)] == ["t1"]


def test_a_transaction_begun_ahead_serves_its_own_thread_only(pg_store):
    with pg_store.write() as t:
        add(t, "t1", runnable=True)
    claim_round(pg_store)

    def elsewhere():
        with pg_store.write() as t:
            return t.optimistic
    assert in_thread(elsewhere)() is False
    with pg_store.write() as t:
        assert t.optimistic


def test_due_timers_found_ahead_are_asked_again_with_locks(pg_store):
    with pg_store.write() as t:
        add(t, "t1", runnable=True)
    with pg_store.write() as t:
        t.timers_due(t.clock(), 10)  # so that the round asks them ahead
    claim_round(pg_store)
    with pg_store.write() as t:
        t.timer_add(1.0, "t2", 1, b"due")
    claim_round(pg_store)
    held = threading.Event()
    release = threading.Event()

    def hold():
        with pg_store.write() as t:
            assert not t.optimistic
            assert [x[1] for x in t.timers_due(t.clock(), 10)] == ["t2"]
            held.set()
            release.wait(10)
    join = in_thread(hold)
    assert held.wait(10)
    with pg_store.write() as t:
        assert t.optimistic
        assert t.timers_due(t.clock(), 10) == []  # the one found ahead is locked
    release.set()
    join()


def test_statements_deallocated_under_the_store_are_a_conflict_then_prepared_again(
        pg_store):
    with pg_store.write() as t:
        add(t, "t1", runnable=True)
    for _ in range(3):
        claim_round(pg_store)  # its commits go through libpq, with statements of its own
    assert pg_store._ahead is not None
    with pg_store.write() as t:
        for name in postgres._prepared_names[t._conn].values():  # as psycopg's
            t._conn.execute(f"DEALLOCATE {name.decode()}")  # DEALLOCATE ALL would
        t.get_task("t1")
    with pytest.raises(StoreConflict, match="does not exist"):
        claim_round(pg_store)
    assert claim_round(pg_store) == ["t1"]
    assert claim_round(pg_store) == ["t1"]


def test_migration_from_version_2_adds_versions(pg_url, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(postgres, "SCHEMA_VERSION", 2)
        assert postgres.init_schema(pg_url) == 2
    import psycopg

    conninfo, schema, _ = postgres.parse_url(pg_url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("INSERT INTO tasks (id, status, program, name, root, created, updated, "
                     "runnable, record) VALUES ('t1', 'runnable', 'p0', '', 't1', 1, 1, true, "
                     "'rec-t1')")
    with pytest.raises(StoreError, match="migrate"):
        PostgresStore(pg_url, create=False)
    store = PostgresStore(pg_url)
    try:
        assert store.init(create=False) == postgres.SCHEMA_VERSION == 3
        assert claim_round(store) == ["t1"]
        with store.write() as t:
            assert t.optimistic
            assert t.get_task("t1") == b"leased"
            t.put_task("t1", b"stepped", cols("t1"))
        with store.read() as t:
            assert t._query("SELECT version FROM tasks") == [(2,)]
            assert t.get_task("t1") == b"stepped"
    finally:
        store.close()


# ---------------------------------------------------------------------------------------
# The clock


def test_clock_is_the_databases_and_fixed_per_transaction(pg_store):
    with pg_store.write() as t:
        first = t.clock()
        assert t._query("SELECT extract(epoch FROM now())::float8")[0][0] == first
        time.sleep(0.05)
        assert t.clock() == first
    with pg_store.read() as t:
        later = t.clock()
        assert later > first
        assert abs(later - time.time()) < 60  # the server is on this host, roughly in step


# ---------------------------------------------------------------------------------------
# Faults


def test_unreachable_server_is_a_clear_error_at_open():
    start = time.monotonic()
    with pytest.raises(StoreError, match="cannot connect to the store at postgresql://"):
        PostgresStore("postgresql://postgres:hush@127.0.0.1:1/test?schema=x",
                      connect_timeout=2)
    assert time.monotonic() - start < 10
    with pytest.raises(StoreError) as info:
        postgres.init_schema("postgresql://postgres:hush@127.0.0.1:1/test")
    assert "hush" not in str(info.value)


def test_connection_lost_in_a_transaction_is_unavailable_then_retry_works(pg_store):
    require_postgres()
    import psycopg

    with pg_store.write() as t:
        add(t, "t1")
    with pytest.raises(StoreUnavailable) as info:
        with pg_store.write() as t:
            pid = t._query("SELECT pg_backend_pid()")[0][0]
            t.put_task("t1", b"lost", cols("t1"))
            with psycopg.connect(base_url(), autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            t.get_task("t2")
    assert not isinstance(info.value, StoreConflict)
    with pg_store.write() as t:  # a new connection
        assert t.get_task("t1") == b"rec-t1"
        t.put_task("t1", b"kept", cols("t1"))
    with pg_store.read() as t:
        assert t.get_task("t1") == b"kept"


def test_connection_lost_at_commit_is_unavailable(pg_store):
    require_postgres()
    import psycopg

    with pytest.raises(StoreUnavailable):
        with pg_store.write() as t:
            pid = t._query("SELECT pg_backend_pid()")[0][0]
            add(t, "t1")
            with psycopg.connect(base_url(), autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pg_store.read() as t:
        assert t.get_task("t1") is None


def test_read_only_database_is_unavailable(pg_store, pg_url):
    read_only = PostgresStore(pg_url + "&options=-cdefault_transaction_read_only%3Don")
    try:
        with pytest.raises(StoreUnavailable, match="read-only"):
            with read_only.write() as t:
                add(t, "t1")
        with read_only.read() as t:
            assert t.get_task("t1") is None
    finally:
        read_only.close()


def test_a_failed_transaction_keeps_its_first_error(pg_store):
    with pytest.raises(StoreError) as info:
        with pg_store.write() as t:
            t._send("SELECT 1/0")
            with pytest.raises(StoreError, match="division by zero"):
                t.get_task("a")
            with pytest.raises(StoreError, match="division by zero"):
                t.log_append("a", b"x")
    assert "division by zero" in str(info.value)
    assert not isinstance(info.value, StoreUnavailable)


def test_deadlock_is_a_conflict_and_run_write_retries_it(pg_store):
    with pg_store.write() as t:
        add(t, "a")
        add(t, "b")
    both = threading.Barrier(2)
    attempts: list[str] = []

    def lock_in_order(first, second):
        def fn(t):
            attempts.append(first)
            t.get_task(first)
            if len(attempts) <= 2:
                both.wait(10)
            t.get_task(second)
            t.put_task(first, first.encode() * 2, cols(first))
            return first
        return pg_store.run_write(fn)
    one = in_thread(lock_in_order, "a", "b")
    two = in_thread(lock_in_order, "b", "a")
    assert sorted([one(), two()]) == ["a", "b"]
    assert len(attempts) == 3  # one of them lost and ran again

    assert issubclass(StoreConflict, StoreRetry)

    def conflict(t):
        raise StoreConflict("lost")
    with pytest.raises(StoreConflict):
        pg_store.run_write(conflict, attempts=2)


def test_closed_store_refuses_transactions(pg_url):
    store = PostgresStore(pg_url)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        with store.read():
            pass
    store.open()
    with store.read() as t:
        assert t.get_task("x") is None
    store.close()


# ---------------------------------------------------------------------------------------
# Wake-ups


def test_wait_for_work_wakes_on_runnable_work_and_timers(pg_store):
    pg_store.listen()
    for what in ("runnable", "timer", "explicit"):
        join = in_thread(lambda: (time.monotonic(), pg_store.wait_for_work(10.0),
                                  time.monotonic()))
        time.sleep(0.2)
        with pg_store.write() as t:
            if what == "runnable":
                add(t, f"t-{what}", runnable=True)
            elif what == "timer":
                t.timer_add(1e9, "t", 1, b"x")
            else:
                t.notify()
        start, _, end = join()
        assert end - start < 5.0, what


def test_wait_for_work_times_out_and_ignores_other_schemas(pg_store):
    require_postgres()
    other = PostgresStore(url_for(new_schema()))
    try:
        pg_store.listen()
        with other.write() as t:
            add(t, "elsewhere", runnable=True)
        with pg_store.write() as t:  # a task already runnable: no wake-up
            add(t, "quiet")
        start = time.monotonic()
        pg_store.wait_for_work(0.5)
        assert 0.4 < time.monotonic() - start < 3.0
    finally:
        other.drop()


# ---------------------------------------------------------------------------------------
# Worker liveness

HOLDER = """
import sys, time
from flowmetal.store.postgres import PostgresStore
store = PostgresStore(sys.argv[1])
hold = store.hold_worker(sys.argv[2])
print("held", flush=True)
time.sleep(120)
"""


def test_worker_liveness_across_processes_and_sigkill(pg_store, pg_url):
    assert not pg_store.worker_alive("w1")
    child = subprocess.Popen([sys.executable, "-c", HOLDER, pg_url, "w1"],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "held"
        assert pg_store.worker_alive("w1")
        assert not pg_store.worker_alive("w2")
        with pytest.raises(StoreError, match="already running"):
            pg_store.hold_worker("w1")
        with pg_store.read() as t:
            assert t.worker_alive("w1")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        deadline = time.monotonic() + 10
        while pg_store.worker_alive("w1") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pg_store.worker_alive("w1")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    hold = pg_store.hold_worker("w1")  # free again
    assert pg_store.worker_alive("w1") and hold.alive()
    hold.release()
    assert not pg_store.worker_alive("w1")


def test_worker_locks_are_per_schema(pg_store):
    require_postgres()
    schema = new_schema()
    other = PostgresStore(url_for(schema))
    try:
        with pg_store.hold_worker("w1"):
            assert pg_store.worker_alive("w1")
            assert not other.worker_alive("w1")
    finally:
        other.close()
        drop_schema(schema)


# ---------------------------------------------------------------------------------------
# Size and speed


def test_size_bytes_grows(pg_store):
    before = pg_store.size_bytes()
    assert before > 0
    with pg_store.write() as t:
        for i in range(200):
            add(t, f"t{i:03d}")
            t.put_cont(f"t{i:03d}", os.urandom(4000))
    assert pg_store.size_bytes() > before


def test_a_batch_of_100_steps_commits_quickly(pg_store):
    """100 task updates + 100 continuations + 100 log appends in one transaction."""
    ids = [f"t{i:03d}" for i in range(100)]
    with pg_store.write() as t:
        for task in ids:
            add(t, task, runnable=True)
            t.put_cont(task, b"c")
    times = []
    for n in range(30):
        start = time.perf_counter()
        with pg_store.write() as t:
            now = t.clock()
            t.get_tasks(ids)
            for task in ids:
                t.put_cont(task, os.urandom(300) * 2)
                t.log_append(task, b"e" * 80)
                t.runnable_add(task)
                t.put_task(task, b"r" * 400, cols(task, updated=now + n, lease_worker="w",
                                                  lease_until=now + 30))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"100-step write transaction: median {median * 1e3:.2f} ms")
    assert median < 0.2  # a loose bound: ~5 ms on the project's machine
    with pg_store.read() as t:
        assert [s for s, _ in t.log_items("t000")] == list(range(1, 31))
