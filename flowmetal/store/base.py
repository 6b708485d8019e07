"""The store protocol: what the runtime may ask of a store, at the level of tasks.

A store keeps tasks (their records, continuations, inboxes, timers, event logs and
output), the programs they run, and the workers that run them.  Every operation below is
one transaction: atomic, and durable when it returns.  The runtime (workers, the
command line, migration, the inspector, the REPL) uses nothing else; how a store keeps
its tables is its own affair (``tables.py`` for the two stores here).

The contract, which both stores (LMDB, PostgreSQL) keep and ``tests/test_store.py``
checks against each:

- *Time* is the store's clock: leases, timers and the answer to ``(now)`` are judged by
  it, never by the clock of the host that asks.
- *Leases*: ``round`` claims runnable tasks for a worker with a lease (worker, epoch,
  expiry).  A new lease gets a new epoch.  A step is committed only if its task's lease
  still names that worker and epoch; a stale step is refused and changes nothing.  A
  lease that expires (its worker died, or stopped past it) lets another worker claim
  the task and resume it from its last committed step.
- *Steps*: a step's continuation, output, consumed messages, request and what the
  request does at once (an answer, a timer, a message to another task, a new task) are
  committed together, or not at all.
- *Answers* (a timer, a message, a joined task ending, ``now``, ``random``) are stored
  with the task before the task sees them, and delivered exactly once: an answer for a
  request the task no longer waits on is dropped.
- *No unbounded work and no I/O inside a transaction*: values arrive encoded (codec
  bytes); nothing is decoded, printed or read from a file while the store is locked.
- *Faults*: ``StoreUnavailable`` means nothing was written and trying again later may
  work (disk full, database away); any other ``StoreError`` is a fault of the store.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Protocol

from ..structs import dataclass, field
from .tables import ALL_TASKS, TaskFilter

STORE_FORMAT = "flowmetal-store/3"


class StoreError(Exception):
    """The store cannot be opened or used (missing, wrong format, corrupt)."""


class NotThroughServer(StoreError, AttributeError):
    """A store operation a control plane does not offer (an AttributeError too, so that
    ``getattr(store, name, default)`` sees it as missing); ``server`` is its URL."""

    def __init__(self, message: str, server: str):
        super().__init__(message)
        self.server = server


class StoreReadOnly(StoreError):
    """The store can be read but not written (a read-only file system, no permission)."""


class StoreUnavailable(StoreError):
    """The store cannot commit now (disk full, database unreachable): a transient fault.

    Nothing of the failed transaction was written.  A worker keeps the last committed
    step of each task, backs off and tries again; it never fails a task for this.
    """


class StoreRetry(StoreUnavailable):
    """The transaction could not commit but may at once if run again (the store grew its
    map, or the database chose it as a deadlock's or serialization conflict's victim)."""


def default_path() -> str:
    """$FLOWMETAL_HOME, or ./.flowmetal."""
    return os.environ.get("FLOWMETAL_HOME") or os.path.join(os.getcwd(), ".flowmetal")


# ---------------------------------------------------------------------------------------
# What crosses the protocol: plain data


# Requests answered through the outbox: by a connector (http), or by a worker of a
# sequence's task over the control plane (task-event, ``sequences.task_events``).
OUTBOX_KINDS = frozenset({"http", "task-event"})


@dataclass(slots=True)
class Request:
    """What a step asks of the world, with its arguments already encoded.

    ``op`` is one of: sleep (``seconds``), now, random (``below``), send (``to``,
    ``message``), next-message (``after``, ``timeout``, ``deadline``), join (``task``,
    ``timeout``), spawn (``child``: the new task, or ``error``: why it could not be
    made), env (``to``: the variable's name), and the outbox kinds (``OUTBOX_KINDS``:
    ``spec``, plain data for the connector, and ``timeout``).  ``text`` is the request as
    printed, cut short, for the event log.
    """

    op: str
    text: str = ""
    seconds: float | None = None
    below: int | None = None
    to: str | None = None
    message: bytes | None = None
    after: int = 0
    timeout: float | None = None
    deadline: Any = None
    task: str | None = None
    child: NewTask | None = None
    error: bytes | None = None
    spec: dict | None = None


@dataclass(slots=True)
class NewTask:
    """A task about to be stored: its record (``runtime.records.TaskRecord``), its first
    continuation, and how its creation is logged."""

    record: Any
    state: bytes
    logged: dict = field(default_factory=dict)


@dataclass(slots=True)
class StepCommit:
    """Everything one step of one task changed, ready to commit."""

    task_id: str
    epoch: int
    status: str                        # runnable, waiting, done, failed, cancelled
    reductions: int = 0
    base_steps: int = -1               # the task's step count the step started from
    state: bytes | None = None         # the new continuation (None when finished)
    programs: tuple[str, ...] = ()     # the programs the continuation's code is from
    output: str = ""
    consumed: tuple[int, ...] = ()     # inbox messages taken
    took_answer: bool = False
    cancel_delivered: bool = False
    request: Request | None = None     # when waiting
    result: bytes | None = None        # when done
    error: bytes | None = None         # when failed or cancelled
    error_text: str = ""               # the error, printed short, for the log
    keep_lease: bool = True
    blocked: str | None = None         # the task's code cannot be loaded here: why


@dataclass(slots=True)
class Claimed:
    """A task leased to a worker by ``round``: its record, and its continuation unless
    the worker said it holds that epoch's machine already."""

    record: Any
    state: bytes | None


