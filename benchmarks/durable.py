"""Durable tasks: step rate, group commit, sleeping tasks, timer lateness, state size.

    python -m benchmarks.durable [--quick] [--breakdown] [--dir DIR]

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

``--quick`` runs every part at a small size (a smoke run); ``--breakdown`` also prints
where the time of a step goes in (a) and (b).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import lmdb

from flowmetal.codec import decode_machine
from flowmetal.interpreter import Session, base
from flowmetal.runtime import api
from flowmetal.runtime import worker as worker_module
from flowmetal.runtime.records import new_task_id, new_task_record
from flowmetal.runtime.steps import Tasks, add_task, post, save_program
from flowmetal.runtime.worker import Worker, tune_gc
from flowmetal.store import LmdbStore
from flowmetal.values import Vector, sym

COMMAND_LINE_ARGS = sym("*command-line-args*")
FILE = sym("*file*")

FULL = {"steps": 10_000, "tasks": 100, "task_steps": 1_000, "sleepers": (10_000, 100_000),
        "timer_rate": 10_000, "timer_seconds": 2.0, "raw_txns": 3_000, "raw_batches": 200,
        "repeats": 3}
QUICK = {"steps": 1_000, "tasks": 100, "task_steps": 50, "sleepers": (1_000, 5_000),
         "timer_rate": 10_000, "timer_seconds": 0.2, "raw_txns": 1_000, "raw_batches": 50,
         "repeats": 1}
RAW_PUTS_PER_TXN = 1_000
SLEEPER_BATCH = 250  # batch of the worker that puts the sleepers to sleep
IDLE_ROUNDS = 20  # rounds that find nothing runnable, before RSS is read
RAW_VALUE = b"x" * 256


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


def live_bytes(store: LmdbStore) -> int:
    """Bytes of the store's B-tree pages in use (all tables), excluding free pages."""
    def pages(stat: dict) -> int:
        return stat["branch_pages"] + stat["leaf_pages"] + stat["overflow_pages"]

    env = store.env
    total = pages(env.stat())
    with env.begin() as txn:
        for db in store.dbs.values():
            total += pages(txn.stat(db))
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


def create_tasks(store: LmdbStore, source: str, file: str, count: int,
                 args_for: Callable[[int], list] | None = None,
                 per_txn: int = 1_000) -> list[str]:
    """Submit ``count`` runnable tasks of one program, ``per_txn`` to a write transaction,
    with the records ``api.start`` writes; their ids."""
    session = Session()
    program = session.load(source, file)
    session.globals[FILE] = file
    ids: list[str] = []
    taken: set[str] = set()
    while len(ids) < count:
        with store.write() as txn:
            tasks = Tasks(txn)
            save_program(txn, program)
            now = time.time()
            for i in range(len(ids), min(count, len(ids) + per_txn)):
                session.globals[COMMAND_LINE_ARGS] = Vector(args_for(i) if args_for else [])
                task_id = new_task_id()
                while task_id in taken or txn.get_task(task_id) is not None:
                    task_id = new_task_id()
                taken.add(task_id)
                add_task(tasks, new_task_record(task_id, program), session.machine(program),
                         now, file=file)
                ids.append(task_id)
            tasks.flush()
    return ids


def statuses(store: LmdbStore) -> Counter:
    """How many tasks have each status."""
    with store.read() as txn:
        return Counter(rec["status"] for rec in txn.tasks())


# -- worker processes --------------------------------------------------------------------


def child(config: str) -> int:
    """A worker process driven by the parent through stdin/stdout, one JSON line each:
    ``run`` (work until nothing is left), ``settle`` (rounds until nothing is runnable,
    then idle rounds; reports RSS), ``quit``."""
    options = json.loads(config)
    store = LmdbStore(options["store"])
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
    worker.round(stopping=True)
    return 0


