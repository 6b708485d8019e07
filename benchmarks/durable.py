"""Durable tasks: step rate, group commit, sleeping tasks, timer lateness, state size.

    python -m benchmarks.durable [--quick] [--breakdown] [--dir DIR]
                                 [--store postgresql://...]

Every store is an LMDB directory with fsync on.  Each figure is printed beside the raw
LMDB figure that bounds it, measured in the same run with LMDB used directly:

(a) one task making 10,000 effect steps (``(now)`` in a loop, one commit per step):
    steps/s, p50/p99 step latency, and the ratio to raw synced write transactions/s;
(b) 100 tasks x 1,000 steps with group commit, aggregate steps/s beside raw puts/s in
    large synced transactions: two worker processes (a worker process uses one core, and
    this machine has two), whose figure the target is for; and one worker with batch
    100 alone, for the speed of one core.  Each the best of three runs on fresh stores;
(c) 100,000 tasks asleep in ``(sleep 3600)``: store bytes per task, the creation rate,
    and a worker's RSS holding 10,000 and then 100,000 of them;
(d) timers due at 10,000 per second: when each fired (the worker's clock in the round
    whose transaction committed the answer) and when its task's next step committed,
    minus when it was due, p50/p99;
(e) bytes of a sleeping task's continuation at call depth 1, 10 and 100.

Options:

``--quick``
    every part at a small size (a smoke run);
``--breakdown``
    also print where the time of a step goes in (a) and (b): the worker's phases and
    the store's write transactions (``store.backend.write``) are timed;
``--dir DIR``
    where to make the LMDB stores (default: a temporary directory; removed afterwards);
``--store postgresql://...``
    also run (a), (b) and (c) against that PostgreSQL database, each run in a fresh
    schema of its own (``?schema=bench_...``, dropped afterwards), beside raw PostgreSQL
    measured in the same run with psycopg directly: (a) against single-row synced
    commits (one ``UPDATE`` per transaction, ``synchronous_commit`` on), (b) with one
    worker and two worker processes against rows/s in large synced transactions, (c)
    with bytes per task from ``pg_total_relation_size`` of the schema's tables.  When
    ``dbos`` is importable, DBOS Transact is timed on the same server (a workflow of
    ``@DBOS.step`` calls returning ``time.time()``: one workflow, and 100 at once, in a
    database of its own, dropped afterwards), with the Flowmetal/DBOS ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import lmdb

from flowmetal.codec import decode_machine, encode_machine
from flowmetal.interpreter import Session, base
from flowmetal.runtime import api
from flowmetal.runtime import worker as worker_module
from flowmetal.runtime.code import COMMAND_LINE_ARGS, FILE, code_of, program_records
from flowmetal.runtime.records import Limits, TaskRecord, encode_data, new_task_id
from flowmetal.runtime.worker import Worker, tune_gc
from flowmetal.store import TaskStore, engine, is_url, open_store
from flowmetal.store import drafts as drafts_module
from flowmetal.store.base import NewTask
from flowmetal.values import Vector

FULL = {"steps": 10_000, "tasks": 100, "task_steps": 1_000, "sleepers": (10_000, 100_000),
        "timer_rate": 10_000, "timer_seconds": 2.0, "raw_txns": 3_000, "raw_batches": 200,
        "repeats": 3, "pg_sleepers": (10_000, 100_000), "dbos_steps": 2_000,
        "dbos_workflow_steps": 20}
QUICK = {"steps": 1_000, "tasks": 100, "task_steps": 50, "sleepers": (1_000, 5_000),
         "timer_rate": 10_000, "timer_seconds": 0.2, "raw_txns": 1_000, "raw_batches": 50,
         "repeats": 1, "pg_sleepers": (1_000, 10_000), "dbos_steps": 200,
         "dbos_workflow_steps": 5}
RAW_PUTS_PER_TXN = 1_000
CREATE_PER_TXN = 1_000  # tasks created per write transaction
SLEEPER_BATCH = 250  # batch of the worker that puts the sleepers to sleep
IDLE_ROUNDS = 20  # rounds that find nothing runnable, before RSS is read
RAW_VALUE = b"x" * 256
DBOS_WORKFLOWS = 100  # workflows at once in DBOS's (b)


# -- helpers -----------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``, nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def memory() -> dict[str, int]:
    """This process's resident memory in bytes: total, anonymous (heap) and file-backed
    (the LMDB map)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def live_bytes(store: TaskStore) -> int:
    """Bytes of an LMDB store's B-tree pages in use (all tables), excluding free pages."""
    def pages(stat: dict) -> int:
        return stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]

    backend = store.backend
    env = backend.env
    total = pages(env.stat())
    with backend.read() as t:
        for db in backend.dbs.values():
            total += pages(t.txn.stat(db))
    return total * env.stat()["psize"]


def mb(n: float) -> str:
    return f"{n / 2**20:.1f} MB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def run_until_idle(worker: Worker) -> int:
    """Rounds until one finds nothing runnable; how many steps ran."""
    steps = 0
    while n := worker.round():
        steps += n
    return steps


