"""The control plane served on 127.0.0.1 from a thread of the test process, over a real
store, and a worker process running that store's tasks."""

from __future__ import annotations

import signal
import subprocess
import sys

from flowmetal.server.app import make_app

from .threaded_app import ThreadedApp


class Served(ThreadedApp):
    """``make_app(store)`` on a free port; its log lines are kept in ``log``."""

    def __init__(self, store) -> None:
        self.store = store
        self.log: list[str] = []
        super().__init__(make_app(store, log=self.log.append), "the control plane")


class WorkerProcess:
    """``flowmetal worker`` on the store, in a process group of its own."""

    def __init__(self, location: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowmetal", "--store", location, "worker"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
