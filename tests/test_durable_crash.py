"""Crash safety with real processes: a worker process is SIGKILLed at random moments and
restarted until every task is finished; then each task tree's result, output and
answers equal those of an uninterrupted run, every request has exactly one answer, and
nothing is left queued or armed in the store."""

from __future__ import annotations

import os
import random
import time

import pytest

from flowmetal.store import open_store

from .durable_helpers import (
    PROGRAMS,
    ForkServer,
    log_entries,
    output_chunks,
    run_until_finished,
    snapshot,
    start_programs,
    unfinished,
    without_chunks,
    write_programs,
)

SLICE = 50
SEED = int(os.environ.get("FLOWMETAL_CRASH_SEED", random.randrange(1 << 32)))


@pytest.fixture(scope="module")
def programs(tmp_path_factory) -> dict[str, str]:
    return write_programs(str(tmp_path_factory.mktemp("programs")))


@pytest.fixture(scope="module")
def reference(programs, tmp_path_factory) -> dict[str, dict]:
    """Every program's snapshot after an uninterrupted run (same slice size)."""
    store = open_store(str(tmp_path_factory.mktemp("reference")))
    ids = start_programs(store, programs)
    run_until_finished(store, list(ids.values()), slice_size=SLICE)
    return {name: comparable(snapshot(store, tid)) for name, tid in ids.items()}


@pytest.fixture(scope="module")
def warm_server(programs):
    """Forks workers that have the programs analyzed already (they start in ~10 ms)."""
    server = ForkServer(list(programs.values()) + [os.path.join(
        os.path.dirname(programs["fanout"]), "child.fm")])
    yield server
    server.close()


@pytest.fixture(scope="module")
def cold_server():
    """Forks workers that must analyze the stored programs they resume."""
    server = ForkServer()
    yield server
    server.close()


def comparable(snap: dict[str, dict]) -> dict[str, dict]:
    """A snapshot without the values of ``now`` and ``random`` themselves (the output
    and answers still show where each recorded value was used), nor where the output
    was cut into steps (a slice grows with the state's size, which depends on history)."""
    return without_chunks(snap)


def committed_steps(store) -> int:
    with store.view() as view:
        return sum(rec.steps for rec in view.tasks(limit=1 << 62))


def kill_at_random_moment(server: ForkServer, pid: int, store, rnd: random.Random) -> int:
    """Let the worker run, then SIGKILL it: at a random time since its start (perhaps
    before it committed anything), or a few milliseconds after it committed its next
    few steps.  Its exit status (-9 when killed)."""
    if rnd.random() < 0.3:
        code = server.wait(pid, rnd.uniform(0.0, 0.04))
    else:
        target = committed_steps(store) + rnd.randint(1, 6)
        end = time.monotonic() + 10.0
        code = None
        while code is None and committed_steps(store) < target and time.monotonic() < end:
            code = server.wait(pid, 0.001)
        if code is None:
            code = server.wait(pid, rnd.uniform(0.0, 0.005))
    return server.kill(pid) if code is None else code


def crash_until_finished(server: ForkServer, store, rnd: random.Random, kills_wanted: int,
                         errors: str) -> int:
    """Start a worker, kill it, start another ... ``kills_wanted`` times, then let the
    last one finish; the number of kills that hit a running worker."""
    kills = 0
    end = time.monotonic() + 60.0
    while True:
        assert time.monotonic() < end, "the tasks did not finish in 60 s"
        pid = server.start({"store": store.path, "slice": SLICE,
                            "lease": rnd.choice([0.0, 0.02, 0.1]), "poll": 0.005,
                            "draft": rnd.choice(["auto", "always"]),
                            "stderr": errors, "seconds": 30.0})
        if kills < kills_wanted:
            code = kill_at_random_moment(server, pid, store, rnd)
        else:
            code = server.wait(pid, 45.0)
        assert code in (0, -9), (code, open(errors).read())
        if code == -9:
            kills += 1
        else:
            # A worker leaves when nothing is left to do now or later.
            assert unfinished(store) == []
            return kills


def crash_pairs_until_finished(server: ForkServer, store, rnd: random.Random,
                               kills_wanted: int, errors: str) -> int:
    """Two workers at a time share the store, as if on two hosts (their ids name
    hosts a and b; each runs in a process group of its own); one of them, chosen at
    random, is killed and replaced, ``kills_wanted`` times; then both finish.  The
    number of kills."""
    started = [0]

    def start() -> int:
        started[0] += 1
        return server.start({"store": store.path, "slice": SLICE,
                             "id": f"host-{'ab'[started[0] % 2]}:{started[0]}",
                             "lease": rnd.choice([0.15, 0.3]), "poll": 0.005,
                             "draft": rnd.choice(["auto", "always"]),
                             "stderr": errors, "seconds": 30.0})

    live = [start(), start()]
    kills = 0
    end = time.monotonic() + 60.0
    while kills < kills_wanted and unfinished(store):
        assert time.monotonic() < end, "the tasks did not finish in 60 s"
        i = rnd.randrange(2)
        code = kill_at_random_moment(server, live[i], store, rnd)
        assert code in (0, -9), (code, open(errors).read())
        kills += code == -9
        live[i] = start()
    for pid in live:
        assert server.wait(pid, 45.0) == 0, open(errors).read()
    assert unfinished(store) == []
    return kills