def create_tasks(store: TaskStore, source: str, file: str, count: int,
                 args_for: Callable[[int], list] | None = None,
                 per_txn: int = CREATE_PER_TXN) -> list[str]:
    """Submit ``count`` runnable tasks of one program, ``per_txn`` to a write transaction,
    with the records ``api.start`` writes (the program's records stored once); their
    ids."""
    session = Session()
    program = session.load(source, file)
    session.globals[FILE] = file
    store.put_programs(program_records(program))
    name = os.path.basename(file)
    ids: list[str] = []
    while len(ids) < count:
        new = []
        for i in range(len(ids), min(count, len(ids) + per_txn)):
            session.globals[COMMAND_LINE_ARGS] = Vector(args_for(i) if args_for else [])
            m = session.machine(program)
            programs: set = set()
            state = encode_machine(m, base().globals, programs)
            rec = TaskRecord(new_task_id(), name, program.hash, limits=Limits.of(None),
                             programs=list(code_of(m, programs | {program.hash})))
            new.append(NewTask(rec, state, {"file": file}))
        add_tasks(store, new)
        ids += [task.record.id for task in new]
    return ids


@engine.retrying  # run again when the store says to (LMDB: its map grew)
def add_tasks(store: TaskStore, new: list[NewTask]) -> None:
    """Add new tasks in one write transaction, as ``TaskStore.start`` adds one."""
    with store.backend.write() as t:
        unit = engine.Unit(t)
        unit.prefetch([task.record.id for task in new])  # one read for the batch
        now = unit.now
        for task in new:
            rec = task.record
            while unit.get(rec.id) is not None:
                rec.id = rec.root = new_task_id()
            engine.add_task(unit, task, now)
        unit.flush()


def statuses(store: TaskStore) -> Counter:
    """How many tasks have each status."""
    with store.view() as v:
        return Counter(v.count())


# -- worker processes --------------------------------------------------------------------


def child(config: str) -> int:
    """A worker process driven by the parent through stdin/stdout, one JSON line each:
    ``run`` (work until nothing is left), ``settle`` (rounds until nothing is runnable,
    then idle rounds; reports RSS), ``quit``."""
    options = json.loads(config)
    store = open_store(options["store"])
    tune_gc()  # as `flowmetal worker` does
    worker = Worker(store, batch=options["batch"])
    base()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "run":
            start = time.time()
            worker.run(idle_exit=True)
            print(json.dumps({"start": start, "end": time.time()}), flush=True)
        elif command == "settle":
            steps = run_until_idle(worker)
            for _ in range(IDLE_ROUNDS):
                worker.round()
            print(json.dumps({"steps": steps, **memory()}), flush=True)
        elif command == "quit":
            break
    worker.stop()
    store.close()
    return 0


