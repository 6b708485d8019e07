"""Property: a worker that dies at any point (its uncommitted steps lost, or inside its
commit transaction) and is replaced by another worker, any number of times and with
any slice size, changes nothing a task tree does: the same result, output and answer
to each request as an uninterrupted run."""

from __future__ import annotations

import shutil
import tempfile
import time
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from flowmetal.runtime import api
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store

from .durable_helpers import (
    PROGRAMS,
    expire_leases,
    snapshot,
    unfinished,
    without_chunks,
    write_programs,
)
from .resume_corpus import CORPUS

PURE = ("generator_callcc", "reentry_multishot", "dynamic_wind_order", "exceptions",
        "closures_share_env")
SOURCES = {**PROGRAMS, **{name: CORPUS[name] for name in PURE}}


class Crash(BaseException):
    """The worker's process dies."""


class Runs:
    """Program files, and each program's uninterrupted run."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="fm-resume-")
        self.paths = write_programs(self.dir + "/programs")
        for name in PURE:
            self.paths[name] = f"{self.dir}/programs/{name}.fm"
            with open(self.paths[name], "w") as f:
                f.write(CORPUS[name])
        self.reference = {}
        self.size = {}
        store = open_store(self.dir + "/reference")
        for name in SOURCES:
            root = self.start(store, name)
            run(store, root, [10_000], [], 0.0, "ref")
            self.reference[name] = without_chunks(snapshot(store, root))
            with store.view() as view:
                self.size[name] = sum(view.task(t).reductions + view.task(t).steps
                                      for t in api.tree(view, root))

    def start(self, store, name: str) -> str:
        return api.start(store, SOURCES[name], self.paths[name])


def run(store, root: str, slices: list[int], crashes: list[tuple[int, str]], lease: float,
        prefix: str, draft: str = "never") -> int:
    """Run rounds until the tree is finished, replacing the worker at the planned rounds:
    "drop" loses the steps it ran but did not commit, "abort" dies in its commit.  Worker
    number n runs slices of ``slices[n % len(slices)]`` reductions, drafting its commits
    as ``draft`` says.  The number of workers used."""
    plan = dict(crashes)
    workers = 0

    def fresh() -> Worker:
        nonlocal workers
        workers += 1
        return Worker(store, worker_id=f"{prefix}-{workers}",
                      slice_size=slices[(workers - 1) % len(slices)], lease_seconds=lease,
                      poll=0.002, draft=draft)

    worker = fresh()
    end = time.monotonic() + 30
    n = 0
    while True:
        assert time.monotonic() < end, "the tasks did not finish"
        n += 1
        kind = plan.get(n)
        if kind == "abort":
            with dying_in_commit(store), pytest.raises(Crash):
                worker.round()
        else:
            ran = worker.round()
        if kind:
            worker = fresh()
            if lease:
                expire_leases(store)
            continue
        if not unfinished(store):
            worker.run(until=lambda: True)
            return workers
        if ran == 0:
            worker.idle()


@contextmanager
def dying_in_commit(store):
    """While inside, a write transaction dies (Crash) just before it would commit."""
    write = store.backend.write

    @contextmanager
    def dying():
        with write() as t:
            yield t
            raise Crash()

    store.backend.write = dying
    try:
        yield
    finally:
        store.backend.write = write


@pytest.fixture(scope="module")
def runs():
    r = Runs()
    yield r
    shutil.rmtree(r.dir, ignore_errors=True)


def test_reference_runs_finish(runs):
    for name, snap in runs.reference.items():
        assert all(task["status"] == "done" for task in snap.values()), name


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(SOURCES)),
       slices=st.lists(st.integers(1, 200), min_size=1, max_size=4),
       stops=st.lists(st.tuples(st.floats(0.0, 1.0), st.sampled_from(["drop", "abort"])),
                      max_size=5),
       lease=st.sampled_from([0.0, 30.0]),
       draft=st.sampled_from(["never", "always"]))
def test_crashing_workers_change_nothing(runs, name, slices, stops, lease, draft):
    """Each new worker may use another slice size; workers may draft their commits."""
    store = open_store(tempfile.mkdtemp(prefix="store-", dir=runs.dir))
    root = runs.start(store, name)
    rounds = runs.size[name] // slices[0] + 10
    crashes = sorted((1 + int(f * rounds), kind) for f, kind in stops)
    workers = run(store, root, slices, crashes, lease, "w", draft)
    event("workers replaced: " + ("3+" if workers > 3 else str(workers - 1)))
    assert without_chunks(snapshot(store, root)) == runs.reference[name]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(SOURCES)),
       slice_size=st.integers(1, 200),
       schedule=st.lists(st.tuples(st.sampled_from(["round", "round", "round", "crash",
                                                    "expire"]), st.integers(0, 2)),
                         max_size=60),
       draft=st.sampled_from(["never", "always"]))
def test_workers_taking_turns_change_nothing(runs, name, slice_size, schedule, draft):
    """Three workers run rounds in any order; some die, and leases lapse at any time
    (a worker then finds its task taken over, and its steps refused, whether it
    committed them the ordinary way or from drafts)."""
    store = open_store(tempfile.mkdtemp(prefix="store-", dir=runs.dir))
    root = runs.start(store, name)
    made = [0]

    def fresh() -> Worker:
        made[0] += 1
        return Worker(store, worker_id=f"t-{made[0]}", slice_size=slice_size,
                      lease_seconds=30.0, poll=0.002, draft=draft)

    workers = [fresh(), fresh(), fresh()]
    for op, i in schedule:
        if op == "round":
            workers[i].round()
        elif op == "crash":
            workers[i] = fresh()
        else:
            expire_leases(store)
    expire_leases(store)
    end = time.monotonic() + 30
    while unfinished(store):
        assert time.monotonic() < end, "the tasks did not finish"
        if sum(w.round() for w in workers) == 0:
            workers[0].idle()
    for w in workers:
        w.run(until=lambda: True)
    assert without_chunks(snapshot(store, root)) == runs.reference[name]


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(sorted(SOURCES)),
       slices=st.lists(st.integers(1, 200), min_size=1, max_size=3),
       stops=st.lists(st.tuples(st.floats(0.0, 1.0), st.sampled_from(["drop", "abort"])),
                      max_size=4),
       lease=st.sampled_from([0.0, 30.0]))
def test_crashing_workers_change_nothing_on_postgres(runs, name, slices, stops, lease):
    """The same property against a PostgreSQL store (a schema of its own per example)."""
    from .pg_helpers import drop_schema, new_schema, require_postgres, schema_url

    require_postgres()
    schema = new_schema()
    store = open_store(schema_url(schema))
    try:
        root = runs.start(store, name)
        rounds = runs.size[name] // slices[0] + 10
        crashes = sorted((1 + int(f * rounds), kind) for f, kind in stops)
        run(store, root, slices, crashes, lease, "w")
        assert without_chunks(snapshot(store, root)) == runs.reference[name]
    finally:
        store.close()
        drop_schema(schema)
