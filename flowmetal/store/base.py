"""The store protocol: typed tables read and written in transactions.

Records are CBOR maps with a ``"v"`` format version (see NOTES.md, "Store records").
Sequence numbers (inbox, log, output, outbox) count from 1 per task (per store for the
outbox).  A write transaction is atomic and durable when it returns; all the writes of
one step, or of many steps committed together, go in one transaction.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Protocol

STORE_FORMAT = "flowmetal-store/2"


class StoreError(Exception):
    """The store cannot be opened or used (missing, wrong format, corrupt)."""


class StoreUnavailable(StoreError):
    """The store cannot commit now (disk full, database unreachable): a transient fault.

    Nothing of the failed transaction was written.  A worker keeps the last committed
    step of each task, backs off and tries again; it never fails a task for this.
    """


def default_path() -> str:
    """$FLOWMETAL_HOME, or ./.flowmetal."""
    return os.environ.get("FLOWMETAL_HOME") or os.path.join(os.getcwd(), ".flowmetal")


class Txn(Protocol):
    """What the runtime may do inside one transaction."""

    def get_task(self, task_id: str) -> dict | None:
        """The task record, or None."""

    def put_task(self, record: dict) -> None:
        """Write a task record (keyed by ``record["id"]``)."""

    def get_task_data(self, task_id: str) -> bytes | None:
        """The task record as stored (CBOR), or None."""

    def put_task_data(self, task_id: str, data: bytes) -> None:
        """Write a task record already encoded as CBOR."""

    def tasks(self) -> Iterator[dict]:
        """Every task record, in id order."""

    def get_cont(self, task_id: str) -> bytes | None:
        """The task's encoded continuation."""

    def put_cont(self, task_id: str, data: bytes) -> None:
        """Replace the task's encoded continuation."""

    def get_program(self, digest: str) -> dict | None:
        """A program record by hash."""

    def put_program(self, digest: str, record: dict) -> None:
        """Store a program record (once; programs never change)."""

    def inbox_put(self, task_id: str, seq: int, record: dict) -> None:
        """Queue message number ``seq`` (counted in the task record) for the task."""

    def inbox_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, dict]]:
        """Queued messages with sequence numbers above ``after``, oldest first."""

    def inbox_delete(self, task_id: str, seq: int) -> None:
        """Remove a consumed message."""

    def timer_add(self, due: float, task_id: str, request: int, record: dict) -> None:
        """Arm a timer for the task's request."""

    def timers_due(self, now: float, limit: int) -> list[tuple[float, str, int, dict]]:
        """Timers due at ``now``, earliest first: (due, task id, request, record)."""

    def timer_delete(self, due: float, task_id: str, request: int) -> None:
        """Disarm a timer."""

    def next_timer(self) -> float | None:
        """When the earliest timer is due, or None."""

    def log_append(self, task_id: str, record: dict) -> int:
        """Append an event to the task's log; its sequence number."""

    def log_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, dict]]:
        """The task's events above ``after``."""

    def output_append(self, task_id: str, text: str) -> int:
        """Append printed text to the task's output; its sequence number."""

    def output_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, str]]:
        """The task's output above ``after``."""

    def delete_task_data(self, task_id: str) -> None:
        """Remove a task's continuation, inbox, log and output (it moved away)."""

    def runnable_add(self, task_id: str) -> None:
        """Mark the task as having work to do."""

    def runnable_remove(self, task_id: str) -> None:
        """Unmark it."""

    def runnable(self, limit: int, after: str = "") -> list[str]:
        """Up to ``limit`` runnable task ids, in id order, after ``after``."""


class Store(Protocol):
    """A store: a place, and transactions on it."""

    path: str

    def read(self) -> AbstractContextManager[Txn]:
        """A read-only snapshot transaction."""

    def write(self) -> AbstractContextManager[Txn]:
        """A write transaction, committed (durably) on leaving the block without error."""

    def close(self) -> None:
        """Release the store."""

    def size_bytes(self) -> int:
        """Bytes the store takes on disk."""