def check_store_is_clean(store) -> None:
    """No task left runnable, no timer armed, no message left unread, one end each."""
    with store.view() as view:
        assert not view.has_work()
        records = view.tasks(limit=1 << 62)
        for rec in records:
            assert view.inbox(rec.id) == [], rec.name
    for rec in records:
        chunks = output_chunks(store, rec.id)
        assert all(chunks) and len(chunks) <= rec.steps
        entries = log_entries(store, rec.id)
        kinds = [e["kind"] for e in entries]
        if rec.trace:  # each committed step once, in order
            steps = [e["reductions"] for e in entries if e["kind"] == "step"]
            assert steps == sorted(set(steps)), steps
        assert kinds.count("created") == 1 and kinds[0] == "created", kinds
        assert sum(kinds.count(k) for k in ("done", "failed")) == 1, kinds
        assert kinds[-1] in ("done", "failed"), kinds


def campaign(server, programs, reference, tmp_path, rnd, kills_wanted: int,
             crash=crash_until_finished, make_store=None) -> int:
    store = open_store(str(tmp_path)) if make_store is None else make_store()
    # In trace mode slices keep their size whatever the state's, and every step is logged.
    ids = start_programs(store, programs, trace=rnd.random() < 0.5)
    errors = str(tmp_path) + ".stderr"
    kills = crash(server, store, rnd, kills_wanted, errors)
    for name, root in ids.items():
        snap = snapshot(store, root)
        assert comparable(snap) == reference[name], (name, f"seed {SEED}")
        if name == "random_now":
            assert len(snap["T"]["recorded"]) == 3
    check_store_is_clean(store)
    return kills


def test_reference_run_finishes(reference):
    assert set(reference) == set(PROGRAMS)
    assert reference["countdown"]["T"]["result"] == ":liftoff"
    assert reference["pingpong"]["T"]["result"] == "[[0 1 2 3 4 5] 6]"
    assert reference["fanout"]["T"]["result"] == '[(0 1113775 2227550) "child-fan"]'
    assert reference["selective"]["T"]["result"] == \
        "[[[:a 1] [:a 2]] [:default :timeout] [[:b 1] [:b 2]]]"
    assert reference["callcc_wind"]["T"]["result"].startswith(
        "[[[1 2 3 :done] :in 0 1 2 :out :in2 :out2 :in3 :out3] :escaped 102 3 \"boom\"")
    assert all(task["status"] == "done" for snap in reference.values()
               for task in snap.values())


def crash_campaigns(server, programs, reference, tmp_path, rnd, kills_wanted: int,
                    most: int, crash=crash_until_finished, make_store=None) -> int:
    """Campaigns on fresh stores, each killing up to 20 workers, until ``kills_wanted``
    kills landed (or ``most`` campaigns ran); the number of kills."""
    kills = 0
    for i in range(most):
        if kills >= kills_wanted:
            break
        kills += campaign(server, programs, reference, tmp_path / f"store{i}", rnd,
                          min(20, kills_wanted - kills), crash, make_store)
    print(f"{kills} kills in {i + 1} stores (seed {SEED})")
    return kills


def test_sigkilled_workers_resume_every_task_exactly(warm_server, programs, reference,
                                                     tmp_path):
    """200 kills of workers that start warm."""
    kills = crash_campaigns(warm_server, programs, reference, tmp_path, random.Random(SEED),
                            200, 30)
    assert kills >= 200, f"only {kills} kills landed (seed {SEED})"


def test_sigkilled_cold_workers_load_programs_from_the_store(cold_server, programs,
                                                             reference, tmp_path):
    """40 kills of workers that analyze the stored programs when they resume them."""
    kills = crash_campaigns(cold_server, programs, reference, tmp_path,
                            random.Random(SEED + 1), 40, 8)
    assert kills >= 40, f"only {kills} kills landed (seed {SEED})"


def test_two_workers_killed_at_random_share_and_resume_the_tasks(warm_server, programs,
                                                                 reference, tmp_path):
    """Two workers at once, one of them killed at random, 60 times: leases keep each
    task on one worker, and a dead worker's tasks move on."""
    kills = crash_campaigns(warm_server, programs, reference, tmp_path,
                            random.Random(SEED + 2), 60, 12, crash_pairs_until_finished)
    assert kills >= 60, f"only {kills} kills landed (seed {SEED})"
