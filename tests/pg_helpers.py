"""Helpers for tests against a real PostgreSQL: a fresh store in a schema of its own.

The server is ``$FLOWMETAL_TEST_POSTGRES`` (default ``postgresql://postgres@127.0.0.1:5432/
test``).  When it cannot be reached the tests that need it are skipped, saying why,
unless ``FLOWMETAL_REQUIRE_POSTGRES=1``: then they fail.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def base_url() -> str:
    """The test server's URL."""
    return os.environ.get("FLOWMETAL_TEST_POSTGRES") or DEFAULT_URL


@functools.cache
def unreachable() -> str | None:
    """Why the test server cannot be used, or None if it can."""
    try:
        import psycopg
    except ImportError as exc:  # pragma: no cover - psycopg is a dependency
        return f"psycopg is not installed: {exc}"
    try:
        with psycopg.connect(base_url(), connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        return f"PostgreSQL at {base_url()} is unreachable: {str(exc).strip()}"
    return None


def require_postgres() -> None:
    """Skip the test (or fail it, with FLOWMETAL_REQUIRE_POSTGRES=1) without a server."""
    why = unreachable()
    if why is None:
        return
    if os.environ.get("FLOWMETAL_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{why} (and FLOWMETAL_REQUIRE_POSTGRES=1)")
    pytest.skip(f"{why}; set FLOWMETAL_TEST_POSTGRES to a server to run these tests")


def new_schema() -> str:
    """A schema name no other test uses."""
    return "fmtest_" + uuid.uuid4().hex[:12]


def schema_url(schema: str, url: str | None = None) -> str:
    """``url`` (default: the test server) naming ``schema``."""
    parts = urlsplit(url or base_url())
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "schema"]
    query.append(("schema", schema))
    return urlunsplit(parts._replace(query=urlencode(query)))


def drop_schema(schema: str) -> None:
    """Remove a test schema, if it is there."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(base_url(), autocommit=True, connect_timeout=3) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
            sql.Identifier(schema)))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """The URL of a schema of its own, not created yet; dropped after the test."""
    require_postgres()
    schema = new_schema()
    try:
        yield schema_url(schema)
    finally:
        drop_schema(schema)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator:
    """A fresh ``PostgresStore`` in a schema of its own, dropped after the test."""
    from flowmetal.store.postgres import PostgresStore

    store = PostgresStore(pg_url)
    try:
        yield store
    finally:
        store.close()
