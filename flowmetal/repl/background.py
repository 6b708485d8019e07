"""The REPL's worker: runs a store's tasks in a thread while the REPL lives, and shows
the output and the end of the tasks started from the REPL as their steps commit.

It is an ordinary worker (``runtime/worker.py``) on the store: it leases, runs and commits
steps, so tasks it has not finished when the REPL exits stay in the store, their leases
released, for another worker.  Output is shown after the commit that made it, prefixed
with the end of the task's id.
"""

from __future__ import annotations

import threading
from typing import Any

from ..report import format_error
from ..runtime import inspect
from ..runtime.records import result_value
from .console import Console

POLL = 0.05
STOP_SECONDS = 10.0


def tag(task_id: str) -> str:
    """How output lines name a task: the last 6 characters of its id."""
    return f"[{task_id[-6:]}]"


class BackgroundWorker:
    """A worker thread for ``store`` that reports on the tasks given to ``follow``."""

    def __init__(self, store: Any, console: Console):
        self.store = store
        self.console = console
        self.followed: dict[str, int] = {}   # task id -> output sequence number shown
        self.ended: set[str] = set()
        self.pending: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def follow(self, task_id: str) -> None:
        """Show this task's output and end (and those of the tasks it spawns)."""
        with self.lock:
            self.followed.setdefault(task_id, 0)
        if self.thread is None:
            self.thread = threading.Thread(target=self._run, name="flowmetal-repl-worker",
                                           daemon=True)
            self.thread.start()

    def stop(self) -> None:
        """Commit what has run, release the leases and end the thread."""
        if self.thread is None:
            return
        self.stopping.set()
        self.thread.join(STOP_SECONDS)
        self.thread = None
        for task_id in sorted(set(self.followed) - self.ended):
            self.console.line(f"task {task_id} is not finished: it stays in the store, "
                              f"for flowmetal worker or flowmetal resume {task_id}", "note")

    def _run(self) -> None:
        from ..connectors.http import HttpConnector
        from ..runtime.worker import Worker

        worker = Worker(self.store)
        worker.connector = HttpConnector(self.store)
        try:
            while not self.stopping.is_set():
                ran = worker.round()
                self._collect()
                self._show()
                if ran == 0:
                    self.stopping.wait(POLL)
            worker.stop()
            self._collect()
            self._show()
        except Exception as exc:  # the REPL goes on without its worker
            self.console.line(f"the REPL's worker stopped: {type(exc).__name__}: {exc}",
                              "error")

    def _collect(self) -> None:
        """After a round: the new output and ends of the followed tasks."""
        with self.lock:
            followed = list(self.followed)
        with self.store.view() as view:
            for task_id in followed:
                self._collect_task(view, task_id)

    def _collect_task(self, view: Any, task_id: str) -> None:
        rec = view.task(task_id)
        if rec is not None:
            for child in rec.children:
                with self.lock:
                    self.followed.setdefault(child, 0)
            shown = self.followed[task_id]
            for seq, text in view.output(task_id, shown):
                self.pending.append((task_id, text))
                shown = seq
            self.followed[task_id] = shown
            if rec.finished and task_id not in self.ended:
                self.ended.add(task_id)
                self.pending.append((task_id, _end_text(rec)))

    def _show(self) -> None:
        pending, self.pending = self.pending, []
        for task_id, text in pending:
            for line in text.splitlines():
                self.console.line(f"{tag(task_id)} {line}", "task")


def _end_text(rec: Any) -> str:
    """How a followed task ended, for its last line."""
    if rec.status == "done":
        return f"done: {inspect.value_text(result_value(rec), 500)}"
    if rec.status == "moved":
        return "moved to another store"
    first = format_error(result_value(rec)).splitlines()[0] if rec.error else ""
    return f"{rec.status}: {first} (,attach {rec.id} shows more)"
