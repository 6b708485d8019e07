"""Stores: where tasks, their continuations, inboxes, timers and logs live.

``open_store(location)`` opens a store: an LMDB directory (the default) or a PostgreSQL
database (``postgresql://…``).  The runtime uses only the protocol in ``base.Store``.
"""

from __future__ import annotations

import os

from .base import Store, StoreError, StoreUnavailable, default_path
from .engine import MigrationError, TaskStore


def is_url(location: str) -> bool:
    """Whether ``location`` names a PostgreSQL database rather than a directory."""
    return location.startswith(("postgresql://", "postgres://"))


def is_server(location: str) -> bool:
    """Whether ``location`` names a control plane rather than a store."""
    return location.startswith(("http://", "https://"))


def open_store(location: str | None = None, create: bool = True, sync: bool = True
               ) -> TaskStore:
    """The store at ``location`` (default: $FLOWMETAL_SERVER, else $FLOWMETAL_HOME, else
    ./.flowmetal): a directory for LMDB, a ``postgresql://`` URL for PostgreSQL, an
    ``http(s)://`` URL for the store behind a control plane (``remote.RemoteStore``, with
    $FLOWMETAL_TOKEN).  Unless ``create``, a missing store is a StoreError."""
    location = location or os.environ.get("FLOWMETAL_SERVER") or default_path()
    if is_server(location):
        from .remote import RemoteStore  # (only here: it imports asyncio)

        return RemoteStore(location)  # type: ignore[return-value]
    if is_url(location):
        from .postgres import PostgresStore

        return TaskStore(PostgresStore(location, create=create))
    from .lmdb import LmdbStore

    return TaskStore(LmdbStore(location, sync=sync, create=create))


__all__ = ["MigrationError", "Store", "StoreError", "StoreUnavailable", "TaskStore",
           "default_path", "is_server", "is_url", "open_store"]
