"""The tables a store keeps, as one transaction sees them: what each store implements.

This is the level *below* the store protocol (``base.Store``): the task-level operations
(claim, commit a batch of steps, deliver, fire timers, send, ...) are written once, in
``engine.py``, over this interface, and each store (LMDB, PostgreSQL) implements it.
Nothing outside ``flowmetal/store`` uses it.

Records cross this interface as bytes (CBOR made by ``runtime/records.py``), so a store
never interprets them; what a store must be able to filter or index on is passed beside
the bytes as ``TaskColumns``.

Within a write transaction:
- ``clock()`` is the store's clock (seconds since the epoch), the same for the whole
  transaction: leases, timers and ``now`` are judged by it, never by a host's clock.
- Reading a task record (``get_task``/``get_tasks``) in a write transaction keeps it
  from changing under the transaction until it ends (LMDB: one writer at a time;
  PostgreSQL: ``SELECT ... FOR UPDATE``).  ``get_tasks`` locks in id order.
- Writes become visible to others, and durable, all at once when the transaction
  commits, or not at all.
- Sequence numbers (inbox, log, output) count from 1 per task.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple, Protocol

from ..structs import dataclass


class TaskColumns(NamedTuple):
    """What a store keeps beside a task record for filtering, indexing and claiming (a
    named tuple: one is made at every step, and a frozen dataclass costs 3 µs)."""

    status: str
    program: str
    name: str
    parent: str | None
    root: str
    created: float
    updated: float
    lease_worker: str | None
    lease_until: float | None
    waiting_on: str | None      # the op of the request the task waits on
    waiting_until: float | None  # when that wait times out


@dataclass(frozen=True, slots=True)
class TaskFilter:
    """Which tasks a listing wants; every field that is set must match."""

    status: tuple[str, ...] = ()   # any of these statuses (empty: all)
    program: str | None = None     # a program hash, or a prefix of one
    name: str | None = None        # the task's name
    parent: str | None = None
    root: str | None = None
    id_prefix: str | None = None
    created_after: float | None = None
    created_before: float | None = None


ALL_TASKS = TaskFilter()


class Tables(Protocol):
    """One transaction on a store's tables."""

    # Whether ``put_task`` uses the columns it is given (a store that indexes them);
    # callers pass None where it does not, and skip making them.
    needs_columns: bool

    def clock(self) -> float:
        """The store's clock, fixed for the transaction (seconds since the epoch)."""

    # task records and continuations --------------------------------------------------

    def get_task(self, task_id: str) -> bytes | None:
        """The task's record as stored, or None (locked until the transaction ends)."""

    def get_tasks(self, task_ids: Iterable[str]) -> dict[str, bytes]:
        """The records of those of ``task_ids`` that exist (locked, in id order)."""

    def put_task(self, task_id: str, data: bytes, columns: TaskColumns | None) -> None:
        """Write (insert or replace) a task record and its columns (None when
        ``needs_columns`` is false)."""

    def scan_tasks(self, where: TaskFilter, after: str = "", limit: int = 100,
                   descending: bool = False) -> list[bytes]:
        """Up to ``limit`` records matching ``where`` in id order (ids after ``after``;
        with ``descending``, before it, newest first)."""

    def count_tasks(self, where: TaskFilter) -> dict[str, int]:
        """How many tasks match ``where``, by status."""

    def get_cont(self, task_id: str) -> bytes | None:
        """The task's encoded continuation."""

    def put_cont(self, task_id: str, data: bytes) -> None:
        """Replace the task's encoded continuation."""

    def delete_task_data(self, task_id: str) -> None:
        """Remove a task's continuation, inbox, log, output and runnable mark (the record
        stays: it says where the task went)."""

    def delete_task(self, task_id: str) -> None:
        """Remove a task's record (after ``delete_task_data``: ``flowmetal rm``)."""

    # programs ------------------------------------------------------------------------

    def get_program(self, digest: str) -> bytes | None:
        """A program record by hash."""

    def put_program(self, digest: str, data: bytes) -> None:
        """Store a program record; a hash already stored is left as it is."""

    def all_programs(self) -> Iterator[tuple[str, bytes]]:
        """Every stored program record: (hash, record)."""

    def all_names(self) -> Iterator[tuple[str, str]]:
        """Every deployed name: (name, program hash)."""

    def get_name(self, name: str) -> str | None:
        """The program hash a name stands for (``deploy``), or None."""

    def put_name(self, name: str, digest: str) -> None:
        """Make ``name`` stand for the program ``digest`` (replacing what it stood for)."""

    # inboxes -------------------------------------------------------------------------

    def inbox_put(self, task_id: str, seq: int, data: bytes) -> None:
        """Queue message number ``seq`` for the task."""

    def inbox_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, bytes]]:
        """Queued messages numbered above ``after``, oldest first."""

    def inbox_delete(self, task_id: str, seq: int) -> None:
        """Remove a consumed message."""

    # timers --------------------------------------------------------------------------

    def timer_add(self, due: float, task_id: str, request: int, data: bytes) -> None:
        """Arm a timer for the task's request (0 for the task's deadline)."""

    def timers_due(self, now: float, limit: int) -> list[tuple[float, str, int, bytes]]:
        """Up to ``limit`` timers due at ``now``, earliest first: (due, task, request,
        record).  In a write transaction, timers another transaction holds are skipped."""

    def timer_delete(self, due: float, task_id: str, request: int) -> None:
        """Disarm a timer (nothing if it is not armed)."""

    def next_timer(self) -> float | None:
        """When the earliest timer is due, or None."""

    # the outbox ----------------------------------------------------------------------

    def outbox_put(self, task_id: str, request: int, data: bytes, not_before: float,
                   lease_until: float | None) -> None:
        """Write (insert or replace) the outbox entry of the task's request; the two times
        (``records.OutboxEntry``) are kept beside it for ``outbox_due``."""

    def outbox_get(self, task_id: str, request: int) -> bytes | None:
        """The outbox entry of the task's request (locked until the transaction ends)."""

    def outbox_delete(self, task_id: str, request: int) -> None:
        """Remove an outbox entry (nothing if there is none)."""

    def outbox_due(self, now: float, limit: int) -> list[tuple[str, int, bytes]]:
        """Up to ``limit`` entries a connector may claim at ``now`` (``not_before`` passed,
        no lease or an expired one), oldest first: (task, request, entry).  In a write
        transaction, entries another transaction holds are skipped."""

    def outbox_items(self, task_id: str | None = None) -> Iterator[tuple[str, int, bytes]]:
        """Every outbox entry (of one task, or of all): (task, request, entry)."""

    # settings, access tokens and callbacks ---------------------------------------------

    def setting_get(self, key: str, lock: bool = False) -> str | None:
        """A store-wide setting (such as the public URL callbacks are reached at).  With
        ``lock``, in a write transaction, no other writer reads it locked or writes it
        until this transaction ends (a read-modify-write is safe)."""

    def setting_put(self, key: str, value: str | None) -> None:
        """Set (None: remove) a store-wide setting."""

    def token_put(self, digest: str, data: bytes) -> None:
        """Write the record of the access token whose SHA-256 is ``digest``."""

    def token_get(self, digest: str) -> bytes | None:
        """The record of the access token whose SHA-256 is ``digest``."""

    def token_items(self) -> Iterator[tuple[str, bytes]]:
        """Every access token record: (digest, record)."""

    def callback_put(self, digest: str, task_id: str, data: bytes) -> None:
        """Write the record of the task's callback whose token's SHA-256 is ``digest``."""

    def callback_get(self, digest: str) -> bytes | None:
        """A callback's record (locked until the transaction ends)."""

    def callback_delete(self, digest: str) -> None:
        """Remove a callback."""

    def callbacks_of(self, task_id: str) -> list[tuple[str, bytes]]:
        """The task's callbacks: (digest, record)."""

    # journals ------------------------------------------------------------------------

    def log_append(self, task_id: str, data: bytes) -> int:
        """Append an event record to the task's log; its sequence number."""

    def log_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, bytes]]:
        """The task's events numbered above ``after``, in order."""

    def output_append(self, task_id: str, text: str) -> int:
        """Append printed text to the task's output; its sequence number."""

    def output_items(self, task_id: str, after: int = 0) -> Iterator[tuple[int, str]]:
        """The task's output numbered above ``after``, in order."""

    # work to do ----------------------------------------------------------------------

    def runnable_add(self, task_id: str) -> None:
        """Mark the task as having work to do."""

    def runnable_remove(self, task_id: str) -> None:
        """Unmark it."""

    def claimable(self, worker: str, now: float, limit: int) -> list[str]:
        """Up to ``limit`` runnable task ids that ``worker`` may lease at ``now``: not
        leased, lease expired, or leased to ``worker``.  In a write transaction, tasks
        another transaction holds are skipped (PostgreSQL: ``SKIP LOCKED``); a store
        may rotate through its runnable tasks so that none starves."""

    def leased(self) -> list[str]:
        """The ids of the tasks that have a lease (only runnable tasks do)."""

    def any_runnable(self) -> bool:
        """Whether any task is marked runnable."""

    # workers -------------------------------------------------------------------------

    def put_worker(self, worker: str, data: bytes) -> None:
        """Register or update a worker (its record: host, pid, started, seen)."""

    def get_workers(self) -> dict[str, bytes]:
        """Every registered worker's record."""

    def delete_worker(self, worker: str) -> None:
        """Forget a worker."""