class Child:
    """A worker process (see ``child``)."""

    def __init__(self, store_path: str, batch: int):
        config = json.dumps({"store": store_path, "batch": batch})
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
    """Wall time spent in the worker's phases, by name."""

    TOP = ("decode continuation", "run machine", "encode continuation",
           "write txn: python inside", "write txn: LMDB commit (write + fsync)")
    INSIDE = ("commit_step", "fire_timers", "lease")

    def __init__(self):
        self.total: Counter = Counter()

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Wrap the worker module's phase functions with timers while inside."""
        saved = []

        def wrap(owner, name, label):
            fn = getattr(owner, name, None)
            if fn is None:
                return
            total = self.total

            def timed(*args, **kwargs):
                start = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    total[label] += time.perf_counter() - start

            saved.append((owner, name, fn))
            setattr(owner, name, timed)

        wrap(worker_module, "decode_machine", "decode continuation")
        wrap(worker_module.Worker, "_slice", "run machine")
        wrap(worker_module.Image, "encode", "encode continuation")
        wrap(worker_module, "commit_step", "commit_step")
        wrap(worker_module, "fire_timers", "fire_timers")
        wrap(worker_module.Worker, "_lease", "lease")
        try:
            yield
        finally:
            for owner, name, fn in reversed(saved):
                setattr(owner, name, fn)

    def store(self, store: LmdbStore) -> TimedStore:
        return TimedStore(store, self.total)

    def report(self, steps: int, wall: float) -> None:
        def line(label: str, seconds: float) -> None:
            print(f"      {label:<42} {seconds / steps * 1e6:8.1f}")

        print(f"    where a step's {wall / steps * 1e6:.0f} us go (us per step):")
        for label in self.TOP:
            if label in self.total:
                line(label, self.total[label])
            if label == "write txn: python inside":
                for inner in self.INSIDE:
                    if inner in self.total:
                        line("  " + inner, self.total[inner])
        line("other", wall - sum(self.total[label] for label in self.TOP))


class TimedStore:
    """A store whose write transactions are timed: the work inside, and the commit."""

    def __init__(self, store: LmdbStore, total: Counter):
        self.inner, self.total = store, total

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    @contextmanager
    def write(self):
        with self.inner.write() as txn:
            start = time.perf_counter()
            yield txn
            self.total["write txn: python inside"] += time.perf_counter() - start
            start = time.perf_counter()
        self.total["write txn: LMDB commit (write + fsync)"] += time.perf_counter() - start


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


