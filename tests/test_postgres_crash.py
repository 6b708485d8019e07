"""Crash safety on PostgreSQL: the SIGKILL campaigns of test_durable_crash.py against a
PostgreSQL store (leases judged by the database's clock), and a worker stopped past its
lease whose late commit is refused with nothing done twice."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time

import pytest

from flowmetal.store import open_store

from . import test_durable_crash as crash
from .durable_helpers import snapshot, start_programs, unfinished
from .pg_helpers import drop_schema, new_schema, require_postgres, schema_url
from .test_durable_crash import (
    SEED,
    SLICE,
    check_store_is_clean,
    comparable,
    crash_campaigns,
    crash_pairs_until_finished,
)

# The fixtures of the LMDB campaigns: the programs, their reference runs, a fork server.
programs = crash.programs
reference = crash.reference
warm_server = crash.warm_server


@pytest.fixture
def pg_stores():
    """Makes PostgreSQL stores, each in a schema of its own, dropped after the test."""
    require_postgres()
    made = []

    def make():
        schema = new_schema()
        made.append(schema)
        return open_store(schema_url(schema))

    yield make
    for schema in made:
        drop_schema(schema)


def test_sigkilled_workers_resume_every_task_exactly_on_postgres(
        warm_server, programs, reference, tmp_path, pg_stores):
    """60 kills of one worker at a time."""
    kills = crash_campaigns(warm_server, programs, reference, tmp_path, random.Random(SEED),
                            60, 10, make_store=pg_stores)
    assert kills >= 60, f"only {kills} kills landed (seed {SEED})"


def test_workers_of_two_hosts_killed_at_random_share_the_tasks_on_postgres(
        warm_server, programs, reference, tmp_path, pg_stores):
    """Two workers with distinct host identities; one killed at random, 30 times; the
    other takes its tasks over when their leases expire by the database's clock."""
    kills = crash_campaigns(warm_server, programs, reference, tmp_path,
                            random.Random(SEED + 3), 30, 8, crash_pairs_until_finished,
                            make_store=pg_stores)
    assert kills >= 30, f"only {kills} kills landed (seed {SEED})"


def test_a_worker_stopped_past_its_lease_has_its_late_commit_refused(
        warm_server, programs, reference, tmp_path, pg_stores):
    store = pg_stores()
    ids = start_programs(store, programs)
    errors = str(tmp_path / "stderr")
    first = warm_server.start({"store": store.path, "slice": SLICE, "lease": 0.3,
                               "poll": 0.005, "id": "host-a:1", "stderr": errors,
                               "seconds": 40.0})
    second = None
    try:
        time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):  # it may have finished already
            os.kill(first, signal.SIGSTOP)
        second = warm_server.start({"store": store.path, "slice": SLICE, "lease": 0.3,
                                    "poll": 0.005, "id": "host-b:1", "stderr": errors,
                                    "seconds": 40.0})
        time.sleep(1.5)  # past every lease of the stopped worker: the other runs its tasks
        os.kill(first, signal.SIGCONT)
        assert warm_server.wait(second, 45.0) == 0, open(errors).read()
        assert warm_server.wait(first, 45.0) == 0, open(errors).read()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(first, signal.SIGCONT)
        for pid in (first, second):
            if pid is not None:
                warm_server.kill(pid)
    assert unfinished(store) == []
    for name, root in ids.items():
        assert comparable(snapshot(store, root)) == reference[name], name
    check_store_is_clean(store)
