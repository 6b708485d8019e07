"""Sequence runs through the control plane: runs/s with no-op workers, and how long a
task event waits for its worker.

    python -m benchmarks.sequences [--quick] [--store postgresql://... | --no-postgres]
                                   [--dir DIR] [--runs N]

Every figure is measured with real processes: ``flowmetal serve`` (the control plane)
and one ``flowmetal worker`` (which runs the runs: each run is a durable task) on the
store, and two no-op worker processes (``python -m benchmarks.sequences --noop-worker
...``, aiohttp) that fetch and lock task events with ``POST
/api/v1/task-events/claim`` (a long poll, up to ``CLAIM_MAX`` events a claim, two
claims at a time per process) and answer each with ``.started`` and then ``.finished``
(result pass) at once.  The shipyard has one stage ``dev`` with the sequences ``one``
(one task) and ``three`` (three tasks in turn).  Each run is triggered with ``POST
/api/v1/event`` for a service of its own (``data.service`` = ``s<i>``), so that no run
queues behind another in the queue of its stage and service; the stage's
``concurrency`` stays 1.

(a) Runs per second and task events per second, from the first trigger sent to the
    last run finished (its ``done`` log entry, by the store's clock), with N runs
    triggered at once (eight POSTs in flight at a time): for ``one`` and for ``three``,
    each the best of ``repeat`` bursts on the same store (the machine may be shared).
    Also the rate the triggers themselves were accepted at (201s/s).
(b) Latency, from the runs' event logs: a task event's ``.triggered`` to its
    ``.started`` (the log entries of phase ``triggered`` and ``started``, both by the
    store's clock, read in the transaction of the step that offered the task and in
    the one that took the worker's ``.started``), p50/p99; and the time from sending
    ``POST /api/v1/event`` (this host's clock) to the run's first ``.triggered``,
    p50/p99.  Both during the bursts of (a) (every task event of every burst: queueing
    included), and with one run of ``three`` at a time (the next triggered when the
    last has finished): the latency of an idle system.
(c) What a claim costs with many task events waiting: the runs of ``one`` started in
    this process (``runs.trigger``, an in-process worker runs them until each waits on
    its task event, with no worker to take it), then a claim of a type none of them has
    (``task_events.claim`` in a write transaction, as the control plane runs it), the
    median of 20, at 100 and at 1,000 entries in the outbox.  The claim reads and
    decodes every outbox entry, so this grows with the outbox; a long-polling claim
    that finds nothing repeats every 20 ms.

LMDB runs in a temporary directory.  PostgreSQL runs when ``--store`` names a server,
else postgresql://127.0.0.1:5432/test is tried and skipped with a line saying so when
it cannot be reached (``--no-postgres`` skips it without trying); each store in a fresh
schema, dropped afterwards.  On PostgreSQL the store's clock is the server's ``now()``,
the start of the transaction, on this same host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import signal
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator

import aiohttp

from benchmarks.connectors import free_port, process, wait_for_port
from benchmarks.durable import Postgres, pct, run_until_idle
from flowmetal.runtime.worker import Worker
from flowmetal.sequences import runs, task_events
from flowmetal.sequences.runs import WORKERS
from flowmetal.sequences.shipyard import parse_shipyard
from flowmetal.sequences.shipyards import apply_shipyard
from flowmetal.store import is_url, open_store

FULL = {"runs": 200, "repeat": 3, "paced": 30, "outbox": (100, 1000)}
QUICK = {"runs": 10, "repeat": 1, "paced": 3, "outbox": (10, 50)}
DEFAULT_POSTGRES = "postgresql://127.0.0.1:5432/test"
PROJECT = "bench"
SEQUENCES = {"one": ["noop-a"], "three": ["noop-a", "noop-b", "noop-c"]}
TYPES = sorted({t for tasks in SEQUENCES.values() for t in tasks})
NOOP_WORKERS = 2        # no-op worker processes
CLAIMERS = 2            # claims in flight at a time in each
CLAIM_MAX = 50          # task events one claim takes at most
CLAIM_WAIT = 1          # seconds a claim waits for work (so the workers stop at once)
TRIGGERS_IN_FLIGHT = 8
PREFIX = "sh.keptn.event."


def shipyard() -> str:
    """The benchmark's shipyard: stage ``dev``, sequences ``one`` and ``three``."""
    sequences = "".join(
        f"        - name: {name}\n          tasks:\n" +
        "".join(f"            - name: {t}\n" for t in tasks)
        for name, tasks in SEQUENCES.items())
    return textwrap.dedent(f"""\
        apiVersion: spec.keptn.sh/0.2.3
        kind: Shipyard
        metadata:
          name: {PROJECT}
        spec:
          stages:
            - name: dev
              sequences:
        """) + textwrap.indent(sequences, "  ")