class Child:
    """A worker process (see ``child``)."""

    def __init__(self, location: str, batch: int):
        config = json.dumps({"store": location, "batch": batch})
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.durable", "--child", config],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.reply()

    def ask(self, command: str) -> dict:
        self.send(command)
        return self.reply()

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def reply(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"worker process exited with status {self.proc.wait()}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("quit")
            self.proc.stdin.close()
            self.proc.wait(timeout=60)


# -- breakdown of a step's time ----------------------------------------------------------


class Timings:
    """Wall time spent in the worker's phases and the store's write transactions."""

    INSIDE = ("commit_step", "apply draft", "fire_timers", "claim", "records written")

    def __init__(self, commit: str = "LMDB commit (write + fsync)"):
        self.commit = f"write txn: {commit}"
        self.top = ("decode continuation", "run machine", "encode continuation",
                    "prepare drafts", "write txn: python inside", self.commit)
        self.total: Counter = Counter()

    @contextmanager
    def installed(self, store: TaskStore) -> Iterator[None]:
        """Wrap the worker's and the engine's phase functions, and the store's
        ``backend.write``, with timers while inside."""
        saved = []
        total = self.total

        def wrap(owner, name, label):
            fn = getattr(owner, name, None)
            if fn is None:
                return

            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    total[label] += time.perf_counter() - start

            saved.append((owner, name, fn))
            setattr(owner, name, timed)

        wrap(worker_module, "task_machine", "decode continuation")
        wrap(worker_module.Worker, "_slice", "run machine")
        wrap(worker_module.Image, "encode", "encode continuation")
        wrap(engine.TaskStore, "prepare", "prepare drafts")
        wrap(engine, "commit_step", "commit_step")
        wrap(drafts_module, "apply", "apply draft")
        wrap(engine, "fire_timers", "fire_timers")
        wrap(engine, "claim", "claim")
        wrap(engine.Unit, "flush", "records written")
        backend = store.backend
        inner = backend.write
        commit = self.commit

        @contextmanager
        def write():
            with inner() as t:
                start = time.perf_counter()
                yield t
                total["write txn: python inside"] += time.perf_counter() - start
                start = time.perf_counter()
            total[commit] += time.perf_counter() - start

        backend.write = write  # an instance attribute, over the method
        try:
            yield
        finally:
            del backend.write
            for owner, name, fn in reversed(saved):
                setattr(owner, name, fn)

    def report(self, steps: int, wall: float) -> None:
        def line(label: str, seconds: float) -> None:
            print(f"      {label:<42} {seconds / steps * 1e6:8.1f}")

        print(f"    where a step's {wall / steps * 1e6:.0f} us go (us per step):")
        for label in self.top:
            if label in self.total:
                line(label, self.total[label])
            if label == "write txn: python inside":
                for inner in self.INSIDE:
                    if inner in self.total:
                        line("  " + inner, self.total[inner])
        line("other", wall - sum(self.total[label] for label in self.top))


# -- raw LMDB ----------------------------------------------------------------------------


class Raw:
    """LMDB used directly, in a directory of its own, with fsync on."""

    def __init__(self, path: str):
        self.env = lmdb.open(path, map_size=4 << 30, sync=True, metasync=True)
        self.next_key = 0
        self.synced_count, self.synced_time = 0, 0.0

    def synced(self, txns: int) -> float:
        """Write transactions/s, one small put each (also added to the running total)."""
        start = time.perf_counter()
        for i in range(txns):
            with self.env.begin(write=True) as txn:
                txn.put(b"k%d" % (i % 100), b"v" * 64)
        seconds = time.perf_counter() - start
        self.synced_count += txns
        self.synced_time += seconds
        return txns / seconds

    def puts(self, batches: int) -> float:
        """Puts/s with RAW_PUTS_PER_TXN puts of RAW_VALUE per synced transaction."""
        start = time.perf_counter()
        for _ in range(batches):
            with self.env.begin(write=True) as txn:
                for _ in range(RAW_PUTS_PER_TXN):
                    txn.put(b"p%012d" % self.next_key, RAW_VALUE)
                    self.next_key += 1
        return batches * RAW_PUTS_PER_TXN / (time.perf_counter() - start)

    def close(self) -> None:
        self.env.close()


# -- (a) one task ------------------------------------------------------------------------


def one_task(location: str, steps: int, raw, raw_txns: int,
             timings: Timings | None, segments: int = 50) -> dict:
    """One task making ``steps`` effect steps, one worker, a commit per step.  The raw
    synced-commit rate (``raw.synced``) is measured in ``segments`` slices between slices
    of the run, so both see the same disk."""
    store = open_store(location)
    try:
        task_id = api.start(store, f"(dotimes [i {steps}] (now))", "one-task.fm")
        worker = Worker(store, batch=1)
        worker.round()  # loads the program and runs the first step
        os.sync()  # start with no earlier part's writes still going to the disk
        raw.synced_count, raw.synced_time = 0, 0.0
        gaps: list[float] = []
        every = max(1, steps // segments)
        raw_rates = []
        more = True
        with timings.installed(store) if timings else nullcontext():
            while more:
                last = time.perf_counter()
                for _ in range(every):
                    more = worker.round() > 0
                    now = time.perf_counter()
                    gaps.append(now - last)
                    last = now
                    if not more:
                        break
                raw_rates.append(raw.synced(max(1, raw_txns // segments)))
        worker.stop()
        rec = api.get(store, task_id)
        if rec.status != "done":
            raise SystemExit(f"(a): the task ended {rec.status}")
    finally:
        store.close()
    wall = sum(gaps)
    if timings:
        timings.report(len(gaps), wall)
    return {"steps": len(gaps), "rate": len(gaps) / wall, "p50": pct(gaps, 50),
            "p99": pct(gaps, 99), "raw": raw.synced_count / raw.synced_time,
            "raw_range": (min(raw_rates), max(raw_rates))}


# -- (b) many tasks, group commit --------------------------------------------------------

LOOP = "(dotimes [i {n}] (now))"


def many_tasks_in_process(location: str, tasks: int, steps: int,
                          timings: Timings | None) -> dict:
    """``tasks`` tasks of ``steps`` effect steps each, one worker with batch = tasks."""
    store = open_store(location)
    try:
        create_tasks(store, LOOP.format(n=steps), "many.fm", tasks)
        tune_gc()  # as `flowmetal worker` does
        worker = Worker(store, batch=tasks)
        os.sync()  # start with no earlier part's writes still going to the disk
        start = time.perf_counter()
        with timings.installed(store) if timings else nullcontext():
            worker.run(idle_exit=True)
        wall = time.perf_counter() - start
        total = _steps_done(store, tasks)
    finally:
        store.close()
    if timings:
        timings.report(total, wall)
    return {"steps": total, "rate": total / wall}


def many_tasks_processes(location: str, tasks: int, steps: int, processes: int) -> dict:
    """The same load shared by ``processes`` worker processes (batch tasks/processes)."""
    store = open_store(location)
    try:
        create_tasks(store, LOOP.format(n=steps), "many.fm", tasks)
        children = [Child(location, max(1, tasks // processes)) for _ in range(processes)]
        os.sync()  # start with no earlier part's writes still going to the disk
        try:
            for c in children:
                c.send("run")
            spans = [c.reply() for c in children]
        finally:
            for c in children:
                c.close()
        wall = max(s["end"] for s in spans) - min(s["start"] for s in spans)
        total = _steps_done(store, tasks)
    finally:
        store.close()
    return {"steps": total, "rate": total / wall}


def best_of(runs: list[dict]) -> dict:
    """The fastest of several runs of one figure, with every run's rate."""
    best = max(runs, key=lambda r: r["rate"])
    return {**best, "rates": [r["rate"] for r in runs]}


def _steps_done(store: TaskStore, tasks: int) -> int:
    with store.view() as v:
        records = v.tasks(limit=tasks + 1)
    bad = [str(r.status) for r in records if r.status != "done"]
    if len(records) != tasks or bad:
        raise SystemExit(f"(b): {len(records)} tasks, not done: {Counter(bad)}")
    return sum(r.steps for r in records)


# -- (c) sleeping tasks ------------------------------------------------------------------


def sleeping_tasks(location: str, counts: tuple[int, ...]) -> dict:
    """Tasks asleep in (sleep 3600): creation rate, store bytes per task, and the RSS of
    a worker process that put them to sleep and holds them, at each count; also the RSS
    of a fresh worker process at each count."""
    store = open_store(location)
    lmdb_store = hasattr(store.backend, "env")
    holder = Child(location, SLEEPER_BATCH)
    rows = []
    created, create_time = 0, 0.0
    try:
        for count in counts:
            start = time.perf_counter()
            create_tasks(store, "(sleep 3600)", "sleeper.fm", count - created)
            create_time += time.perf_counter() - start
            created = count
            held = holder.ask("settle")
            fresh = Child(location, SLEEPER_BATCH)
            try:
                fresh_mem = fresh.ask("settle")
            finally:
                fresh.close()
            found = statuses(store)
            if found.get("waiting") != count:
                raise SystemExit(f"(c): expected {count} sleeping tasks, found {dict(found)}")
            rows.append({"count": count, "file": store.size_bytes(),
                         "live": live_bytes(store) if lmdb_store else None,
                         "held": held, "fresh": fresh_mem})
    finally:
        holder.close()
        store.close()
    return {"rows": rows, "create_rate": created / create_time}


# -- (d) timers --------------------------------------------------------------------------

TIMER = "(let [[t0 offset] (receive)] (sleep (max 0 (- (+ t0 offset) (now)))))"


def timers(location: str, rate: int, seconds: float) -> dict:
    """``rate * seconds`` tasks, each sleeping until its own due time; due times spaced
    1/rate apart.  Lateness = when the timer fired (and when the task's next step
    committed) minus when it was due."""
    count = int(rate * seconds)
    store = open_store(location)
    ids = create_tasks(store, TIMER, "timer.fm", count)
    # Every task runs in each round of this worker, so each timer is armed the same time
    # after its task's (now) answer, and the due times keep their spacing.
    arming = Worker(store, batch=count)
    start = time.perf_counter()
    run_until_idle(arming)  # all wait in receive
    round_trip = time.perf_counter() - start
    first_due = time.time() + 1.0 + 3 * round_trip + count * 100e-6
    for chunk in range(0, count, 1_000):
        post_offsets(store, ids, chunk, first_due, rate)
    run_until_idle(arming)  # (now), then (sleep ..)
    armed_at = time.time()
    arming.stop()
    due = {}
    with store.view() as v:
        for task_id in ids:
            rec = v.task(task_id)
            waiting = rec.waiting if rec.status == "waiting" else None
            if waiting is not None and waiting.op == "sleep":
                due[task_id] = (waiting.until, waiting.request)
    Worker(store, batch=100).run(idle_exit=True)
    fired, resumed = [], []
    with store.view() as v:
        for task_id, (when, request) in due.items():
            events = [e for _, e in v.log(task_id)]
            fired += [e.at - when for e in events
                      if e.kind == "answer" and e.details.get("request") == request]
            resumed += [e.at - when for e in events if e.kind == "done"]
    store.close()
    if len(fired) != len(due) or len(resumed) != len(due):
        raise SystemExit(f"(d): {len(due)} timers, {len(fired)} fired, {len(resumed)} done")
    dues = sorted(when for when, _ in due.values())
    span = dues[-1] - dues[0] if len(dues) > 1 else 0.0
    return {"count": count, "armed": len(due), "armed_in_time": armed_at < first_due,
            "rate": (len(dues) - 1) / span if span else float("nan"),
            "fired_p50": pct(fired, 50), "fired_p99": pct(fired, 99),
            "resumed_p50": pct(resumed, 50), "resumed_p99": pct(resumed, 99)}


@engine.retrying
def post_offsets(store: TaskStore, ids: list[str], chunk: int, first_due: float,
                 rate: int) -> None:
    """Send tasks ``chunk`` to ``chunk + 999`` their due times, in one transaction."""
    with store.backend.write() as t:
        unit = engine.Unit(t)
        batch = ids[chunk:chunk + 1_000]
        unit.prefetch(batch)
        now = unit.now
        for i, task_id in enumerate(batch, chunk):
            engine.post(unit, unit.get(task_id), encode_data(Vector([first_due, i / rate])),
                        None, now)
        unit.flush()


# -- (e) continuation size ---------------------------------------------------------------

DEEP = """
(defn down [n] (if (= n 0) (do (sleep 3600) 0) (+ 1 (down (- n 1)))))
(down {depth})"""


def continuation_bytes(location: str, depths: tuple[int, ...]) -> list[dict]:
    """Bytes of the stored continuation of a task asleep at the bottom of a recursion."""
    store = open_store(location)
    ids = {d: api.start(store, DEEP.format(depth=d), f"deep{d}.fm") for d in depths}
    worker = Worker(store, batch=len(depths))
    run_until_idle(worker)
    worker.stop()
    out = []
    with store.view() as v:
        for depth, task_id in ids.items():
            cont = v.continuation(task_id)
            m = decode_machine(cont, base().globals)
            frames, k = 0, m.k
            while k is not None:
                frames, k = frames + 1, k[1]
            out.append({"depth": depth, "bytes": len(cont), "frames": frames,
                        "status": str(v.task(task_id).status)})
    store.close()
    return out


# -- PostgreSQL --------------------------------------------------------------------------


def without_schema(url: str) -> str:
    """``url`` without a ``schema`` parameter (the database itself, for psycopg)."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_schema(url: str, schema: str) -> str:
    """``url`` naming ``schema`` (how ``flowmetal.store.postgres`` takes a schema)."""
    parts = urlsplit(without_schema(url))
    query = [*parse_qsl(parts.query), ("schema", schema)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def with_database(url: str, database: str) -> str:
    """``url`` naming another database on the same server."""
    parts = urlsplit(without_schema(url))
    return urlunsplit(parts._replace(path="/" + database))


class Postgres:
    """The PostgreSQL server given by ``--store``: fresh schemas for runs, and the raw
    figures measured with psycopg directly, in a schema of their own."""

    def __init__(self, url: str):
        import psycopg

        self.url = without_schema(url)
        self.schemas: list[str] = []
        self.conn = psycopg.connect(self.url, autocommit=True)
        # each statement is its own transaction, committed when it returns
        self.conn.execute("SET synchronous_commit = on")
        self.settings = {name: self.conn.execute(f"SHOW {name}").fetchone()[0]
                         for name in ("server_version", "fsync", "synchronous_commit",
                                      "wal_sync_method")}
        self.raw_schema = self.new_schema("raw")
        q = self.quoted(self.raw_schema)
        self.conn.execute(f"CREATE SCHEMA {q}")
        self.conn.execute(f"CREATE TABLE {q}.small (k int PRIMARY KEY, v bytea NOT NULL)")
        self.conn.execute(f"INSERT INTO {q}.small SELECT i, '' FROM generate_series(0, 99) i")
        self.conn.execute(f"CREATE TABLE {q}.puts (k bigint PRIMARY KEY, v bytea NOT NULL)")
        self._update = f"UPDATE {q}.small SET v = %s WHERE k = %s"
        self._insert = f"INSERT INTO {q}.puts SELECT * FROM unnest(%s::int8[], %s::bytea[])"
        self.next_key = 0
        self.synced_count, self.synced_time = 0, 0.0

    @staticmethod
    def quoted(name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def new_schema(self, part: str) -> str:
        schema = f"bench_{secrets.token_hex(4)}_{part}"
        self.schemas.append(schema)
        return schema

    @contextmanager
    def fresh(self, part: str) -> Iterator[str]:
        """A store URL in a fresh schema, dropped afterwards."""
        schema = self.new_schema(part)
        try:
            yield with_schema(self.url, schema)
        finally:
            self.drop(schema)

    def drop(self, schema: str) -> None:
        self.conn.execute(f"DROP SCHEMA IF EXISTS {self.quoted(schema)} CASCADE")
        if schema in self.schemas:
            self.schemas.remove(schema)

    def synced(self, txns: int) -> float:
        """Committed transactions/s, each one ``UPDATE`` of a small row (also added to
        the running total)."""
        conn, update, value = self.conn, self._update, b"v" * 64
        start = time.perf_counter()
        for i in range(txns):
            conn.execute(update, (value, i % 100), prepare=True)
        seconds = time.perf_counter() - start
        self.synced_count += txns
        self.synced_time += seconds
        return txns / seconds

    def puts(self, batches: int) -> float:
        """Rows/s with RAW_PUTS_PER_TXN rows of RAW_VALUE per committed transaction (one
        ``INSERT`` over arrays)."""
        values = [RAW_VALUE] * RAW_PUTS_PER_TXN
        start = time.perf_counter()
        for _ in range(batches):
            keys = list(range(self.next_key, self.next_key + RAW_PUTS_PER_TXN))
            self.next_key += RAW_PUTS_PER_TXN
            self.conn.execute(self._insert, (keys, values), prepare=True)
        return batches * RAW_PUTS_PER_TXN / (time.perf_counter() - start)

    def close(self) -> None:
        for schema in list(self.schemas):
            self.drop(schema)
        self.conn.close()


def postgres_parts(pg: Postgres, size: dict, timings: Callable[[], Timings | None]) -> dict:
    """(a), (b) and (c) on PostgreSQL, each run in a fresh schema."""
    synced, puts = pg.synced(size["raw_txns"]), pg.puts(size["raw_batches"])
    s = pg.settings
    print(f"raw PostgreSQL {s['server_version']} (fsync {s['fsync']}, synchronous_commit "
          f"{s['synchronous_commit']}, wal_sync_method {s['wal_sync_method']}): "
          f"{synced:,.0f} synced commits/s (one UPDATE each); {puts:,.0f} rows/s "
          f"({RAW_PUTS_PER_TXN:,} rows of {len(RAW_VALUE)} B per commit)", flush=True)

    def pg_timings() -> Timings | None:
        t = timings()
        return Timings("PostgreSQL commit") if t else None

    print(f"(a) PostgreSQL: one task, {size['steps']:,} effect steps ...", flush=True)
    with pg.fresh("a") as url:
        a = one_task(url, size["steps"], pg, size["raw_txns"], pg_timings())
    n, steps, k = size["tasks"], size["task_steps"], size["repeats"]
    times = f", best of {k}" if k > 1 else ""
    print(f"(b) PostgreSQL: {n} tasks x {steps:,} steps, one worker (batch {n}){times} ...",
          flush=True)
    puts = pg.puts(size["raw_batches"])
    runs = []
    for i in range(k):
        with pg.fresh(f"b1_{i}") as url:
            runs.append(many_tasks_in_process(url, n, steps, pg_timings() if i == 0 else None))
    b1 = best_of(runs)
    print(f"(b) PostgreSQL: {n} tasks x {steps:,} steps, two worker processes "
          f"(batch {n // 2}){times} ...", flush=True)
    runs = []
    for i in range(k):
        with pg.fresh(f"b2_{i}") as url:
            runs.append(many_tasks_processes(url, n, steps, 2))
    b2 = best_of(runs)
    counts = size["pg_sleepers"]
    print(f"(c) PostgreSQL: {counts[-1]:,} sleeping tasks ...", flush=True)
    with pg.fresh("c") as url:
        c = sleeping_tasks(url, counts)
    return {"raw_synced": synced, "raw_puts": puts, "a": a, "b1": b1, "b2": b2, "c": c}


# -- DBOS Transact -----------------------------------------------------------------------


def dbos_available() -> bool:
    try:
        import dbos  # noqa: F401
    except ImportError:
        return False
    return True


def dbos_child(config: str) -> int:
    """Time DBOS Transact (run in a process of its own: DBOS is a singleton with threads):
    one workflow of ``steps`` steps, then ``workflows`` workflows of ``workflow_steps``
    steps at once; prints the rates as one JSON line."""
    import logging

    from dbos import DBOS

    options = json.loads(config)
    logging.getLogger("dbos").setLevel(logging.WARNING)
    DBOS(config={"name": "flowmetal-bench", "system_database_url": options["url"],
                 "log_level": "WARNING"})

    @DBOS.step()
    def now_step() -> float:
        return time.time()

    @DBOS.workflow()
    def loop(n: int) -> int:
        for _ in range(n):
            now_step()
        return n

    DBOS.launch()
    try:
        loop(5)  # warm up: connections, prepared statements
        start = time.perf_counter()
        loop(options["steps"])
        one = options["steps"] / (time.perf_counter() - start)
        count, each = options["workflows"], options["workflow_steps"]
        start = time.perf_counter()
        handles = [DBOS.start_workflow(loop, each) for _ in range(count)]
        total = sum(h.get_result() for h in handles)
        many = total / (time.perf_counter() - start)
    finally:
        DBOS.destroy()
    print(json.dumps({"one": one, "many": many}), flush=True)
    return 0


def dbos_parts(pg: Postgres, size: dict) -> dict | None:
    """DBOS's figures on the same server, in a database of its own (dropped after)."""
    database = f"bench_dbos_{secrets.token_hex(4)}"
    config = json.dumps({"url": with_database(pg.url, database), "steps": size["dbos_steps"],
                         "workflows": DBOS_WORKFLOWS,
                         "workflow_steps": size["dbos_workflow_steps"]})
    print(f"DBOS: 1 workflow x {size['dbos_steps']:,} steps, {DBOS_WORKFLOWS} workflows x "
          f"{size['dbos_workflow_steps']:,} steps at once ...", flush=True)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.durable", "--dbos", config],
            capture_output=True, text=True, timeout=1_800,
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    finally:
        pg.conn.execute(f"DROP DATABASE IF EXISTS {pg.quoted(database)} WITH (FORCE)")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        print(f"DBOS failed (status {proc.returncode}):\n{proc.stderr[-2000:]}")
        return None
    return json.loads(lines[-1])


# -- the table ---------------------------------------------------------------------------


class Table:
    """Rows of figure, measured, ceiling (raw), target, verdict (and with ``ratio``, the
    ratio to the ceiling after it)."""

    def __init__(self, ceiling: str = "raw LMDB (same run)", ratio: bool = False):
        self.head = ("figure", "measured", ceiling, *(["ratio"] if ratio else []), "target",
                     "")
        self.ratio = ratio
        self.rows: list[tuple[str, ...]] = []

    def add(self, what: str, measured: str, ceiling: str = "", target: str = "",
            ok: bool | None = None, ratio: str = "") -> None:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append((what, measured, ceiling, *([ratio] if self.ratio else []),
                          target, verdict))

    def print(self) -> None:
        widths = [max(len(r[i]) for r in [self.head, *self.rows])
                  for i in range(len(self.head))]
        for row in [self.head, tuple("-" * w for w in widths), *self.rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def runs_text(fig: dict) -> str:
    rates = fig["rates"]
    return f" (runs: {', '.join(f'{r:,.0f}' for r in rates)})" if len(rates) > 1 else ""


def sleeper_rows(table: Table, c: dict, live: bool) -> None:
    """(c)'s rows: creation rate, bytes per task, the workers' RSS."""
    first, last = c["rows"][0], c["rows"][-1]
    extra = last["count"] - first["count"]
    table.add("(c) tasks created (batches of 1,000 per txn)/s", f"{c['create_rate']:,.0f}")
    if live:
        table.add("(c) store bytes per sleeping task (file / live pages)",
                  f"{(last['file'] - first['file']) / extra:,.0f} / "
                  f"{(last['live'] - first['live']) / extra:,.0f}")
    else:
        table.add("(c) store bytes per sleeping task (pg_total_relation_size)",
                  f"{(last['file'] - first['file']) / extra:,.0f}")
    for key, label in (("held", "worker that put them to sleep"), ("fresh", "fresh worker")):
        lo, hi = first[key], last[key]
        growth = hi["RssAnon"] - lo["RssAnon"]
        table.add(f"(c) RSS of {label} at {first['count']:,} / {last['count']:,} asleep",
                  f"{mb(lo['VmRSS'])} / {mb(hi['VmRSS'])}, "
                  f"heap {mb(lo['RssAnon'])} / {mb(hi['RssAnon'])}",
                  "", "heap grows < 2 MB", growth < 2 * 2**20)


def postgres_table(p: dict, dbos: dict | None, dbos_missing: bool, size: dict) -> Table:
    table = Table("raw PostgreSQL (same run)", ratio=True)
    a = p["a"]
    table.add(f"(a) 1 task, {size['steps']:,} effects: steps/s", f"{a['rate']:,.0f}",
              f"{a['raw']:,.0f} synced commits/s", ">= 50%", a["rate"] / a["raw"] >= 0.5,
              f"{a['rate'] / a['raw']:.0%}")
    table.add("(a) step latency p50 / p99", f"{ms(a['p50'])} / {ms(a['p99'])}",
              f"{ms(1 / a['raw'])} per commit")
    n, s = size["tasks"], size["task_steps"]
    for label, fig, judged in (("2 worker processes", p["b2"], True),
                               (f"1 worker, batch {n} (one core)", p["b1"], False)):
        table.add(f"(b) {n} tasks x {s:,} effects, {label}: steps/s",
                  f"{fig['rate']:,.0f}{runs_text(fig)}", f"{p['raw_puts']:,.0f} rows/s",
                  ">= 10,000" if judged else f"{fig['rate'] / 10_000:.0%} of 10,000",
                  fig["rate"] >= 10_000 if judged else None,
                  f"{fig['rate'] / p['raw_puts']:.1%}")
    sleeper_rows(table, p["c"], live=False)
    if dbos is not None:
        table.add(f"DBOS 1 workflow, {size['dbos_steps']:,} steps: steps/s",
                  f"{dbos['one']:,.0f}", "", "", None, "")
        table.add("  Flowmetal (a) / DBOS", f"{a['rate'] / dbos['one']:.1f}x")
        table.add(f"DBOS {DBOS_WORKFLOWS} workflows x {size['dbos_workflow_steps']:,} steps "
                  "at once: steps/s", f"{dbos['many']:,.0f}")
        table.add("  Flowmetal (b), 2 worker processes / DBOS",
                  f"{p['b2']['rate'] / dbos['many']:.1f}x")
        table.add("  Flowmetal (b), 1 worker / DBOS", f"{p['b1']['rate'] / dbos['many']:.1f}x")
    elif dbos_missing:
        table.add("DBOS Transact", "not installed (pip install dbos to compare)")
    return table


def main(argv: list[str] | None = None) -> int:
    """Run every part and print the table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1])
    if argv[:1] == ["--dbos"]:
        return dbos_child(argv[1])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print where a step's time goes in (a) and (b)")
    parser.add_argument("--dir", help="where to make the stores (default: a temporary "
                                      "directory, removed afterwards)")
    parser.add_argument("--store", metavar="URL",
                        help="also run (a), (b), (c) on this PostgreSQL database "
                             "(postgresql://...), each run in a fresh schema")
    args = parser.parse_args(argv)
    if args.store is not None and not is_url(args.store):
        parser.error("--store takes a postgresql:// URL (LMDB stores always run)")
    size = QUICK if args.quick else FULL
    command = "python -m benchmarks.durable" + "".join(
        f" {shlex.quote(a)}" for a in argv)
    print(command)
    base()
    began = time.perf_counter()

    def timings() -> Timings | None:
        return Timings() if args.breakdown else None

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="flowmetal-bench-") as root:
        def where(name: str) -> str:
            return os.path.join(root, name)

        raw = Raw(where("raw"))
        synced, puts = raw.synced(size["raw_txns"]), raw.puts(size["raw_batches"])
        print(f"raw LMDB: {synced:,.0f} synced txns/s (one put each); {puts:,.0f} puts/s "
              f"({RAW_PUTS_PER_TXN:,} puts of {len(RAW_VALUE)} B per synced txn)")

        print(f"(a) one task, {size['steps']:,} effect steps (raw synced txns measured "
              "between slices of it) ...", flush=True)
        a = one_task(where("a"), size["steps"], raw, size["raw_txns"], timings())

        n, s, k = size["tasks"], size["task_steps"], size["repeats"]
        times = f", best of {k}" if k > 1 else ""
        print(f"(b) {n} tasks x {s:,} steps, one worker (batch {n}){times} ...", flush=True)
        puts = raw.puts(size["raw_batches"])
        b1 = best_of([many_tasks_in_process(where(f"b1-{i}"), n, s,
                                            timings() if i == 0 else None)
                      for i in range(k)])
        print(f"(b) {n} tasks x {s:,} steps, two worker processes (batch {n // 2}){times} ...",
              flush=True)
        b2 = best_of([many_tasks_processes(where(f"b2-{i}"), n, s, 2) for i in range(k)])

        counts = size["sleepers"]
        print(f"(c) {counts[-1]:,} sleeping tasks ...", flush=True)
        c = sleeping_tasks(where("c"), counts)

        print(f"(d) timers at {size['timer_rate']:,}/s for {size['timer_seconds']:g} s ...",
              flush=True)
        d = timers(where("d"), size["timer_rate"], size["timer_seconds"])

        print("(e) continuations at depth 1, 10, 100 ...", flush=True)
        e = continuation_bytes(where("e"), (1, 10, 100))
        raw.close()

    pg_figures = dbos = None
    dbos_missing = False
    if args.store is not None:
        pg = Postgres(args.store)
        try:
            pg_figures = postgres_parts(pg, size, timings)
            if dbos_available():
                dbos = dbos_parts(pg, size)
            else:
                dbos_missing = True
                print("DBOS: not installed (the dbos package is not importable)")
        finally:
            pg.close()

    table = Table()
    ratio = a["rate"] / a["raw"]
    table.add(f"(a) 1 task, {size['steps']:,} effects: steps/s", f"{a['rate']:,.0f}",
              f"{a['raw']:,.0f} synced txns/s")
    table.add("(a) ratio to raw synced commits", f"{ratio:.0%}", "", ">= 50%", ratio >= 0.5)
    table.add("(a) step latency p50 / p99", f"{ms(a['p50'])} / {ms(a['p99'])}",
              f"{ms(1 / a['raw'])} per txn")
    for label, fig, judged in (("2 worker processes", b2, True),
                               (f"1 worker, batch {n} (one core)", b1, False)):
        table.add(f"(b) {n} tasks x {s:,} effects, {label}: steps/s",
                  f"{fig['rate']:,.0f}{runs_text(fig)}", f"{puts:,.0f} puts/s",
                  ">= 20,000" if judged else f"{fig['rate'] / 20_000:.0%} of 20,000",
                  fig["rate"] >= 20_000 if judged else None)
    sleeper_rows(table, c, live=True)
    table.add(f"(d) {d['armed']:,} timers, due at {d['rate']:,.0f}/s: fired late p50 / p99",
              f"{ms(d['fired_p50'])} / {ms(d['fired_p99'])}")
    table.add("(d) task resumed (next step committed) late p50 / p99",
              f"{ms(d['resumed_p50'])} / {ms(d['resumed_p99'])}")
    for row in e:
        table.add(f"(e) continuation at depth {row['depth']}",
                  f"{row['bytes']:,} B, {row['frames']} frames")
    one, ten, hundred = (r["bytes"] for r in e)
    slope_low, slope_high = (ten - one) / 9, (hundred - ten) / 90
    linear = slope_high > 0 and abs(slope_low - slope_high) / slope_high < 0.25
    table.add("(e) bytes per frame, depth 1->10 / 10->100",
              f"{slope_low:.1f} / {slope_high:.1f}", "", "linear (within 25%)", linear)
    print()
    table.print()
    low, high = a["raw_range"]
    if high > 2 * low:
        print(f"note (a): raw synced txns/s varied {low:,.0f}-{high:,.0f} between slices (a "
              "shared disk?), so the ratio is noisy")
    if not d["armed_in_time"]:
        print("note (d): arming the timers ran past the first due time")
    if pg_figures is not None:
        print("\nPostgreSQL (each run in a fresh schema):")
        postgres_table(pg_figures, dbos, dbos_missing, size).print()
        low, high = pg_figures["a"]["raw_range"]
        if high > 2 * low:
            print(f"note (a): raw synced commits/s varied {low:,.0f}-{high:,.0f} between "
                  "slices, so the ratio is noisy")
    print(f"\n{command}: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