@dataclass(slots=True)
class Round:
    """What one ``round`` did."""

    committed: list[bool]              # per step given: committed, or refused (stale)
    claimed: list[Claimed]
    answers: dict[str, tuple[int, Any]]  # atom answers given: task -> (request, value)
    output: list[tuple[str, str]]      # the watched tasks' new output: (task, text)
    fired: int = 0                     # timers that fired
    steps: list[StepCommit] = field(default_factory=list)  # the steps given, in order
    ended: list[str] = field(default_factory=list)  # tasks that finished in the round
    settled: list[bool] = field(default_factory=list)  # per outbox result given: taken
    outbox_claimed: list = field(default_factory=list)  # outbox entries leased (OutboxClaim)


@dataclass(slots=True)
class OutboxRound:
    """What a connector running inside a worker does in the worker's round: settle its
    attempts (``store.outbox.OutboxResult``s) and claim up to ``limit`` entries of
    ``kinds``: first those the round's own steps make (written leased to it, in the
    commit that makes them), then, with ``scan``, any others that are due."""

    connector: str
    kinds: tuple[str, ...]
    results: list
    limit: int
    lease_seconds: float
    scan: bool = True


class View(Protocol):
    """A read-only snapshot of a store (``Store.view()``)."""

    def task(self, task_id: str) -> Any:
        """The task's record (``runtime.records.TaskRecord``), or None."""

    def tasks(self, where: TaskFilter = ALL_TASKS, after: str = "", limit: int = 100,
              descending: bool = False) -> list[Any]:
        """Up to ``limit`` records matching ``where``, in id order after ``after``
        (``descending``: before it, newest first).  Unreadable records are left out and
        counted in ``skipped``."""

    def count(self, where: TaskFilter = ALL_TASKS) -> dict[str, int]:
        """How many tasks match ``where``, by status."""

    def continuation(self, task_id: str) -> bytes | None:
        """The task's encoded continuation."""

    def inbox(self, task_id: str) -> list[tuple[int, Any]]:
        """The task's queued messages (``records.Message``), oldest first."""

    def log(self, task_id: str, after: int = 0) -> Iterator[tuple[int, Any]]:
        """The task's events (``records.Event``) numbered above ``after``."""

    def output(self, task_id: str, after: int = 0) -> Iterator[tuple[int, str]]:
        """The task's output numbered above ``after``."""

    def program(self, digest: str) -> dict | None:
        """A program record by hash."""

    def resolve(self, name: str) -> str | None:
        """The program hash a name stands for."""

    def next_timer(self) -> float | None:
        """When the earliest timer is due."""

    def has_work(self) -> bool:
        """Whether anything will happen without help from outside: a runnable task a
        worker can load, or an armed timer a program asked for (a sleep, an explicit
        ``:timeout``; not a default wait nor a deadline)."""

    def clock(self) -> float:
        """The store's clock."""