# -- the no-op worker (a process of its own) ---------------------------------------------

async def noop_worker(url: str, name: str, types: list[str]) -> int:
    """Claim task events of ``types`` and answer each with .started and .finished at
    once, until SIGTERM; print how many were done."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    headers = {"Authorization": f"Bearer {os.environ['FLOWMETAL_TOKEN']}"}
    done = refused = 0
    running: set[asyncio.Task] = set()
    async with aiohttp.ClientSession(
            url, headers=headers, connector=aiohttp.TCPConnector(limit=64),
            timeout=aiohttp.ClientTimeout(total=CLAIM_WAIT + 60)) as session:
        async def answer(triggered: dict, lock: str, phase: str, data: dict) -> bool:
            nonlocal refused
            task = triggered["type"][len(PREFIX):].rsplit(".", 1)[0]
            body = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": name,
                    "type": f"{PREFIX}{task}.{phase}", "triggeredid": triggered["id"],
                    "flowmetallock": lock, "data": data}
            async with session.post("/api/v1/event", json=body) as r:
                await r.read()
                if r.status != 200:
                    refused += 1
                return r.status == 200

        async def do(item: dict) -> None:
            nonlocal done
            triggered, lock = item["event"], item["lock"]
            with contextlib.suppress(TimeoutError, aiohttp.ClientError):
                if await answer(triggered, lock, "started", {}) and \
                        await answer(triggered, lock, "finished",
                                     {"result": "pass", "status": "succeeded"}):
                    done += 1

        async def claimer() -> None:
            body = {"worker": name, "types": types, "max": CLAIM_MAX, "lockSeconds": 60,
                    "waitSeconds": CLAIM_WAIT}
            while not stop.is_set():
                try:
                    async with session.post("/api/v1/task-events/claim", json=body) as r:
                        events = (await r.json())["events"] if r.status == 200 else []
                except (TimeoutError, aiohttp.ClientError):
                    await asyncio.sleep(0.1)
                    continue
                for item in events:
                    job = asyncio.create_task(do(item))
                    running.add(job)
                    job.add_done_callback(running.discard)

        claimers = [asyncio.create_task(claimer()) for _ in range(CLAIMERS)]
        await stop.wait()
        for job in (*claimers, *running):
            job.cancel()
        await asyncio.gather(*claimers, *running, return_exceptions=True)
    print(f"{name}: {done} task events done, {refused} answers refused", flush=True)
    return 0


# -- the measured parts ------------------------------------------------------------------

class Plane:
    """A store served by ``flowmetal serve``, run by a ``flowmetal worker``, and the
    no-op workers on it."""

    def __init__(self, location: str):
        self.location = location
        self.store = open_store(location)
        token, _ = self.store.token_create("sequence benchmark", "write")
        os.environ["FLOWMETAL_TOKEN"] = token  # the children's (process() passes ours on)
        self.headers = {"Authorization": f"Bearer {token}"}
        apply_shipyard(self.store, parse_shipyard(shipyard(), "shipyard.yaml"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.processes = contextlib.ExitStack()

    def __enter__(self) -> Plane:
        flowmetal = ["-m", "flowmetal", "--store", self.location]
        p = self.processes
        p.enter_context(process(*flowmetal, "serve", "--listen", f"127.0.0.1:{self.port}"))
        p.enter_context(process(*flowmetal, "worker", "--quiet"))
        wait_for_port(self.port)
        for i in range(NOOP_WORKERS):
            p.enter_context(process("-m", "benchmarks.sequences", "--noop-worker",
                                    self.url, f"noop-{i + 1}", *TYPES))
        end = time.monotonic() + 60
        while not self._subscribed():
            if time.monotonic() > end:
                raise SystemExit("the no-op workers did not claim within 60 s")
            time.sleep(0.1)
        for sequence in SEQUENCES:  # everything is up and warm: a run of each
            asyncio.run(self.burst(sequence, 1))
        return self

    def _subscribed(self) -> bool:
        seen = json.loads(self.store.setting(WORKERS) or "{}")
        return all(len(seen.get(t, {})) >= NOOP_WORKERS for t in TYPES)

    def __exit__(self, *exc: object) -> None:
        self.processes.close()
        self.store.close()

    async def burst(self, sequence: str, count: int, paced: bool = False) -> dict:
        """Trigger ``count`` runs of ``sequence`` (``paced``: one at a time, each after
        the last has finished) and wait for them all to finish; the figures."""
        sent: dict[str, float] = {}
        async with aiohttp.ClientSession(self.url, headers=self.headers) as session:
            numbers = iter(range(count))

            async def trigger() -> None:
                for i in numbers:
                    event = {"specversion": "1.0", "id": str(uuid.uuid4()),
                             "source": "benchmark",
                             "type": f"{PREFIX}dev.{sequence}.triggered",
                             "data": {"project": PROJECT, "service": f"s{i}"}}
                    t0 = time.time()
                    async with session.post("/api/v1/event", json=event) as r:
                        body = await r.json()
                        if r.status != 201:
                            raise SystemExit(f"trigger: {r.status} {body}")
                    sent[body["task"]] = t0
                    if paced:
                        await self.finished([body["task"]])
            began = time.time()
            await asyncio.gather(*(trigger() for _ in range(1 if paced else
                                                            TRIGGERS_IN_FLIGHT)))
            accepted = time.time() - began
        await self.finished(list(sent))
        return self.figures(sent, began, accepted, len(SEQUENCES[sequence]))

    async def finished(self, ids: list[str]) -> None:
        """Wait until these runs have finished."""
        left = list(ids)
        end = time.monotonic() + 120
        while True:
            with self.store.view() as view:  # the first unfinished one is looked at again
                while left and view.task(left[-1]).finished:
                    left.pop()
            if not left:
                return
            if time.monotonic() > end:
                raise SystemExit(f"{len(left)} runs did not finish within 120 s")
            await asyncio.sleep(0.005 if len(ids) == 1 else 0.05)

    def figures(self, sent: dict[str, float], began: float, accepted: float, tasks: int
                ) -> dict:
        """The rates and latencies of these runs, from their event logs."""
        offered, to_first, ends, bad = [], [], [], []
        with self.store.view() as view:
            for task_id, t0 in sent.items():
                rec = view.task(task_id)
                if str(rec.status) != "done":
                    bad.append(f"{task_id} {rec.status}")
                triggered, started, done = {}, {}, None
                for _, e in view.log(task_id):
                    if e.kind == "task-event":
                        phase = e.details.get("phase")
                        if phase == "triggered":
                            triggered.setdefault(e.details["request"], e.at)
                        elif phase == "started":
                            started.setdefault(e.details["request"], e.at)
                    elif e.kind == "done":
                        done = e.at
                if len(triggered) != tasks or set(started) != set(triggered) or \
                        done is None:
                    bad.append(f"{task_id}: {len(triggered)} triggered, {len(started)} "
                               f"started of {tasks}")
                    continue
                offered += [started[r] - at for r, at in triggered.items()]
                to_first.append(min(triggered.values()) - t0)
                ends.append(done)
        if bad:
            raise SystemExit("runs did not end well: " + "; ".join(bad[:5]))
        seconds = max(ends) - began
        return {"runs": len(sent), "seconds": seconds, "rate": len(sent) / seconds,
                "events": len(sent) * tasks / seconds, "accepted": len(sent) / accepted,
                "offered": offered, "to_first": to_first}


def claim_costs(location: str, counts: tuple[int, ...], label: str) -> dict[int, float]:
    """An empty claim's time (median of 20) with each count of task events waiting."""
    store = open_store(location)
    apply_shipyard(store, parse_shipyard(shipyard(), "shipyard.yaml"))
    out: dict[int, float] = {}
    made = 0
    for count in counts:
        print(f"{label}: a claim with {count:,} task events waiting ...", flush=True)
        for i in range(made, count):
            runs.trigger(store, "dev", "one", {"id": str(uuid.uuid4()), "data": {
                "project": PROJECT, "service": f"s{i}"}})
        made = count
        run_until_idle(Worker(store, poll=0.01))
        waiting = store.transact(lambda unit: sum(1 for _ in unit.t.outbox_items()))
        times = []
        for _ in range(20):
            t0 = time.perf_counter()
            store.transact(lambda unit: task_events.claim(unit, "bench", ["nobody"],
                                                          CLAIM_MAX, 60))
            times.append(time.perf_counter() - t0)
        out[waiting] = pct(times, 50)
    store.close()
    return out


