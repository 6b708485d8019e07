"""Connectors and the control plane: HTTP requests through the outbox, task starts
through the API, callbacks.

    python -m benchmarks.connectors [--quick] [--dir DIR]

(a) HTTP requests per second made by tasks through the HTTP request connector against
    a local server in a process of its own, the connector inside a ``flowmetal worker``
    process and on its own (``flowmetal worker --no-http`` and ``flowmetal connector
    http``), and the same requests made directly with aiohttp in this process as the
    ceiling, measured in the same run.  Each figure is the best of ``repeat`` runs (the
    machine may be shared).  Target: >= 50% with 100 tasks.  Beside them, the CPU time
    a request costs: the worker's and the connector's processes in the best run, and
    this process making them directly (the target server's own share is in neither).
(b) Task starts per second through the control plane (``flowmetal serve`` and a
    ``flowmetal worker``, LMDB) of a deployed program, one client at a time, and the
    latency from sending the start to the task's first committed step (by the store's
    clock, which on LMDB is this host's), p50 and p99.  Target: p50 <= 20 ms.
(c) Callback requests delivered per second: tasks waiting on multi-use callbacks,
    requests posted to them 50 at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator

import aiohttp

from flowmetal.runtime import api
from flowmetal.store import open_store
from flowmetal.store.callbacks import PUBLIC_URL

FULL = {"tasks": 100, "requests": 20, "repeat": 3, "starts": 300, "callbacks": 20,
        "posts": 100}
QUICK = {"tasks": 20, "requests": 5, "repeat": 1, "starts": 30, "callbacks": 5, "posts": 10}

TARGET_SERVER = textwrap.dedent("""
    import sys
    from aiohttp import web
    async def ok(request):
        return web.Response(text="ok")
    app = web.Application()
    app.router.add_get("/ok", ok)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None,
                access_log=None)
""")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port}")


@contextlib.contextmanager
def process(*args: str) -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float | None:
    """The CPU time (user and system) process ``pid`` has used, where ``/proc`` says."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q / 100))]


# -- (a) HTTP requests through the connector ---------------------------------------------

async def direct(url: str, count: int, concurrency: int) -> tuple[float, float]:
    """Requests/s made directly with aiohttp, ``concurrency`` at a time, and the CPU
    seconds a request cost this process."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as s:
        async def one() -> None:
            async with s.get(url) as r:
                await r.read()
        await asyncio.gather(*(one() for _ in range(concurrency)))  # warm the pool
        started, cpu = time.perf_counter(), time.process_time()
        queue = iter(range(count))

        async def client() -> None:
            for _ in queue:
                await one()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return (count / (time.perf_counter() - started),
                (time.process_time() - cpu) / count)


def through_connector(location: str, url: str, tasks: int, requests: int,
                      alone: bool) -> tuple[float, float | None]:
    """Requests/s made by ``tasks`` tasks each making ``requests`` requests in turn, the
    connector in the worker or (``alone``) in a process of its own; and the CPU seconds
    a request cost the worker and the connector (None where ``/proc`` does not say)."""
    store = open_store(location)
    source = f'(dotimes [i {requests}] (http {{:url "{url}"}} :timeout 60))'
    worker = ["-m", "flowmetal", "--store", location, "worker", "--batch", "100"]
    with contextlib.ExitStack() as processes:
        pids = [processes.enter_context(process(*worker, *(["--no-http"] if alone else [])))
                .pid]
        if alone:
            pids.append(processes.enter_context(process("-m", "flowmetal", "--store",
                                                        location, "connector", "http")).pid)
        warm = api.start(store, f'(http {{:url "{url}"}} :timeout 60)', "warm.fm")
        while not store.get(warm).finished:  # the worker and its HTTP client are up
            time.sleep(0.02)
        started, cpu = time.perf_counter(), [cpu_seconds(pid) for pid in pids]
        ids = [api.start(store, source, f"h{i}.fm") for i in range(tasks)]
        left = list(ids)
        while left:
            time.sleep(0.01)
            with store.view() as view:  # the first unfinished one is looked at again
                while left and view.task(left[-1]).finished:
                    left.pop()
        seconds = time.perf_counter() - started
        spent = [cpu_seconds(pid) for pid in pids]
    bad = [t for t in ids if store.get(t).status != "done"]
    if bad:
        raise SystemExit(f"(a): {len(bad)} tasks did not finish well")
    store.close()
    used = None if None in cpu + spent else \
        sum(b - a for a, b in zip(cpu, spent)) / (tasks * requests)
    return tasks * requests / seconds, used


# -- (b) starts through the control plane ------------------------------------------------

def starts(location: str, count: int) -> dict:
    """Starts/s through the API, and the latency to each task's first committed step."""
    import requests as http

    store = open_store(location)
    token, _ = store.token_create("bench", "write")
    port = free_port()
    with process("-m", "flowmetal", "--store", location, "serve", "--listen",
                 f"127.0.0.1:{port}"), \
            process("-m", "flowmetal", "--store", location, "worker"):
        wait_for_port(port)
        time.sleep(1.0)
        session = http.Session()
        session.headers["Authorization"] = f"Bearer {token}"
        url = f"http://127.0.0.1:{port}/api/v1/tasks"
        r = session.post(f"http://127.0.0.1:{port}/api/v1/programs",
                         json={"name": "two-steps", "source": "(now) (now)"})
        if r.status_code != 201:
            raise SystemExit(f"(b): deploy: {r.status_code} {r.text}")
        sent: dict[str, float] = {}
        began = time.perf_counter()
        for _ in range(count):
            t0 = time.time()
            r = session.post(url, json={"program": "two-steps"})
            if r.status_code != 201:
                raise SystemExit(f"(b): {r.status_code} {r.text}")
            sent[r.json()["id"]] = t0
        rate = count / (time.perf_counter() - began)
        latencies = []
        end = time.monotonic() + 60
        for task_id, t0 in sent.items():
            while True:
                with store.view() as view:
                    first = next((e.at for _, e in view.log(task_id)
                                  if e.kind in ("answer", "done")), None)
                if first is not None:
                    break
                if time.monotonic() > end:
                    raise SystemExit("(b): tasks did not take their first step")
                time.sleep(0.01)
            latencies.append(first - t0)
    store.close()
    return {"rate": rate, "p50": pct(latencies, 50), "p99": pct(latencies, 99)}


