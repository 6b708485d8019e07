"""Fixtures shared by the test modules (those of the outside world are in
``world_fixtures.py``)."""

from __future__ import annotations

import contextlib
import subprocess

import pytest

from .cli_helpers import TIMEOUT
from .world_fixtures import fresh_service, service, store  # noqa: F401  (fixtures)


@pytest.fixture
def procs():
    """Processes a test starts; killed (SIGKILL ends a stopped one too) at its end."""
    started: list[subprocess.Popen] = []
    yield started
    for p in started:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
        p.wait(TIMEOUT)
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()