def measure(location: str, scan_location: str, size: dict, label: str) -> dict:
    """Every figure: (a) and (b) on the store at ``location``, (c) on another."""
    out: dict = {}
    with Plane(location) as plane:
        for sequence in SEQUENCES:
            bursts = []
            for i in range(size["repeat"]):
                print(f"{label}: {size['runs']} runs of {sequence} at once "
                      f"({i + 1}/{size['repeat']}) ...", flush=True)
                bursts.append(asyncio.run(plane.burst(sequence, size["runs"])))
            best = max(bursts, key=lambda b: b["rate"])
            out[sequence] = {**best, "rates": [b["rate"] for b in bursts],
                             "offered": [x for b in bursts for x in b["offered"]],
                             "to_first": [x for b in bursts for x in b["to_first"]]}
        print(f"{label}: {size['paced']} runs of three, one at a time ...", flush=True)
        out["paced"] = asyncio.run(plane.burst("three", size["paced"], paced=True))
    out["claims"] = claim_costs(scan_location, size["outbox"], label)
    return out


# -- the report --------------------------------------------------------------------------

def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def p50_p99(values: list[float]) -> str:
    return f"{ms(pct(values, 50))} / {ms(pct(values, 99))} (n={len(values)})"


def report(label: str, f: dict, size: dict) -> None:
    """Print the figures of one store."""
    rows = []
    for sequence, tasks in SEQUENCES.items():
        b = f[sequence]
        best = f", best of {len(b['rates'])}: " + " ".join(
            f"{r:,.1f}" for r in b["rates"]) if len(b["rates"]) > 1 else ""
        rows += [
            (f"(a) {b['runs']} runs of {sequence} ({len(tasks)} task"
             f"{'s' if len(tasks) > 1 else ''}): runs/s",
             f"{b['rate']:,.1f}{best}"),
            (f"(a) {b['runs']} runs of {sequence}: task events/s",
             f"{b['events']:,.1f} ({b['seconds']:.2f} s first trigger to last finished)"),
            (f"(a) {b['runs']} runs of {sequence}: triggers accepted/s",
             f"{b['accepted']:,.1f}"),
        ]
    for sequence in SEQUENCES:
        b = f[sequence]
        rows += [(f"(b) during the bursts of {sequence}: .triggered to .started p50 / p99",
                  p50_p99(b["offered"])),
                 (f"(b) during the bursts of {sequence}: POST to first .triggered "
                  "p50 / p99", p50_p99(b["to_first"]))]
    p = f["paced"]
    rows += [("(b) one run of three at a time: .triggered to .started p50 / p99",
              p50_p99(p["offered"])),
             ("(b) one run of three at a time: POST to first .triggered p50 / p99",
              p50_p99(p["to_first"])),
             ("(b) one run of three at a time: runs/s", f"{p['rate']:,.1f}")]
    rows += [(f"(c) a claim finding nothing, {waiting:,} entries in the outbox",
              f"{seconds * 1000:.2f} ms") for waiting, seconds in f["claims"].items()]
    print(f"\n{label}:")
    width = max(len(r[0]) for r in rows)
    for what, measured in rows:
        print(f"  {what.ljust(width)}  {measured}")


