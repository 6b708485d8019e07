"""Stores: where tasks, their continuations, inboxes, timers and logs live.

``open_store(path)`` opens the default store, an LMDB directory.  The runtime talks to a
store only through transactions (``store.read()``, ``store.write()``) whose methods are
listed in ``base.Txn``, so another store (PostgreSQL) can stand in.
"""

from .base import Store, StoreError, Txn, default_path
from .lmdb import LmdbStore


def open_store(path: str | None = None) -> Store:
    """The store at ``path`` (default: $FLOWMETAL_HOME or ./.flowmetal)."""
    return LmdbStore(path or default_path())


__all__ = ["LmdbStore", "Store", "StoreError", "Txn", "default_path", "open_store"]
