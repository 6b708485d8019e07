"""Running the real command line in child processes over a store in a tmp dir."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from pathlib import Path

TIMEOUT = 30


def readable(stream, seconds: float) -> bool:
    """Whether a pipe (a file or its descriptor) has something to read within
    ``seconds``: poll, not select, since a test process that has opened many stores has
    descriptors past select's FD_SETSIZE."""
    poller = select.poll()
    poller.register(stream, select.POLLIN)
    return bool(poller.poll(max(0.0, seconds) * 1000))


def env() -> dict:
    """The environment of a child: this one, without a default store."""
    out = dict(os.environ)
    out.pop("FLOWMETAL_HOME", None)
    return out


def fm(store: Path, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """``python -m flowmetal --store STORE ARGS`` run in the store's parent directory."""
    return subprocess.run([sys.executable, "-m", "flowmetal", "--store", str(store), *args],
                          env=env(), cwd=store.parent, capture_output=True, text=True,
                          timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> str:
    """The output of a command that must have succeeded."""
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def popen(procs: list, store: Path, *args: str, stderr=subprocess.PIPE,
          stdout=subprocess.PIPE) -> subprocess.Popen:
    """Start ``flowmetal --store STORE ARGS`` in the background (ended by ``procs``).  A
    pipe no one reads fills: a process printing much needs ``stdout=DEVNULL``."""
    p = subprocess.Popen([sys.executable, "-m", "flowmetal", "--store", str(store), *args],
                         env=env(), cwd=store.parent, stdin=subprocess.DEVNULL,
                         stdout=stdout, stderr=stderr, text=True)
    procs.append(p)
    return p