@contextlib.contextmanager
def postgres(url: str | None, explicit: bool) -> Iterator[Postgres | None]:
    """The PostgreSQL server to run on, or None (saying why) when it cannot be reached."""
    import psycopg

    try:
        pg = Postgres(url)
    except psycopg.Error as exc:
        why = " ".join(str(exc).split())
        if explicit:
            raise SystemExit(f"PostgreSQL at {url}: {why}") from None
        print(f"PostgreSQL: skipped, {url} cannot be reached ({why}); give --store URL "
              "to run it", flush=True)
        yield None
        return
    try:
        yield pg
    finally:
        pg.close()


def main(argv: list[str] | None = None) -> int:
    """Run the parts and print the figures."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--noop-worker"]:
        url, name, *types = argv[1:]
        return asyncio.run(noop_worker(url, name, types))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--store", metavar="URL",
                        help="the PostgreSQL database to run on as well (default: try "
                             f"{DEFAULT_POSTGRES}), each run in a fresh schema")
    parser.add_argument("--no-postgres", action="store_true",
                        help="LMDB only: do not try PostgreSQL")
    parser.add_argument("--dir", help="where to make the LMDB store (default: a temporary "
                                      "directory, removed afterwards)")
    parser.add_argument("--runs", type=int, help="runs per burst (default 200, --quick 10)")
    args = parser.parse_args(argv)
    if args.store is not None and not is_url(args.store):
        parser.error("--store takes a postgresql:// URL (LMDB always runs)")
    if args.store is not None and args.no_postgres:
        parser.error("--store and --no-postgres exclude each other")
    size = dict(QUICK if args.quick else FULL)
    if args.runs:
        size["runs"] = args.runs
    command = "python -m benchmarks.sequences" + "".join(f" {shlex.quote(a)}" for a in argv)
    print(f"{command}  (load average " +
          " ".join(f"{x:.2f}" for x in os.getloadavg()) + ")", flush=True)
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        pg = None if args.no_postgres else stack.enter_context(  # reached first, or skipped
            postgres(args.store or DEFAULT_POSTGRES, args.store is not None))
        with tempfile.TemporaryDirectory(dir=args.dir, prefix="flowmetal-bench-") as root:
            lmdb = measure(os.path.join(root, "store"), os.path.join(root, "scan"), size,
                           "LMDB")
        report("LMDB (fsync on)", lmdb, size)
        if pg is None and not args.no_postgres:
            print(f"\nPostgreSQL: skipped ({DEFAULT_POSTGRES} cannot be reached)")
        if pg is not None:
            with pg.fresh("seq") as url, pg.fresh("scan") as scan:
                figures = measure(url, scan, size, "PostgreSQL")
            s = pg.settings
            report(f"PostgreSQL {s['server_version']} (fsync {s['fsync']}, "
                   f"synchronous_commit {s['synchronous_commit']}; a fresh schema)",
                   figures, size)
    print(f"\n{command}: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
