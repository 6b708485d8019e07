"""Upgrading an installed Flowmetal keeps sleeping tasks alive: a task waits, the
installed standard library changes (as any upgrade of Flowmetal changes it), and the
task still finishes, on the code it started with (builds a wheel: a few seconds)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from .test_wheel import build_wheel


def install(tmp_path: Path) -> Path:
    """An unpacked wheel of this checkout: a real installed copy of Flowmetal."""
    site = tmp_path / "site"
    with zipfile.ZipFile(build_wheel(tmp_path)) as z:
        z.extractall(site)
    return site


@pytest.mark.slow
def test_a_waiting_task_survives_a_change_of_the_installed_standard_library(tmp_path):
    site = install(tmp_path)
    store = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(site), FLOWMETAL_HOME=str(store))

    def fm(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "flowmetal", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=timeout)

    program = tmp_path / "wait.fm"
    program.write_text('(println "got" (receive :timeout 600))\n')
    task_id = fm("start", str(program)).stdout.strip()
    worker = subprocess.Popen([sys.executable, "-m", "flowmetal", "worker"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        end = time.monotonic() + 30
        while "waiting" not in fm("tasks").stdout:
            assert time.monotonic() < end, "the task did not start waiting"
            time.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=30)

    # Upgrade Flowmetal: its standard library changes.
    seq = site / "flowmetal" / "stdlib" / "seq.fm"
    seq.write_text(seq.read_text() + "\n;; a line any upgrade might add\n")
    core = site / "flowmetal" / "stdlib" / "core.fm"
    core.write_text(core.read_text() + "\n(defn %added-by-the-upgrade [] :new)\n")

    assert fm("send", task_id, '"hello"').returncode == 0
    r = fm("resume", task_id)
    assert (r.returncode, r.stdout, r.stderr) == (0, "got hello\n", "")
    assert '"status": "done"' in fm("show", task_id, "--json").stdout

    # The upgraded Flowmetal runs new tasks on its new standard library.
    r = fm("-e", "(%added-by-the-upgrade)")
    assert (r.returncode, r.stdout) == (0, ":new\n")
