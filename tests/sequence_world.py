"""Sequences with real processes: ``flowmetal serve`` and ``flowmetal worker`` on a store,
and the example workers (``examples/sequences/worker.py``, ``worker.sh``) as child
processes whose output lines the tests follow."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import requests

from flowmetal.json_values import to_plain
from flowmetal.runtime.records import result_value
from flowmetal.sequences.shipyard import parse_shipyard
from flowmetal.sequences.shipyards import apply_shipyard

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "sequences"
FINISHED = ("done", "failed", "cancelled", "moved")
CLAIM_WAIT = "1"  # seconds the example workers' claims wait (so they stop at once)


def free_port() -> int:
    """A port nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(check, seconds: float, what: str):
    """``check()``'s first true value, looked for every 50 ms for up to ``seconds``."""
    end = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < end, f"{what} did not happen within {seconds} s"
        time.sleep(0.05)


class Proc:
    """A child process in a group of its own, its output (stdout and stderr) kept line by
    line as it comes."""

    def __init__(self, args: list[str], env: dict | None = None, name: str = ""):
        self.name = name or args[0]
        self.lines: list[str] = []
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def expect(self, pattern: str, seconds: float = 20) -> re.Match:
        """The first output line matching ``pattern`` (waiting for it)."""
        rx = re.compile(pattern)

        def look():
            return next((m for m in map(rx.search, list(self.lines)) if m), None)
        try:
            return until(look, seconds, f"{self.name} printing {pattern!r}")
        except AssertionError:
            raise AssertionError(f"{self.name} did not print {pattern!r} within {seconds} s; "
                                 "it printed:\n" + "\n".join(self.lines)) from None

    def kill(self) -> None:
        """SIGKILL the process group at once."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, seconds: float = 10) -> None:
        """SIGTERM, then SIGKILL if it has not ended within ``seconds``."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(seconds)
            except subprocess.TimeoutExpired:
                self.kill()
        self._reader.join(5)


