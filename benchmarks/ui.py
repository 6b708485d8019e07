"""The web UI with 100,000 tasks in an LMDB store.

    python -m benchmarks.ui [--quick] [--dir DIR]

A ``flowmetal serve`` process and a ``flowmetal worker`` process on a store of
100,000 tasks (``--quick``: 10,000) asleep in ``(sleep 3600)``, and one task echoing the
messages it receives.  Through a signed-in session (the sign-in form):

(a) the time to answer the task list page (newest first, 50 rows; the counts come over
    the event stream, never with the page), p50 and p99, and in the same run the time to
    count the tasks by status (``view.count()``, every record read), which is why the
    page does not wait for the counts; also the list filtered by a status few tasks
    have (the store scans records in id order until the page is full);
(b) the time to answer one task's page (its frames, timeline, output, source), p50/p99;
(c) the delay from a committed step to its log entry arriving over the task page's
    event stream (the step's commit time is its ``request`` entry's, by the store's
    clock: this host's, on LMDB), p50 and p99.  Targets: (a) and (b) <= 100 ms p50, (c)
    <= 500 ms.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import tempfile
import threading
import time

import requests

from flowmetal.store import open_store

from .connectors import free_port, pct, process, wait_for_port
from .durable import create_tasks

ECHO = "(loop [i 0] (let [m (receive)] (print i m) (recur (inc i))))"
FULL = {"tasks": 100_000, "pages": 100, "messages": 60}
QUICK = {"tasks": 10_000, "pages": 30, "messages": 15}


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def timed(session: requests.Session, url: str, count: int) -> list[float]:
    """Seconds to answer each of ``count`` GETs of ``url`` (after one to warm up)."""
    session.get(url, timeout=60).raise_for_status()
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        r = session.get(url, timeout=60)
        out.append(time.perf_counter() - t0)
        r.raise_for_status()
    return out


def wait_all_asleep(store, count: int) -> None:
    end = time.monotonic() + 600
    while True:
        with store.view() as view:
            found = view.count()
        if found.get("waiting", 0) >= count:
            return
        if time.monotonic() > end:
            raise SystemExit(f"the tasks did not all fall asleep: {found}")
        time.sleep(1.0)


def follow(session: requests.Session, url: str, events: queue.Queue) -> None:
    """Put each ``log`` event's entry of the stream at ``url`` in ``events`` with the
    time it arrived."""
    with session.get(url, stream=True, timeout=600,
                     headers={"Accept": "text/event-stream"}) as r:
        kind = None
        for line in r.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind == "log":
                events.put((time.time(), json.loads(line[6:])["entry"]))
            elif line.startswith("data: ") and kind == "end":
                return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ui", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10,000 tasks and fewer samples")
    p.add_argument("--dir", help="where to make the store (default: a temporary folder)")
    args = p.parse_args(argv)
    size = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        location = f"{work}/store"
        store = open_store(location, create=True)
        print(f"making {size['tasks']:,} tasks ...", flush=True)
        create_tasks(store, "(sleep 3600)", "sleeper.fm", size["tasks"])
        token, _ = store.token_create("bench", "write")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with process("-m", "flowmetal", "--store", location, "worker"):
            print("putting them to sleep ...", flush=True)
            wait_all_asleep(store, size["tasks"])
            with process("-m", "flowmetal", "--store", location, "serve", "--listen",
                         f"127.0.0.1:{port}"):
                wait_for_port(port)
                figures = measure(store, base, token, size)
        store.close()
    print()
    rows = [
        (f"(a) list page, {size['tasks']:,} tasks: p50 / p99",
         f"{ms(figures['list_p50'])} / {ms(figures['list_p99'])}", "<= 100 ms p50",
         figures["list_p50"] <= 0.1),
        ("(a) counting them by status (view.count), best of 3", ms(figures["count"]), "", None),
        ("(a) list filtered by a rare status: p50",
         ms(figures["rare_p50"]), "", None),
        ("(b) task page: p50 / p99", f"{ms(figures['task_p50'])} / {ms(figures['task_p99'])}",
         "<= 100 ms p50", figures["task_p50"] <= 0.1),
        ("(c) committed step -> task page's stream: p50 / p99",
         f"{ms(figures['sse_p50'])} / {ms(figures['sse_p99'])}", "<= 500 ms",
         figures["sse_p99"] <= 0.5),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value, target, ok in rows:
        verdict = "" if ok is None else ("ok" if ok else "MISSED")
        print(f"{label:<{width}}  {value:>22}  {target:<14} {verdict}")
    return 0


def measure(store, base: str, token: str, size: dict) -> dict:
    """The figures, with the server and the worker running."""
    from flowmetal.runtime import api

    session = requests.Session()
    r = session.post(f"{base}/signin", data={"token": token, "next": "/"}, timeout=30)
    if r.status_code != 200 or "/signin" in r.url:
        raise SystemExit(f"signing in failed: {r.status_code}")
    counts = []
    for _ in range(3):
        t0 = time.perf_counter()
        with store.view() as view:
            view.count()
        counts.append(time.perf_counter() - t0)
    echo = api.start(store, ECHO, "echo.fm")
    end = time.monotonic() + 30
    while str(api.get(store, echo).status) != "waiting":
        if time.monotonic() > end:
            raise SystemExit("the echo task did not start")
        time.sleep(0.02)
    print("(a) list pages ...", flush=True)
    listing = timed(session, f"{base}/", size["pages"])
    rare = timed(session, f"{base}/?status=runnable", max(5, size["pages"] // 10))
    print("(c) steps to the task page's stream ...", flush=True)
    page = session.get(f"{base}/tasks/{echo}", timeout=30).text
    stream = re.search(r'data-events="([^"]+)"', page).group(1).replace("&amp;", "&")
    events: queue.Queue = queue.Queue()
    reader = threading.Thread(target=follow, args=(session, base + stream, events),
                              daemon=True)
    reader.start()
    time.sleep(0.5)
    auth = {"Authorization": f"Bearer {token}"}
    delays = []
    for i in range(size["messages"]):
        r = requests.post(f"{base}/api/v1/tasks/{echo}/messages", json={"json": i},
                          headers=auth, timeout=30)
        r.raise_for_status()
        while True:
            arrived, entry = events.get(timeout=30)
            if entry["kind"] == "request" and entry["details"].get("op") == "next-message":
                delays.append(arrived - entry["at"])
                break
        time.sleep(0.05)
    print("(b) task pages ...", flush=True)
    task = timed(session, f"{base}/tasks/{echo}", size["pages"])
    api.cancel(store, echo)
    reader.join(30)
    return {"list_p50": pct(listing, 50), "list_p99": pct(listing, 99),
            "rare_p50": pct(rare, 50), "count": min(counts),
            "task_p50": pct(task, 50), "task_p99": pct(task, 99),
            "sse_p50": pct(delays, 50), "sse_p99": pct(delays, 99)}


if __name__ == "__main__":
    raise SystemExit(main())