class Store(Protocol):
    """A store of tasks (see the module docstring for the contract)."""

    location: str   # a directory or a URL (without secrets), for messages

    def view(self) -> AbstractContextManager[View]:
        """A read-only snapshot: never waits for a writer."""

    def put_programs(self, records: dict[str, dict]) -> None:
        """Store program records by hash (a stored hash is never rewritten)."""

    def deploy(self, name: str, digest: str) -> None:
        """Make ``name`` stand for program ``digest`` (for ``spawn`` by name)."""

    def start(self, task: NewTask, programs: dict[str, dict] | None = None) -> str:
        """Store the programs and a new runnable task (a taken id gets a fresh one);
        its id."""

    def round(self, worker: str, steps: list[StepCommit], claim: int, lease_seconds: float,
              held: dict[str, int] | None = None, watch: str | None = None,
              outbox: Any = None, on_sent: Callable[[Round], None] | None = None) -> Round:
        """A worker's round, in one transaction: commit ``steps`` (each only if its lease
        stands), fire the due timers, claim up to ``claim`` runnable tasks for
        ``lease_seconds``, and with ``watch``, claim only among that task and the tasks
        it spawned, and take their output not yet shown (marking it shown).  ``held``
        maps the tasks whose machine the worker keeps to that machine's epoch: a claim at
        the same epoch comes without its continuation.  ``outbox`` (an ``OutboxRound``)
        makes a connector's claims and settlements part of the round.

        ``on_sent``, where the store sends a commit and then awaits it, is called with
        the round's result once its commit is sent and before it is known to be done:
        the worker may run the claimed tasks meanwhile, and must use nothing it did
        unless ``round`` then returns that same result (an attempt that failed and was
        tried again calls it again, with another result)."""

    def prepare(self, worker: str, steps: list[StepCommit], lease_seconds: float,
                always: bool = False) -> None:
        """May work out the commits of ``steps`` ahead of the ``round`` that will commit
        them (an optimization for a store with one writer at a time, made while other
        processes wait for the writer's lock, or ``always``; may do nothing)."""

    def release(self, worker: str) -> int:
        """Give up every lease ``worker`` holds; how many."""

    def release_dead(self, task_ids: list[str] | None = None) -> int:
        """Give up the leases of workers the store knows are gone (their liveness lock
        is free), on ``task_ids`` or on all tasks; how many."""

    def remove(self, task_ids: list[str]) -> list[Any]:
        """Delete finished tasks (done, failed, cancelled or moved) with their
        continuations, inboxes and journals, all or none; their records as they were.
        TaskError if one is unknown or unfinished."""

    def prune(self, statuses: tuple[str, ...], older_than: float, page: int = 500
              ) -> list[str]:
        """Delete the finished tasks of these statuses that ended more than
        ``older_than`` seconds ago by the store's clock, a page of them per
        transaction; a task whose parent has not finished is kept (its parent may join
        it).  The ids deleted."""

    def send(self, task_id: str, message: bytes, sender: str | None = None) -> int:
        """Queue an encoded message for an unfinished task (a waiting ``receive`` is
        answered); its sequence number.  TaskError if the task is unknown or ended."""

    def cancel(self, task_id: str) -> Any:
        """Ask an unfinished task to stop (see NOTES.md, cancel); its record."""

    def export_task(self, task_id: str, write: Callable[[dict], None]) -> Any:
        """Hand the task's whole state to ``write`` and mark it moved, in one transaction;
        its record as it was.  MigrationError if it is leased by a live worker, ended or
        gone."""

    def import_task(self, data: dict) -> Any:
        """Add an exported task (as ``export_task`` handed it over); its record."""

    def hold_worker(self, worker: str) -> Any:
        """Register ``worker`` and take its liveness lock (released when the returned
        handle's ``release()`` is called or the process dies)."""

    def worker_alive(self, worker: str) -> bool:
        """Whether ``worker``'s liveness lock is held (from any host)."""

    def wait_for_work(self, timeout: float) -> None:
        """Return when work may have arrived, or after ``timeout`` seconds."""

    def size_bytes(self) -> int:
        """Bytes the store takes."""

    def close(self) -> None:
        """Release the store."""
