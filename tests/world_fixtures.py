"""Fixtures of the suites of the outside world: a real HTTP service, and a fresh store of
each kind (``conftest.py`` makes them every module's)."""

from __future__ import annotations

import pytest

from .http_service import HttpService
from .test_store import KINDS, make_store


@pytest.fixture(scope="module")
def service():
    """The test HTTP service, shared by a module's tests."""
    s = HttpService().start()
    yield s
    s.stop()


@pytest.fixture
def fresh_service():
    """The test HTTP service, for one test alone (its record of requests is its own)."""
    s = HttpService().start()
    yield s
    s.stop()


@pytest.fixture(params=KINDS)
def store(request, tmp_path):
    """A fresh store of each kind: LMDB, then PostgreSQL."""
    s, drop = make_store(request.param, tmp_path)
    yield s
    drop()