class World:
    """A store served by ``flowmetal serve`` with a ``flowmetal worker`` running its
    tasks (the sequence runs); the example workers each test starts on it."""

    def __init__(self, store) -> None:
        self.store = store
        self.token, _ = store.token_create("sequence tests", "write")
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = self.env()
        flowmetal = [sys.executable, "-m", "flowmetal", "--store", store.location]
        self.serve = Proc([*flowmetal, "serve", "--listen", f"127.0.0.1:{port}"], env,
                          "flowmetal serve")
        self.worker = Proc([*flowmetal, "worker"], env, "flowmetal worker")
        self.workers: list[Proc] = []
        self.triggered: list[str] = []
        until(self._healthy, 30, "flowmetal serve answering")

    def env(self, **extra: str) -> dict:
        """The environment of the processes (the token in FLOWMETAL_TOKEN)."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("FLOWMETAL_HOME", "FLOWMETAL_SERVER")}
        env.update(FLOWMETAL_TOKEN=self.token, **extra)
        return env

    def _healthy(self) -> bool:
        assert self.serve.proc.poll() is None, "\n".join(self.serve.lines)
        try:
            return requests.get(self.url + "/healthz", timeout=5).status_code == 200
        except requests.ConnectionError:
            return False

    # the control plane ------------------------------------------------------------------

    def api(self, method: str, path: str, body: dict | None = None,
            headers: dict | None = None) -> requests.Response:
        """One request to ``/api/v1{path}`` with the token."""
        return requests.request(method, f"{self.url}/api/v1{path}", json=body,
                                headers={"Authorization": f"Bearer {self.token}",
                                         **(headers or {})}, timeout=60)

    def apply(self, text: str) -> str:
        """Apply a shipyard (YAML text); its project."""
        shipyard = parse_shipyard(text, "shipyard.yaml")
        apply_shipyard(self.store, shipyard)
        return shipyard.name

    def trigger(self, project: str, stage: str, sequence: str, data: dict | None = None,
                event_id: str | None = None) -> dict:
        """POST a ``<stage>.<sequence>.triggered`` event; the answer (201; 200 for an
        ``event_id`` sent before)."""
        event = {"specversion": "1.0", "id": event_id or str(uuid.uuid4()),
                 "source": "tests", "type": f"sh.keptn.event.{stage}.{sequence}.triggered",
                 "data": {"project": project, "service": "svc", **(data or {})}}
        r = self.api("POST", "/event", event)
        assert r.status_code in ((200, 201) if event_id else (201,)), r.text
        self.triggered.append(r.json()["task"])
        return r.json()

    def answer(self, triggered_id: str, task: str, phase: str, lock: str,
               data: dict | None = None) -> requests.Response:
        """POST a worker's ``sh.keptn.event.<task>.<phase>`` about a task event."""
        return self.api("POST", "/event", {
            "specversion": "1.0", "id": str(uuid.uuid4()), "source": "tests",
            "type": f"sh.keptn.event.{task}.{phase}", "triggeredid": triggered_id,
            "flowmetallock": lock, "data": data or {}})

    def runs(self) -> dict:
        """``GET /api/v1/sequences``: {"runs": [...], "warnings": [...]}."""
        r = self.api("GET", "/sequences")
        assert r.status_code == 200, r.text
        return r.json()

    def run(self, task: str) -> dict:
        """The run of that task as ``GET /api/v1/sequences`` lists it."""
        return next(r for r in self.runs()["runs"] if r["task"] == task)

    def control(self, task: str, action: str) -> dict:
        """Pause, resume or abort a run."""
        r = self.api("POST", f"/sequences/{task}/{action}")
        assert r.status_code == 202, r.text
        return r.json()

    def log(self, task: str) -> list[dict]:
        """The task's event log."""
        r = self.api("GET", f"/tasks/{task}/log")
        assert r.status_code == 200, r.text
        return r.json()["events"]

    def task_events(self, task: str, phase: str) -> list[dict]:
        """The details of the run's task-event log entries of that phase."""
        return [e["details"] for e in self.log(task)
                if e["kind"] == "task-event" and e["details"].get("phase") == phase]

    def outcome(self, task: str, seconds: float = 30) -> tuple[str, object]:
        """(status, result or error as plain data) once the run's task has ended."""
        r = self.api("GET", f"/tasks/{task}/result?wait={seconds}")
        assert r.status_code == 200, f"run {task} has not ended in {seconds} s: {r.text}"
        rec = self.store.get(task)
        return str(rec.status), to_plain(result_value(rec))

    # the example workers ----------------------------------------------------------------

    def python_worker(self, name: str, *types: str, lock: float = 30, work: float = 0
                      ) -> Proc:
        """``worker.py`` serving these task types."""
        w = Proc([sys.executable, str(EXAMPLES / "worker.py"), self.url, name, *types,
                  "--wait-seconds", CLAIM_WAIT, "--lock-seconds", str(lock),
                  "--work-seconds", str(work)], self.env(), name)
        self.workers.append(w)
        w.expect(rf"^{name}: serving ")
        return w

    def shell_worker(self, name: str, *types: str) -> Proc:
        """``worker.sh`` serving these task types."""
        w = Proc(["sh", str(EXAMPLES / "worker.sh"), self.url, name, *types],
                 self.env(FLOWMETAL_WAIT_SECONDS=CLAIM_WAIT), name)
        self.workers.append(w)
        w.expect(rf"^{name}: serving ")
        return w

    # the end ----------------------------------------------------------------------------

    def end_test(self) -> None:
        """Stop the test's workers and abort the runs it left unfinished, so the next
        test's workers see none of its task events."""
        for w in self.workers:
            w.stop()
        self.workers = []
        for task in self.triggered + [r["task"] for r in self.runs()["runs"]]:
            rec = self.store.get(task)
            if rec is not None and str(rec.status) not in FINISHED:
                self.api("POST", f"/sequences/{task}/abort")
        self.triggered = []

    def stop(self) -> None:
        """Stop serve and the worker."""
        self.end_test()
        self.worker.stop()
        self.serve.stop()