# -- (c) callbacks ----------------------------------------------------------------------

def callbacks(location: str, tasks: int, posts: int) -> float:
    """Callback requests delivered per second."""
    store = open_store(location)
    port = free_port()
    store.set_setting(PUBLIC_URL, f"http://127.0.0.1:{port}")
    source = textwrap.dedent(f"""
        (def cb (callback :multi true :timeout 600))
        (println (:url cb))
        (dotimes [i {posts}] (await cb :timeout 600))
    """)
    ids = [api.start(store, source, f"c{i}.fm") for i in range(tasks)]
    with process("-m", "flowmetal", "--store", location, "serve", "--listen",
                 f"127.0.0.1:{port}"), \
            process("-m", "flowmetal", "--store", location, "worker"):
        wait_for_port(port)
        urls = []
        for task_id in ids:
            while True:
                with store.view() as view:
                    out = "".join(text for _, text in view.output(task_id))
                if out:
                    urls.append(out.strip())
                    break
                time.sleep(0.02)
        seconds = asyncio.run(post_all(urls, posts))
        while True:
            with store.view() as view:
                if all(view.task(t).finished for t in ids):
                    break
            time.sleep(0.02)
    store.close()
    return tasks * posts / seconds


async def post_all(urls: list[str], posts: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=50)) as s:
        jobs = iter([u for u in urls for _ in range(posts)])
        codes: list[int] = []

        async def client() -> None:
            for url in jobs:
                async with s.post(url, data=b"{}") as r:
                    codes.append(r.status)
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(50)))
        seconds = time.perf_counter() - started
    if any(c != 202 for c in codes):
        raise SystemExit(f"(c): {sum(c != 202 for c in codes)} posts were not delivered")
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Run the parts and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    parser.add_argument("--dir", help="where to make the stores (default: a temporary "
                                      "directory, removed afterwards)")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    print("python -m benchmarks.connectors" + (" --quick" if args.quick else "") +
          "  (load average " + " ".join(f"{x:.2f}" for x in os.getloadavg()) + ")")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="flowmetal-bench-") as root:
        port = free_port()
        with process("-c", TARGET_SERVER, str(port)):
            wait_for_port(port)
            url = f"http://127.0.0.1:{port}/ok"
            count = size["tasks"] * size["requests"]
            ceiling, direct_cpu = max(asyncio.run(direct(url, count, size["tasks"]))
                                      for _ in range(size["repeat"]))
            runs = {alone: max(through_connector(os.path.join(root, f"a{alone:d}{i}"), url,
                                                 size["tasks"], size["requests"], alone)
                               for i in range(size["repeat"]))
                    for alone in (False, True)}
            rates = {alone: rate for alone, (rate, _) in runs.items()}
        b = starts(os.path.join(root, "b"), size["starts"])
        c = callbacks(os.path.join(root, "c"), size["callbacks"], size["posts"])
    where = {False: "in the worker", True: "on its own"}
    rows = [
        (f"(a) HTTP requests/s, {size['tasks']} tasks x {size['requests']}, the "
         f"connector {where[alone]}", f"{rate:,.0f}",
         f"{ceiling:,.0f} direct (aiohttp, same run)", f"{rate / ceiling:.0%}", ">= 50%",
         "PASS" if rate / ceiling >= 0.5 else "FAIL")
        for alone, rate in rates.items()
    ] + [
        (f"(a) CPU per request, the connector {where[alone]} (the best run)",
         f"{used * 1e6:,.0f} us", f"{direct_cpu * 1e6:,.0f} us direct", "", "", "")
        for alone, (_, used) in runs.items() if used is not None
    ] + [
        ("(b) task starts/s through the API (one client)", f"{b['rate']:,.0f}", "", "",
         "", ""),
        ("(b) start to first committed step p50 / p99",
         f"{b['p50'] * 1000:.1f} ms / {b['p99'] * 1000:.1f} ms", "", "", "p50 <= 20 ms",
         "PASS" if b["p50"] <= 0.020 else "FAIL"),
        (f"(c) callback requests delivered/s ({size['callbacks']} tasks x "
         f"{size['posts']}, 50 at a time)", f"{c:,.0f}", "", "", "", ""),
    ]
    head = ("figure", "measured", "ceiling", "ratio", "target", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for row in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
