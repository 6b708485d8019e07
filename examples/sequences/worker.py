#!/usr/bin/env python3
"""A Flowmetal sequence worker in plain Python (the standard library only).

    FLOWMETAL_TOKEN=fm_... python3 worker.py SERVER NAME TYPE [TYPE...] [options]

SERVER is a control plane (``flowmetal serve``), e.g. http://127.0.0.1:8400; NAME names
this worker in locks and listings; the TYPEs are the task types it serves, of these:

``checknumber``
    passes when ``data.number`` is a number from the task's ``min`` to its ``max``
    property (defaults 0 and 100), fails otherwise; the output is
    ``{"number", "min", "max", "inRange"}``.
``extract-metadata``
    the title, author, place, words and a digest of ``data.document``
    (``{"title", "author", "place", "text"}``).
``geolookup``
    the coordinates of the place found by ``extract-metadata``, from a small table
    (a place it does not know is a ``warning``).
``author-search``
    an author id and a count of works, derived from the author's name.

The loop: a long-polling claim (``POST /api/v1/task-events/claim``, which locks each
event to this worker), then for each ``sh.keptn.event.<task>.triggered`` event a
``.started``, a ``.status.changed`` heartbeat every third of the lock while it works
(each extends the lock), and a ``.finished`` with ``result`` and ``status`` and the
output under ``data.<task>``.  A 409 (the lock expired, another worker has the task) or
a 410 (the run was paused or aborted, or timed out) at any answer abandons the task.

Options: ``--lock-seconds S`` (how long a lock lasts, default 30), ``--wait-seconds S``
(how long a claim waits for work, default 20), ``--work-seconds S`` (how long each task
takes, heartbeats meanwhile; default 0), ``--once`` (exit after one task).  Each thing
it does is a line on standard output: ``NAME: started TYPE EVENT-ID (lock LOCK)``, ``NAME:
finished TYPE EVENT-ID pass``, ``NAME: abandoned TYPE EVENT-ID (410: ...)``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

PREFIX = "sh.keptn.event."
PLACES = {  # latitude, longitude
    "amsterdam": (52.3676, 4.9041), "berlin": (52.52, 13.405),
    "lisbon": (38.7223, -9.1393), "london": (51.5074, -0.1278),
    "paris": (48.8566, 2.3522), "vienna": (48.2082, 16.3738),
}


class Refused(Exception):
    """The control plane refused an answer: the worker lets the task go."""

    def __init__(self, status: int, detail: str):
        super().__init__(f"{status}: {detail}")
        self.status = status


class ControlPlane:
    """The few calls a worker makes, over HTTP with a bearer token."""

    def __init__(self, server: str, token: str):
        self.server = server.rstrip("/")
        self.token = token

    def post(self, path: str, body: dict, timeout: float) -> dict:
        """POST JSON, answer JSON; Refused for a 4xx, URLError when unreachable."""
        request = urllib.request.Request(
            self.server + path, data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {self.token}",
                     "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            if 400 <= err.code < 500:
                try:
                    detail = json.loads(err.read()).get("detail", "")
                except ValueError:
                    detail = err.reason
                raise Refused(err.code, detail) from None
            raise

    def claim(self, worker: str, types: list[str], lock: float, wait: float) -> list:
        """Fetch and lock task events (a long poll of up to ``wait`` seconds)."""
        body = {"worker": worker, "types": types, "max": 1, "lockSeconds": lock,
                "waitSeconds": wait}
        return self.post("/api/v1/task-events/claim", body, wait + 30)["events"]

    def answer(self, triggered: dict, lock: str, phase: str, data: dict,
               lock_seconds: float | None = None) -> dict:
        """Post ``sh.keptn.event.<task>.<phase>`` answering the triggered event."""
        task = task_name(triggered)
        event = {"specversion": "1.0", "id": str(uuid.uuid4()), "source": "worker.py",
                 "type": f"{PREFIX}{task}.{phase}", "triggeredid": triggered["id"],
                 "shkeptncontext": triggered.get("shkeptncontext"), "flowmetallock": lock,
                 "datacontenttype": "application/json", "data": data}
        if lock_seconds is not None:
            event["flowmetallockseconds"] = lock_seconds
        return self.post("/api/v1/event", event, 30)


def task_name(triggered: dict) -> str:
    """The task of a ``sh.keptn.event.<task>.triggered`` event."""
    return triggered["type"][len(PREFIX):].rsplit(".", 1)[0]


# -- the tasks: (data, properties) -> (result, message, output) -------------------------

def check_number(data: dict, props: dict) -> tuple[str, str, dict]:
    """Whether ``data.number`` is a number within the properties' ``min`` and ``max``."""
    low, high = props.get("min", 0), props.get("max", 100)
    number = data.get("number")
    is_number = type(number) in (int, float)
    within = is_number and low <= number <= high
    message = (f"{number} is within [{low}, {high}]" if within else
               f"{number!r} is not a number" if not is_number else
               f"{number} is outside [{low}, {high}]")
    return ("pass" if within else "fail", message,
            {"number": number, "min": low, "max": high, "inRange": within})


def extract_metadata(data: dict, props: dict) -> tuple[str, str, dict]:
    """The document's title, author, place, word count and digest."""
    doc = data.get("document")
    if not isinstance(doc, dict) or not isinstance(doc.get("text"), str):
        return "fail", "data.document.text is missing", {}
    text = doc["text"]
    out = {"title": doc.get("title") or text.split(".")[0][:80],
           "author": doc.get("author"), "place": doc.get("place"),
           "words": len(text.split()),
           "digest": hashlib.sha256(text.encode()).hexdigest()[:16]}
    return "pass", f"{out['words']} words", out