def one_task(path: str, steps: int, raw: Raw, raw_txns: int,
             timings: Timings | None, segments: int = 50) -> dict:
    """One task making ``steps`` effect steps, one worker, a commit per step.  The raw
    synced-commit rate is measured in ``segments`` slices between slices of the run, so
    both see the same disk."""
    store = LmdbStore(path)
    task_id = api.start(store, f"(dotimes [i {steps}] (now))", "one-task.fm")
    worker = Worker(timings.store(store) if timings else store, batch=1)
    worker.round()  # loads the program and runs the first step
    os.sync()  # start with no earlier part's writes still going to the disk
    raw.synced_count, raw.synced_time = 0, 0.0
    gaps: list[float] = []
    every = max(1, steps // segments)
    raw_rates = []
    more = True
    with timings.installed() if timings else nullcontext():
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
    rec = api.get(store, task_id)
    if rec["status"] != "done":
        raise SystemExit(f"(a): the task ended {rec['status']}")
    wall = sum(gaps)
    if timings:
        timings.report(len(gaps), wall)
    return {"steps": len(gaps), "rate": len(gaps) / wall, "p50": pct(gaps, 50),
            "p99": pct(gaps, 99), "raw": raw.synced_count / raw.synced_time,
            "raw_range": (min(raw_rates), max(raw_rates))}


# -- (b) many tasks, group commit --------------------------------------------------------

LOOP = "(dotimes [i {n}] (now))"


def many_tasks_in_process(path: str, tasks: int, steps: int, timings: Timings | None) -> dict:
    """``tasks`` tasks of ``steps`` effect steps each, one worker with batch = tasks."""
    store = LmdbStore(path)
    create_tasks(store, LOOP.format(n=steps), "many.fm", tasks)
    tune_gc()  # as `flowmetal worker` does
    worker = Worker(timings.store(store) if timings else store, batch=tasks)
    os.sync()  # start with no earlier part's writes still going to the disk
    start = time.perf_counter()
    with timings.installed() if timings else nullcontext():
        worker.run(idle_exit=True)
    wall = time.perf_counter() - start
    total = _steps_done(store, tasks)
    if timings:
        timings.report(total, wall)
    return {"steps": total, "rate": total / wall}


def many_tasks_processes(path: str, tasks: int, steps: int, processes: int) -> dict:
    """The same load shared by ``processes`` worker processes (batch tasks/processes)."""
    store = LmdbStore(path)
    create_tasks(store, LOOP.format(n=steps), "many.fm", tasks)
    children = [Child(path, max(1, tasks // processes)) for _ in range(processes)]
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
    return {"steps": total, "rate": total / wall}


def best_of(runs: list[dict]) -> dict:
    """The fastest of several runs of one figure, with every run's rate."""
    best = max(runs, key=lambda r: r["rate"])
    return {**best, "rates": [r["rate"] for r in runs]}


def _steps_done(store: LmdbStore, tasks: int) -> int:
    with store.read() as txn:
        records = list(txn.tasks())
    bad = [r["status"] for r in records if r["status"] != "done"]
    if len(records) != tasks or bad:
        raise SystemExit(f"(b): {len(records)} tasks, not done: {Counter(bad)}")
    return sum(r["steps"] for r in records)


# -- (c) sleeping tasks ------------------------------------------------------------------


def sleeping_tasks(path: str, counts: tuple[int, ...]) -> dict:
    """Tasks asleep in (sleep 3600): creation rate, store bytes per task, and the RSS of
    a worker process that put them to sleep and holds them, at each count; also the RSS
    of a fresh worker process at each count."""
    store = LmdbStore(path)
    holder = Child(path, SLEEPER_BATCH)
    rows = []
    created, create_time = 0, 0.0
    try:
        for count in counts:
            start = time.perf_counter()
            create_tasks(store, "(sleep 3600)", "sleeper.fm", count - created)
            create_time += time.perf_counter() - start
            created = count
            held = holder.ask("settle")
            fresh = Child(path, SLEEPER_BATCH)
            try:
                fresh_mem = fresh.ask("settle")
            finally:
                fresh.close()
            found = statuses(store)
            if found.get("waiting") != count:
                raise SystemExit(f"(c): expected {count} sleeping tasks, found {dict(found)}")
            rows.append({"count": count, "file": store.size_bytes(), "live": live_bytes(store),
                         "held": held, "fresh": fresh_mem})
    finally:
        holder.close()
    return {"rows": rows, "create_rate": created / create_time}


# -- (d) timers --------------------------------------------------------------------------

TIMER = "(let [[t0 offset] (receive)] (sleep (max 0 (- (+ t0 offset) (now)))))"


def timers(path: str, rate: int, seconds: float) -> dict:
    """``rate * seconds`` tasks, each sleeping until its own due time; due times spaced
    1/rate apart.  Lateness = when the timer fired (and when the task's next step
    committed) minus when it was due."""
    count = int(rate * seconds)
    store = LmdbStore(path)
    ids = create_tasks(store, TIMER, "timer.fm", count)
    # Every task runs in each round of this worker, so each timer is armed the same time
    # after its task's (now) answer, and the due times keep their spacing.
    arming = Worker(store, batch=count)
    start = time.perf_counter()
    run_until_idle(arming)  # all wait in receive
    round_trip = time.perf_counter() - start
    first_due = time.time() + 1.0 + 3 * round_trip + count * 100e-6
    for chunk in range(0, count, 1_000):
        with store.write() as txn:
            tasks = Tasks(txn)
            now = time.time()
            for i in range(chunk, min(count, chunk + 1_000)):
                post(tasks, tasks.get(ids[i]), Vector([first_due, i / rate]), None, now)
            tasks.flush()
    run_until_idle(arming)  # (now), then (sleep ..)
    armed_at = time.time()
    due = {}
    with store.read() as txn:
        for task_id in ids:
            rec = txn.get_task(task_id)
            waiting = rec["waiting"] if rec["status"] == "waiting" else None
            if waiting and waiting["op"] == "sleep":
                due[task_id] = (waiting["until"], waiting["request"])
    Worker(store, batch=100).run(idle_exit=True)
    fired, resumed = [], []
    with store.read() as txn:
        for task_id, (when, request) in due.items():
            events = [e for _, e in txn.log_items(task_id)]
            fired += [e["at"] - when for e in events
                      if e["kind"] == "answer" and e.get("request") == request]
            resumed += [e["at"] - when for e in events if e["kind"] == "done"]
    if len(fired) != len(due) or len(resumed) != len(due):
        raise SystemExit(f"(d): {len(due)} timers, {len(fired)} fired, {len(resumed)} done")
    dues = sorted(when for when, _ in due.values())
    span = dues[-1] - dues[0] if len(dues) > 1 else 0.0
    return {"count": count, "armed": len(due), "armed_in_time": armed_at < first_due,
            "rate": (len(dues) - 1) / span if span else float("nan"),
            "fired_p50": pct(fired, 50), "fired_p99": pct(fired, 99),
            "resumed_p50": pct(resumed, 50), "resumed_p99": pct(resumed, 99)}


# -- (e) continuation size ---------------------------------------------------------------

DEEP = """
(defn down [n] (if (= n 0) (do (sleep 3600) 0) (+ 1 (down (- n 1)))))
(down {depth})"""


def continuation_bytes(path: str, depths: tuple[int, ...]) -> list[dict]:
    """Bytes of the stored continuation of a task asleep at the bottom of a recursion."""
    store = LmdbStore(path)
    ids = {d: api.start(store, DEEP.format(depth=d), f"deep{d}.fm") for d in depths}
    run_until_idle(Worker(store, batch=len(depths)))
    out = []
    with store.read() as txn:
        for depth, task_id in ids.items():
            cont = txn.get_cont(task_id)
            m = decode_machine(cont, base().globals)
            frames, k = 0, m.k
            while k is not None:
                frames, k = frames + 1, k[1]
            out.append({"depth": depth, "bytes": len(cont), "frames": frames,
                        "status": txn.get_task(task_id)["status"]})
    return out


# -- the table ---------------------------------------------------------------------------


class Table:
    """Rows of figure, measured, ceiling (raw LMDB), target, verdict."""

    def __init__(self):
        self.rows: list[tuple[str, str, str, str, str]] = []

    def add(self, what: str, measured: str, ceiling: str = "", target: str = "",
            ok: bool | None = None) -> None:
        verdict = "" if ok is None else ("PASS" if ok else "FAIL")
        self.rows.append((what, measured, ceiling, target, verdict))

    def print(self) -> None:
        head = ("figure", "measured", "raw LMDB (same run)", "target", "")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        for row in [head, tuple("-" * w for w in widths), *self.rows]:
            print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def main(argv: list[str] | None = None) -> int:
    """Run every part and print the table."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        return child(argv[1])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--breakdown", action="store_true",
                        help="also print where a step's time goes in (a) and (b)")
    parser.add_argument("--dir", help="where to make the stores (default: a temporary "
                                      "directory, removed afterwards)")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    command = "python -m benchmarks.durable" + "".join(
        f" {shlex.quote(a)}" for a in argv)
    print(command)
    base()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="flowmetal-bench-") as root:
        def where(name: str) -> str:
            return os.path.join(root, name)

        def timings() -> Timings | None:
            return Timings() if args.breakdown else None

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

    table = Table()
    ratio = a["rate"] / a["raw"]
    table.add(f"(a) 1 task, {size['steps']:,} effects: steps/s", f"{a['rate']:,.0f}",
              f"{a['raw']:,.0f} synced txns/s")
    table.add("(a) ratio to raw synced commits", f"{ratio:.0%}", "", ">= 50%", ratio >= 0.5)
    table.add("(a) step latency p50 / p99", f"{ms(a['p50'])} / {ms(a['p99'])}",
              f"{ms(1 / a['raw'])} per txn")
    for label, fig, judged in (("2 worker processes", b2, True),
                               (f"1 worker, batch {n} (one core)", b1, False)):
        runs = f" (runs: {', '.join(f'{r:,.0f}' for r in fig['rates'])})" \
            if len(fig["rates"]) > 1 else ""
        table.add(f"(b) {n} tasks x {s:,} effects, {label}: steps/s",
                  f"{fig['rate']:,.0f}{runs}", f"{puts:,.0f} puts/s",
                  ">= 20,000" if judged else f"{fig['rate'] / 20_000:.0%} of 20,000",
                  fig["rate"] >= 20_000 if judged else None)
    first, last = c["rows"][0], c["rows"][-1]
    extra = last["count"] - first["count"]
    table.add("(c) tasks created (batches of 1,000 per txn)/s", f"{c['create_rate']:,.0f}")
    table.add("(c) store bytes per sleeping task (file / live pages)",
              f"{(last['file'] - first['file']) / extra:,.0f} / "
              f"{(last['live'] - first['live']) / extra:,.0f}")
    for key, label in (("held", "worker that put them to sleep"), ("fresh", "fresh worker")):
        lo, hi = first[key], last[key]
        growth = hi["RssAnon"] - lo["RssAnon"]
        table.add(f"(c) RSS of {label} at {first['count']:,} / {last['count']:,} asleep",
                  f"{mb(lo['VmRSS'])} / {mb(hi['VmRSS'])}, "
                  f"heap {mb(lo['RssAnon'])} / {mb(hi['RssAnon'])}",
                  "", "heap grows < 2 MB", growth < 2 * 2**20)
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
    print(f"\n{command}: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