def geolookup(data: dict, props: dict) -> tuple[str, str, dict]:
    """The coordinates of the document's place."""
    place = (data.get("extract-metadata") or {}).get("place")
    if not isinstance(place, str):
        return "fail", "no place to look up (extract-metadata found none)", {}
    found = PLACES.get(place.strip().lower())
    if found is None:
        return "warning", f"{place} is not in the gazetteer", {"place": place}
    return "pass", f"{place} at {found[0]}, {found[1]}", \
        {"place": place, "lat": found[0], "lon": found[1]}


def author_search(data: dict, props: dict) -> tuple[str, str, dict]:
    """An author record derived from the name (the same name, the same record)."""
    author = (data.get("extract-metadata") or {}).get("author")
    if not isinstance(author, str) or not author.strip():
        return "warning", "the document names no author", {}
    digest = hashlib.sha256(author.strip().lower().encode()).digest()
    return "pass", f"found {author}", {
        "author": author, "id": "author-" + digest[:4].hex(), "works": 1 + digest[4] % 40}


TASKS = {"checknumber": check_number, "extract-metadata": extract_metadata,
         "geolookup": geolookup, "author-search": author_search}


# -- the loop ---------------------------------------------------------------------------

def say(line: str) -> None:
    """One line of what the worker does."""
    print(line, flush=True)


class Heartbeat(threading.Thread):
    """Sends ``.status.changed`` every ``every`` seconds until stopped; ``refused`` is
    the refusal that ends it early."""

    def __init__(self, plane: ControlPlane, triggered: dict, lock: str, lock_seconds: float):
        super().__init__(daemon=True)
        self.plane, self.triggered, self.lock = plane, triggered, lock
        self.lock_seconds = lock_seconds
        self.stopped = threading.Event()
        self.refused: Refused | None = None

    def run(self) -> None:
        beats = 0
        while not self.stopped.wait(self.lock_seconds / 3):
            beats += 1
            try:
                self.plane.answer(self.triggered, self.lock, "status.changed",
                                  {"message": f"working ({beats})"}, self.lock_seconds)
            except Refused as exc:
                self.refused = exc
                return
            except OSError:
                continue  # unreachable for a moment: the next beat tries again


def work(plane: ControlPlane, name: str, item: dict, args: argparse.Namespace) -> None:
    """Do one claimed task event: .started, the work with heartbeats, .finished."""
    triggered, lock = item["event"], item["lock"]
    task, eid = task_name(triggered), triggered["id"]
    try:
        plane.answer(triggered, lock, "started", {}, args.lock_seconds)
    except Refused as exc:
        say(f"{name}: abandoned {task} {eid} ({exc})")
        return
    say(f"{name}: started {task} {eid} (lock {lock})")
    beat = Heartbeat(plane, triggered, lock, args.lock_seconds)
    beat.start()
    data = triggered.get("data") or {}
    props = data.get(task) if isinstance(data.get(task), dict) else {}
    try:
        result, message, output = TASKS[task](data, props)
        status = "succeeded"
    except Exception as exc:  # a bug in a task is that task's error, not the worker's end
        result, message, output, status = "fail", f"{type(exc).__name__}: {exc}", {}, \
            "errored"
    end = time.monotonic() + args.work_seconds
    while beat.refused is None and time.monotonic() < end:
        time.sleep(min(0.05, max(0.0, end - time.monotonic())))
    beat.stopped.set()
    beat.join()
    if beat.refused is not None:
        say(f"{name}: abandoned {task} {eid} ({beat.refused})")
        return
    try:
        plane.answer(triggered, lock, "finished", {"result": result, "status": status,
                                                   "message": message, task: output})
    except Refused as exc:
        say(f"{name}: abandoned {task} {eid} ({exc})")
        return
    say(f"{name}: finished {task} {eid} {result}")


def main(argv: list[str]) -> int:
    """Serve the task types until interrupted."""
    p = argparse.ArgumentParser(description="A Flowmetal sequence worker.")
    p.add_argument("server")
    p.add_argument("name")
    p.add_argument("types", nargs="+", choices=sorted(TASKS), metavar="TYPE")
    p.add_argument("--lock-seconds", type=float, default=30.0)
    p.add_argument("--wait-seconds", type=float, default=20.0)
    p.add_argument("--work-seconds", type=float, default=0.0)
    p.add_argument("--once", action="store_true")
    args = p.parse_args(argv)
    token = os.environ.get("FLOWMETAL_TOKEN")
    if not token:
        p.error("set FLOWMETAL_TOKEN to a token (flowmetal token create)")
    plane = ControlPlane(args.server, token)
    say(f"{args.name}: serving {' '.join(args.types)} from {plane.server}")
    while True:
        try:
            items = plane.claim(args.name, args.types, args.lock_seconds, args.wait_seconds)
        except Refused as exc:
            say(f"{args.name}: the claim was refused ({exc})")
            return 1
        except OSError as exc:
            say(f"{args.name}: {plane.server} is unreachable ({exc}); trying again")
            time.sleep(1)
            continue
        for item in items:
            work(plane, args.name, item, args)
            if args.once:
                return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
