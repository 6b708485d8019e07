"""The task-level store operations, written once over ``tables.Tables``.

Both stores run these functions inside their own transactions: ``TaskStore`` (below)
is the ``base.Store`` protocol over any ``Backend`` (LMDB, PostgreSQL).  A ``Unit`` holds
the task records one transaction touches: each is read (and, in a write transaction,
locked) once and written once, when the transaction ends.

Nothing here encodes, decodes or prints a value of unbounded size: values arrive as
codec bytes from the worker, and the few values made here (a timeout error, a number
for ``now``) are small.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

import cbor2

from ..hashing import sha256
from ..runtime.records import (
    FINISHED,
    Answer,
    AnswerKind,
    Event,
    Lease,
    Message,
    RecordError,
    Status,
    TaskError,
    TaskRecord,
    Timer,
    TimerKind,
    Waiting,
    WorkerRecord,
    encode_data,
    event_bytes,
    new_task_id,
)
from .base import (
    OUTBOX_KINDS,
    Claimed,
    NewTask,
    OutboxRound,
    Request,
    Round,
    StepCommit,
    StoreError,
    StoreRetry,
)
from .tables import ALL_TASKS, Tables, TaskColumns, TaskFilter

MAX_WAIT = 100 * 365 * 86_400.0  # a century: no timer is armed further away
MAX_TIME = 1e12  # seconds since the epoch past every timer (year 33658)
WAIT_NAMES = {"next-message": "receive"}
EXPORT_FORMAT = "flowmetal-task-export/2"


class KeyReused(TaskError):
    """A start's idempotency key was used by a start that asked for something else."""


class MigrationError(TaskError):
    """A task cannot be exported or imported (running, finished, bad file, duplicate)."""


class Backend(Protocol):
    """What a store implementation provides to ``TaskStore``."""

    location: str
    single_writer: bool  # one write transaction at a time (LMDB): drafts pay off

    def read(self) -> AbstractContextManager[Tables]:
        """A read-only snapshot."""

    def write(self) -> AbstractContextManager[Tables]:
        """A write transaction, committed on leaving the block without error."""

    def hold_worker(self, worker: str) -> Any:
        """Take the worker's liveness lock; a handle with ``release()``."""

    def worker_alive(self, worker: str) -> bool:
        """Whether the worker's liveness lock is held."""

    def wait_for_work(self, timeout: float) -> None:
        """Return when work may have arrived, or after ``timeout``."""

    def size_bytes(self) -> int:
        """Bytes the store takes."""

    def close(self) -> None:
        """Release the store."""


# ---------------------------------------------------------------------------------------
# One transaction's task records


def columns(rec: TaskRecord) -> TaskColumns:
    """What a store indexes of a task record."""
    lease, waiting = rec.lease, rec.waiting
    return TaskColumns(
        str(rec.status), rec.program, rec.name, rec.parent, rec.root, rec.created,
        rec.updated, lease.worker if lease else None, lease.until if lease else None,
        waiting.op if waiting else None, waiting.until if waiting else None)


class Unit:
    """The task records touched in one transaction: read once, written once by ``flush``.

    ``known`` (id -> (stored bytes, record)) carries records from one transaction to the
    next: a record whose stored bytes are unchanged is not decoded again.  Whoever keeps
    it must drop it when a transaction fails, since its records were changed in place.
    A record that cannot be read is remembered in ``unreadable`` and treated as absent.
    """

    def __init__(self, tables: Tables, known: dict[str, tuple[bytes, TaskRecord]] | None = None):
        self.t = tables
        self.cache: dict[str, TaskRecord | None] = {}
        self.dirty: set[str] = set()
        self.known = known
        self.unreadable: dict[str, str] = {}
        # Answers given in this transaction whose values are at hand (atoms, or an HTTP
        # response made in this process) (task id -> (request, value)): once it commits,
        # a worker may hand them over without decoding them.
        self.answers: dict[str, tuple[int, Any]] = {}
        self.woke = False  # something became runnable or a timer was armed
        # A connector's part of this round (``base.OutboxRound``) while the round's steps
        # are committed: the entries they make of its kinds are leased to it at once.
        self.lease_new: Any = None
        self.claimed_new: list = []  # those entries (``outbox.OutboxClaim``)
        self.ended: list[str] = []  # tasks that finished in this transaction
        self._now: float | None = None

    @property
    def now(self) -> float:
        """The store's clock for this transaction."""
        if self._now is None:
            self._now = self.t.clock()
        return self._now

    def prefetch(self, task_ids: list[str]) -> None:
        """Read (and lock) these tasks' records at once, in id order."""
        wanted = [t for t in task_ids if t not in self.cache]
        if wanted:
            found = self.t.get_tasks(wanted)
            for task_id in sorted(wanted):
                self.cache[task_id] = self._decode(task_id, found.get(task_id))

    def get(self, task_id: str) -> TaskRecord | None:
        """The task's record (changes go back with ``put``)."""
        cache = self.cache
        if task_id in cache:
            return cache[task_id]
        rec = cache[task_id] = self._decode(task_id, self.t.get_task(task_id))
        return rec

    def _decode(self, task_id: str, data: bytes | None) -> TaskRecord | None:
        if data is None:
            return None
        kept = self.known.get(task_id) if self.known is not None else None
        if kept is not None and kept[0] == data:
            return kept[1]
        try:
            return TaskRecord.from_bytes(data)
        except RecordError as exc:
            self.unreadable[task_id] = str(exc)
            return None

    def put(self, rec: TaskRecord) -> None:
        """Mark a record as changed."""
        self.cache[rec.id] = rec
        self.dirty.add(rec.id)

    def flush(self) -> None:
        """Write the changed records."""
        t = self.t
        indexed = t.needs_columns
        for task_id in sorted(self.dirty):
            rec = self.cache[task_id]
            data = rec.to_bytes()
            t.put_task(task_id, data, columns(rec) if indexed else None)
            if self.known is not None:
                self.known[task_id] = (data, rec)
        self.dirty.clear()

    def runnable(self, rec: TaskRecord) -> None:
        """Mark the task as having work to do."""
        self.t.runnable_add(rec.id)
        self.woke = True


def event(unit: Unit, task_id: str, kind: str, now: float, **details: Any) -> None:
    """Append an event to a task's log."""
    unit.t.log_append(task_id, event_bytes(now, kind, details))


# ---------------------------------------------------------------------------------------
# Steps


def commit_step(unit: Unit, step: StepCommit, worker: str, lease_for: float) -> bool:
    """Write ``step``; False (and nothing written) if its lease was lost meanwhile."""
    rec = unit.get(step.task_id)
    lease = rec.lease if rec is not None else None
    if lease is None or lease.worker != worker or lease.epoch != step.epoch:
        return False
    if step.base_steps >= 0 and rec.steps != step.base_steps:
        return False  # committed already (a commit whose outcome its worker never learnt)
    now = unit.now
    if step.blocked is not None:
        # Its code cannot be loaded by this worker: it stays as it was, for one that can.
        rec.blocked = step.blocked
        rec.lease = None
        unit.put(rec)
        return True
    t = unit.t
    task_id = rec.id
    if step.took_answer:
        rec.answer = None
    if step.cancel_delivered:
        rec.cancel_delivered = True
    if step.output:
        t.output_append(task_id, step.output)
    for seq in step.consumed:
        t.inbox_delete(task_id, seq)
    rec.steps += 1
    rec.reductions = step.reductions
    rec.updated = now
    rec.blocked = None
    if step.state is not None:
        t.put_cont(task_id, step.state)
        rec.state_bytes = len(step.state)
        rec.programs = sorted(step.programs)
        if rec.trace:
            event(unit, task_id, "step", now, reductions=step.reductions, state=step.state)
    if step.status == "waiting":
        request(unit, rec, step, now)  # an answer given at once makes it runnable again
    elif step.status in ("done", "failed", "cancelled"):
        finish(unit, rec, Status(step.status), now, step.result, step.error,
               step.error_text)
    else:
        rec.status = Status.RUNNABLE
        unit.runnable(rec)
    if rec.status == Status.RUNNABLE and step.keep_lease:
        rec.lease = Lease(worker, step.epoch, now + lease_for)
    else:
        rec.lease = None
    if rec.status != Status.RUNNABLE:
        t.runnable_remove(task_id)
    unit.put(rec)
    return True


BLOCKED_RECHECK = 30.0  # a worker that cannot load a task's code looks again this late


def deliver(unit: Unit, rec: TaskRecord, answer: Answer, now: float,
            atom: Any = None, is_atom: bool = False) -> bool:
    """Store ``answer`` for the task if it still waits on that request: logged, and the
    task becomes runnable.  Stale answers are dropped (False).  ``atom`` is the value
    itself (an atom, or an immutable value made in this process) when a worker may hand
    it over undecoded."""
    waiting = rec.waiting
    if rec.status != Status.WAITING or waiting is None:
        return False
    if waiting.request != answer.request:
        if waiting.op != "select":
            return False
        from .select import as_select_answer

        if not as_select_answer(waiting, answer):
            return False
    rec.answer = answer
    if waiting.op in OUTBOX_KINDS:
        unit.t.outbox_delete(rec.id, answer.request)
    elif waiting.op == "select":
        from .select import drop_other_arms

        drop_other_arms(unit, rec, waiting)
    if is_atom:
        unit.answers[rec.id] = (answer.request, atom)
    rec.status = Status.RUNNABLE
    rec.waiting = None
    rec.updated = now
    if waiting.until is not None:
        unit.t.timer_delete(waiting.until, rec.id, answer.request)
    event(unit, rec.id, "answer", now, request=answer.request, op=waiting.op, ok=answer.ok,
          value=answer.value)
    unit.runnable(rec)
    unit.put(rec)
    return True


def answer_value(unit: Unit, rec: TaskRecord, request_id: int, ok: bool, value: Any,
                 now: float) -> bool:
    """Deliver a small value made here (a number, nil, a runtime error)."""
    atom = type(value) in (int, float, type(None))
    return deliver(unit, rec, Answer(request_id, ok, encode_data(value)), now, value, atom)


def task_error(kind: str, message: str, data: Any = None) -> Any:
    """An error value raised into a task by the runtime (no Flowmetal backtrace)."""
    from ..machine import error_value
    from ..values import Vector

    return error_value(kind, message, data, Vector())


def _error(kind: str, message: str, **data: Any) -> Any:
    from ..primitives.effects import TaskId
    from ..values import Map, kw

    fields = {kw(k): (TaskId(v) if k == "task" else kw(v) if k in ("op", "limit") else v)
              for k, v in data.items()}
    return task_error(kind, message, Map(fields) if fields else None)


def fail_request(unit: Unit, rec: TaskRecord, request_id: int, kind: str, message: str,
                 now: float, **data: Any) -> None:
    """Answer the request with a runtime error."""
    answer_value(unit, rec, request_id, False, _error(kind, message, **data), now)


def finish(unit: Unit, rec: TaskRecord, status: Status, now: float, result: bytes | None = None,
           error: bytes | None = None, error_text: str = "") -> None:
    """Mark the task finished, disarm its timers and answer everyone joined on it."""
    t = unit.t
    waiting = rec.waiting
    if waiting is not None and waiting.until is not None:
        t.timer_delete(waiting.until, rec.id, waiting.request)
    if waiting is not None and waiting.op in OUTBOX_KINDS:
        t.outbox_delete(rec.id, waiting.request)
    elif waiting is not None and waiting.op == "select":
        from .select import drop_other_arms

        drop_other_arms(unit, rec, waiting)
    if rec.limits.deadline:
        t.timer_delete(rec.created + rec.limits.deadline, rec.id, 0)
    rec.status = status
    rec.waiting = None
    rec.answer = None
    rec.lease = None
    rec.updated = now
    unit.ended.append(rec.id)
    if status == Status.DONE:
        rec.result = result
        event(unit, rec.id, "done", now, value=result)
    else:
        rec.error = error
        event(unit, rec.id, str(status), now, error=error, text=error_text)
    t.runnable_remove(rec.id)
    joiners, rec.joiners = rec.joiners, []
    unit.prefetch([j for j, _ in joiners])
    for joiner_id, request_id in joiners:
        joiner = unit.get(joiner_id)
        if joiner is None:
            continue
        if status == Status.DONE:
            deliver(unit, joiner, Answer(request_id, True, result), now)
        else:
            deliver(unit, joiner, Answer(request_id, False, error, AnswerKind.TASK_FAILED,
                                         task=rec.id, status=str(status)), now)
    unit.put(rec)


def fail(unit: Unit, rec: TaskRecord, kind: str, message: str, now: float, **data: Any
         ) -> None:
    """Fail the task with a runtime error (limits, corrupt state)."""
    finish(unit, rec, Status.FAILED, now, error=encode_data(_error(kind, message, **data)),
           error_text=message)


def fire_timers(unit: Unit, limit: int = 10_000) -> int:
    """Handle the timers due now; how many fired."""
    now = unit.now
    due = unit.t.timers_due(now, limit)
    if not due:
        return 0
    unit.prefetch([task_id for _, task_id, _, _ in due])
    for when, task_id, request_id, data in due:
        unit.t.timer_delete(when, task_id, request_id)
        rec = unit.get(task_id)
        if rec is None or rec.finished:
            continue
        try:
            timer = Timer.from_bytes(data)
        except RecordError:
            continue
        if timer.kind == TimerKind.WAKE:
            answer_value(unit, rec, request_id, True, None, now)
        elif timer.kind == TimerKind.TIMEOUT and timer.op == "select":
            from .select import timed_out

            timed_out(unit, rec, request_id, now)
        elif timer.kind == TimerKind.TIMEOUT and timer.op == "task-event":
            from ..sequences.task_events import timed_out

            timed_out(unit, rec, request_id, timer.seconds, now)
        elif timer.kind == TimerKind.TIMEOUT:
            op = WAIT_NAMES.get(timer.op, timer.op or "wait")
            fail_request(unit, rec, request_id, "timeout",
                         f"{op} timed out after {round(timer.seconds, 3):g} s", now, op=op)
        elif timer.kind == TimerKind.DEADLINE:
            fail(unit, rec, "limit-error",
                 f"task deadline of {rec.limits.deadline:g} s passed", now, limit="deadline")
    return len(due)


def wait(unit: Unit, rec: TaskRecord, request_id: int, op: str, now: float,
         seconds: float | None, until: float | None = None,
         kind: TimerKind = TimerKind.TIMEOUT, **extra: Any) -> None:
    """Leave the task waiting on its request, with a timer when the wait ends (``until``,
    or ``seconds`` from now, or the task's default wait).  A wait of infinite length
    (``:timeout nil``, a default wait of ``none``) arms no timer: it waits forever."""
    if until is None:
        if seconds is None:
            extra["by_default"] = True
            seconds = rec.limits.wait
        until = now + seconds
    if until == math.inf:
        rec.waiting = Waiting(request_id, op, None, **extra)
        return
    if not until >= now:  # in the past, or NaN
        until = now
    until = min(until, now + MAX_WAIT)
    rec.waiting = Waiting(request_id, op, until, **extra)
    unit.t.timer_add(until, rec.id, request_id,
                     Timer(kind, op, max(0.0, until - now)).to_bytes())
    unit.woke = True


def request(unit: Unit, rec: TaskRecord, step: StepCommit, now: float) -> None:
    """Record the step's request and do what can be done at once."""
    req = step.request
    rec.request_seq += 1
    request_id = rec.request_seq
    rec.status = Status.WAITING
    rec.waiting = Waiting(request_id, req.op)
    handler = HANDLERS.get(req.op)
    if handler is None:
        fail_request(unit, rec, request_id, "effect-error", f"unknown effect {req.op}", now)
        return
    handler(unit, rec, request_id, req, step, now)
    # A request answered at once is logged once, by its answer (which names the op).
    if rec.status == Status.WAITING:
        event(unit, rec.id, "request", now, request=request_id, op=req.op, args=req.text)


def handle_sleep(unit, rec, request_id, req: Request, step, now) -> None:
    wait(unit, rec, request_id, "sleep", now, req.seconds, kind=TimerKind.WAKE)


def handle_now(unit, rec, request_id, req, step, now) -> None:
    answer_value(unit, rec, request_id, True, now, now)


def handle_random(unit, rec, request_id, req, step, now) -> None:
    rng = int.from_bytes(os.urandom(8), "big")
    value = rng % req.below if req.below is not None else rng / 2**64
    answer_value(unit, rec, request_id, True, value, now)


def handle_send(unit, rec, request_id, req, step, now) -> None:
    target = unit.get(req.to)
    if target is None:
        fail_request(unit, rec, request_id, "no-such-task", f"send: no task {req.to}", now,
                     task=req.to)
        return
    if target.status == Status.MOVED:
        fail_request(unit, rec, request_id, "task-moved",
                     f"send: task {req.to} moved to another store", now, task=req.to)
        return
    if not target.finished:
        post(unit, target, req.message, rec.id, now)
    answer_value(unit, rec, request_id, True, None, now)


def post(unit: Unit, target: TaskRecord, message: bytes, sender: str | None, now: float) -> int:
    """Queue an encoded message in the target's inbox, answering a receive waiting for
    one; its sequence number."""
    target.inbox_seq += 1
    seq = target.inbox_seq
    unit.put(target)
    unit.t.inbox_put(target.id, seq, Message(sender, now, message).to_bytes())
    event(unit, target.id, "message", now, seq=seq, sender=sender, value=message)
    waiting = target.waiting
    if target.status == Status.WAITING and waiting is not None and \
            waiting.op == "next-message" and seq > waiting.after:
        deliver(unit, target, Answer(waiting.request, True, message, AnswerKind.MESSAGE,
                                     seq=seq, deadline=waiting.deadline), now)
    elif target.status == Status.WAITING and waiting is not None and waiting.op == "select":
        from .select import receive_arm

        arm = receive_arm(waiting, seq)
        if arm is not None:
            deliver(unit, target, Answer(arm, True, message, AnswerKind.MESSAGE, seq=seq),
                    now)
    return seq


def handle_next_message(unit, rec, request_id, req: Request, step, now) -> None:
    deadline = req.deadline
    if deadline is not None and type(deadline) not in (int, float):
        fail_request(unit, rec, request_id, "type-error",
                     "receive: the deadline must be a number", now)
        return
    # (receive) passes its own :timeout on every turn of its loop: none given is the
    # default wait, also once a passed-over message set the deadline.
    by_default = req.timeout is None
    if deadline is None:
        deadline = now + (rec.limits.wait if by_default else req.timeout)
    consumed = set(step.consumed)
    for seq, data in unit.t.inbox_items(rec.id, req.after):
        if seq in consumed:
            continue
        try:
            message = Message.from_bytes(data)
        except RecordError:
            continue
        deliver(unit, rec, Answer(request_id, True, message.value, AnswerKind.MESSAGE,
                                  seq=seq, deadline=deadline), now)
        return
    wait(unit, rec, request_id, "next-message", now, None, until=deadline, after=req.after,
         deadline=deadline, by_default=by_default)


def request_cancel(unit: Unit, rec: TaskRecord, now: float, by: str | None = None) -> None:
    """Ask an unfinished task to stop: a wait is answered with ``{:type :cancelled}`` at
    once, a runnable task sees it at its next step."""
    rec.cancel = True
    rec.cancel_delivered = False
    event(unit, rec.id, "cancel", now, **({"by": by} if by else {}))
    if rec.status == Status.WAITING and rec.waiting is not None:
        fail_request(unit, rec, rec.waiting.request, "cancelled",
                     f"task {rec.id} was cancelled", now)
        rec.cancel_delivered = True  # the answer is the cancellation
    unit.put(rec)


def handle_cancel(unit, rec, request_id, req: Request, step, now) -> None:
    """(cancel task): true if the task was asked to stop, false if it had ended."""
    from ..values import FALSE, TRUE

    target = rec if req.task == rec.id else unit.get(req.task)
    if target is None or target.status == Status.MOVED:
        what = "no task" if target is None else "moved away:"
        fail_request(unit, rec, request_id, "no-such-task", f"cancel: {what} {req.task}",
                     now, task=req.task)
        return
    if target.finished:
        answer_value(unit, rec, request_id, True, FALSE, now)
        return
    if target is not rec:
        request_cancel(unit, target, now, by=rec.id)
    else:
        # Cancelling itself: the error is raised when the task runs on, after this
        # request's answer.
        rec.cancel, rec.cancel_delivered = True, False
        event(unit, rec.id, "cancel", now, by=rec.id)
    answer_value(unit, rec, request_id, True, TRUE, now)


def handle_join(unit, rec, request_id, req: Request, step, now) -> None:
    target = unit.get(req.task)
    if target is None or target.status == Status.MOVED:
        what = "no task" if target is None else "moved away:"
        fail_request(unit, rec, request_id, "no-such-task", f"join: {what} {req.task}", now,
                     task=req.task)
    elif target.status == Status.DONE:
        deliver(unit, rec, Answer(request_id, True, target.result), now)
    elif target.finished:
        deliver(unit, rec, Answer(request_id, False, target.error, AnswerKind.TASK_FAILED,
                                  task=target.id, status=str(target.status)), now)
    else:
        target.joiners.append((rec.id, request_id))
        unit.put(target)
        wait(unit, rec, request_id, "join", now, req.timeout, task=target.id)


def handle_spawn(unit, rec, request_id, req: Request, step, now) -> None:
    if req.child is None:
        deliver(unit, rec, Answer(request_id, False, req.error), now)
        return
    child = req.child.record
    while unit.get(child.id) is not None:
        child.id = child.root = new_task_id()
    child.parent = rec.id
    child.root = rec.root or rec.id
    add_task(unit, req.child, now)
    rec.children.append(child.id)
    from ..primitives.effects import TaskId

    deliver(unit, rec, Answer(request_id, True, encode_data(TaskId(child.id))), now,
            TaskId(child.id), True)


def handle_env(unit, rec, request_id, req: Request, step, now) -> None:
    value = os.environ.get(req.to or "")
    if value is not None:
        # Bytes that are not UTF-8 (kept by Python as lone surrogates) read as U+FFFD.
        value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    answer_value(unit, rec, request_id, True, value, now)


def handle_callback(unit, rec, request_id, req: Request, step, now) -> None:
    from .callbacks import handle_callback as make

    make(unit, rec, request_id, req, step, now)


def handle_await(unit, rec, request_id, req: Request, step, now) -> None:
    from .callbacks import handle_await as take

    take(unit, rec, request_id, req, step, now)


def handle_select(unit, rec, request_id, req: Request, step, now) -> None:
    from .select import handle_select as choose

    choose(unit, rec, request_id, req, step, now)


def handle_outbox(unit, rec, request_id, req: Request, step, now) -> None:
    from .outbox import handle_outbox_request

    handle_outbox_request(unit, rec, request_id, req, step, now)


def handle_sequences(unit, rec, request_id, req: Request, step, now) -> None:
    from ..sequences.effects import HANDLERS as SEQUENCE_HANDLERS

    SEQUENCE_HANDLERS[req.op](unit, rec, request_id, req, step, now)


HANDLERS: dict[str, Callable] = {
    "env": handle_env,
    "http": handle_outbox,
    "task-event": handle_sequences,
    "enqueue-run": handle_sequences,
    "evaluations": handle_sequences,
    "sequence-run": handle_sequences,
    "callback": handle_callback,
    "await": handle_await,
    "select": handle_select,
    "sleep": handle_sleep,
    "now": handle_now,
    "random": handle_random,
    "send": handle_send,
    "next-message": handle_next_message,
    "join": handle_join,
    "spawn": handle_spawn,
    "cancel": handle_cancel,
}


def add_task(unit: Unit, new: NewTask, now: float) -> None:
    """Store a new task: its record, its first continuation, runnable, its deadline armed
    and a "created" log entry."""
    rec = new.record
    rec.created = rec.updated = now
    rec.root = rec.root or rec.id
    rec.state_bytes = len(new.state)
    rec.status = Status.RUNNABLE
    unit.t.put_cont(rec.id, new.state)
    unit.runnable(rec)
    unit.put(rec)
    schedule_deadline(unit, rec)
    event(unit, rec.id, "created", now, program=rec.program, **new.logged)


def schedule_deadline(unit: Unit, rec: TaskRecord) -> None:
    """Arm the timer that fails the task when its deadline passes."""
    if rec.limits.deadline:
        unit.t.timer_add(rec.created + rec.limits.deadline, rec.id, 0,
                         Timer(TimerKind.DEADLINE).to_bytes())
        unit.woke = True


# ---------------------------------------------------------------------------------------
# Claiming


RECHECK_ELSEWHERE = 1.0
KNOWN_WAITING = 4096  # records of tasks waiting on HTTP requests kept between rounds


class Claims:
    """What a worker's claims carry from one round to the next: the records it wrote
    (``known``), and when to look again at tasks another worker holds."""

    def __init__(self) -> None:
        self.known: dict[str, tuple[bytes, TaskRecord]] = {}
        self.elsewhere: dict[str, float] = {}
        self.held: set[str] = set()


def claim(unit: Unit, worker: str, claims: Claims, limit: int, lease_for: float,
          held: dict[str, int], among: list[str] | None = None) -> list[Claimed]:
    """Lease up to ``limit`` runnable tasks to ``worker`` (only tasks ``among`` these
    ids, if given); a task it held before but does not get now (more are runnable than it
    takes) has its lease given up."""
    now = unit.now
    t = unit.t
    elsewhere = claims.elsewhere
    if len(elsewhere) > 8 * max(limit, 1):
        elsewhere = claims.elsewhere = {k: u for k, u in elsewhere.items() if u > now}
    found = t.claimable(worker, now, limit * 4) if among is None else among
    candidates = [c for c in found if elsewhere.get(c, 0) <= now]
    unit.prefetch(candidates[:limit * 2])
    out: list[Claimed] = []
    for task_id in candidates:
        if len(out) >= limit:
            break
        rec = unit.get(task_id)
        if rec is None:
            if task_id in unit.unreadable:
                continue  # failed by the caller, which sees ``unreadable``
            t.runnable_remove(task_id)
            continue
        if rec.status != Status.RUNNABLE:
            t.runnable_remove(task_id)
            continue
        lease = rec.lease
        if lease is not None and lease.until > now and lease.worker != worker:
            elsewhere[task_id] = min(lease.until, now + RECHECK_ELSEWHERE)
            continue
        if lease is None or lease.worker != worker or lease.until <= now:
            rec.epoch += 1
            rec.lease = Lease(worker, rec.epoch, now + lease_for)
            unit.put(rec)
        state = None if held.get(task_id) == rec.lease.epoch else t.get_cont(task_id)
        out.append(Claimed(rec, state))
    taken = {c.record.id for c in out}
    for task_id in claims.held - taken:
        rec = unit.get(task_id)
        if rec is not None and rec.lease is not None and rec.lease.worker == worker:
            rec.lease = None
            unit.put(rec)
    claims.held = taken
    # Kept too: records of tasks waiting on a connector's request (most are answered in
    # a round or two, often by this process's connector), a bounded number of them.
    waiting = 0
    for task_id, (_, rec) in list(claims.known.items()):
        if task_id in taken:
            continue
        if rec.waiting is not None and rec.waiting.op == "http" and waiting < KNOWN_WAITING:
            waiting += 1
            continue
        del claims.known[task_id]
    return out


def fail_unreadable(unit: Unit, task_id: str, reason: str, now: float) -> None:
    """Replace an unreadable task record by a failed one that says why (keeping what can
    be kept: the id); the worker goes on."""
    rec = TaskRecord(task_id, "?", "", Status.FAILED, created=now, updated=now, root=task_id)
    rec.error = encode_data(task_error("corrupt-state", f"task {task_id}: {reason}"))
    unit.t.runnable_remove(task_id)
    event(unit, task_id, "failed", now, error=rec.error, text=reason)
    unit.put(rec)


# ---------------------------------------------------------------------------------------
# The store protocol over a backend


START_KEY = "start-key:"  # settings: the SHA-256 of a start's idempotency key -> its task
RETRIES = 8  # attempts of a transaction that the store says to run again at once


def retrying(method: Callable) -> Callable:
    """Run a store operation again when its transaction asks to be (``StoreRetry``): each
    attempt is a whole new transaction, and a failed one wrote nothing."""
    @functools.wraps(method)
    def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(RETRIES):
            try:
                return method(self, *args, **kwargs)
            except StoreRetry:
                if attempt == RETRIES - 1:
                    raise
        raise AssertionError("unreachable")
    return run


class TaskStore:
    """``base.Store`` over a ``Backend``: every operation one transaction of it."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.location = backend.location
        self.claims: dict[str, Claims] = {}
        self.drafts: dict[str, list] = {}

    @property
    def path(self) -> str:
        """The store's location (a directory, or a URL)."""
        return self.location

    # reading -------------------------------------------------------------------------

    @contextmanager
    def view(self) -> Iterator[StoreView]:
        """A read-only snapshot."""
        with self.backend.read() as t:
            yield StoreView(t)

    def get(self, task_id: str) -> TaskRecord:
        """The task's record (TaskError if there is none)."""
        with self.view() as v:
            rec = v.task(task_id)
            if rec is None:
                problem = v.unreadable.get(task_id)
                raise TaskError(f"task {task_id}: {problem}" if problem else
                                f"no task {task_id}")
        return rec

    # programs --------------------------------------------------------------------------

    @retrying
    def put_programs(self, records: dict[str, dict]) -> None:
        """Store program records by hash (a stored hash is never rewritten)."""
        with self.backend.write() as t:
            _put_programs(t, records)

    @retrying
    def deploy(self, name: str, digest: str, records: dict[str, dict] | None = None) -> None:
        """Make ``name`` stand for program ``digest`` (storing ``records`` first)."""
        with self.backend.write() as t:
            _put_programs(t, records or {})
            if t.get_program(digest) is None:
                raise TaskError(f"program {digest[:12]} is not in the store")
            t.put_name(name, digest)

    # tasks -----------------------------------------------------------------------------

    @retrying
    def start(self, task: NewTask, programs: dict[str, dict] | None = None,
              names: dict[str, str] | None = None, key: str | None = None,
              fingerprint: str | None = None) -> str:
        """Store the programs (and names) and a new runnable task; its id.  With an
        idempotency ``key`` already used by an earlier start, nothing is stored and the
        id is that start's (the caller can tell by comparing it with the new record's);
        ``KeyReused`` if both starts gave a ``fingerprint`` of what they asked for and
        the two differ."""
        if key is not None:
            key = _key_digest(key)
        kept = task.record.id if fingerprint is None else f"{task.record.id} {fingerprint}"
        with self.backend.write() as t:
            if key is not None:
                earlier = t.setting_get(START_KEY + key)
                if earlier is not None:
                    earlier_id, _, asked = earlier.partition(" ")
                    if fingerprint is not None and asked and asked != fingerprint:
                        raise KeyReused(f"the idempotency key was used by the start of "
                                        f"task {earlier_id}, which asked for something "
                                        "else")
                    return earlier_id
                t.setting_put(START_KEY + key, kept)
            _put_programs(t, programs or {})
            for name, digest in (names or {}).items():
                t.put_name(name, digest)
            unit = Unit(t)
            rec = task.record
            while unit.get(rec.id) is not None:
                rec.id = new_task_id()
                rec.root = rec.id
            add_task(unit, task, unit.now)
            unit.flush()
            if key is not None:
                t.setting_put(START_KEY + key, rec.id if fingerprint is None else
                              f"{rec.id} {fingerprint}")
        return rec.id

    @retrying
    def round(self, worker: str, steps: list[StepCommit], claim_limit: int,
              lease_seconds: float, held: dict[str, int] | None = None,
              watch: str | None = None, outbox: OutboxRound | None = None,
              on_sent: Callable[[Round], None] | None = None) -> Round:
        """A worker's round in one transaction (see ``base.Store.round``); with
        ``outbox``, its connector's round too."""
        claims = self.claims.setdefault(worker, Claims())
        drafts = self.drafts.pop(worker, None)
        try:
            with self.backend.write() as t:
                unit = Unit(t, claims.known)
                drafts = drafts if drafts is not None and len(drafts) == len(steps) else \
                    [None] * len(steps)
                unit.prefetch([s.task_id for s, d in zip(steps, drafts) if d is None])
                if outbox is not None and outbox.limit > 0:
                    unit.lease_new = outbox
                committed = []
                for step, draft in zip(steps, drafts):
                    if draft is not None and _apply_draft(unit, draft, step):
                        committed.append(True)
                        continue
                    committed.append(commit_step(unit, step, worker, lease_seconds))
                    if step.blocked is not None:
                        claims.elsewhere[step.task_id] = unit.now + BLOCKED_RECHECK
                unit.lease_new = None
                settled, outbox_claimed = [], []
                if outbox is not None:
                    from .outbox import claim_entries, settle_entries, still_claimed

                    settled = settle_entries(unit, outbox.connector, outbox.results) \
                        if outbox.results else []
                    outbox_claimed = still_claimed(unit)
                    room = outbox.limit - len(outbox_claimed)
                    if room > 0 and outbox.scan:
                        outbox_claimed += claim_entries(unit, outbox.connector, outbox.kinds,
                                                        room, outbox.lease_seconds)
                fired = fire_timers(unit)
                among = None
                if watch:
                    among = [r.id for r in task_tree(unit, watch)
                             if r.status == Status.RUNNABLE]
                claimed = claim(unit, worker, claims, claim_limit, lease_seconds,
                                held or {}, among) if claim_limit else []
                for task_id, reason in unit.unreadable.items():
                    fail_unreadable(unit, task_id, reason, unit.now)
                output = _take_output(unit, watch) if watch else []
                unit.flush()
                result = Round(committed, claimed, unit.answers, output, fired, steps,
                               unit.ended, settled, outbox_claimed)
                if on_sent is not None and hasattr(t, "on_sent"):
                    t.on_sent = functools.partial(on_sent, result)
        except BaseException:
            claims.known.clear()
            claims.held.clear()
            raise
        return result

    def prepare(self, worker: str, steps: list[StepCommit], lease_seconds: float,
                always: bool = False) -> None:
        """Work out local commits ahead of the round (one-writer stores only, while other
        processes wait for the writer's lock, or ``always``)."""
        if not getattr(self.backend, "single_writer", False):
            return
        if not always and not self.backend.contended():
            return
        from . import drafts

        known = self.claims.setdefault(worker, Claims()).known
        self.drafts[worker] = [drafts.prepare(step, known.get(step.task_id), worker,
                                              lease_seconds) for step in steps]

    @retrying
    def commit_one(self, worker: str, step: StepCommit, lease_seconds: float) -> bool:
        """Commit one step on its own (after a round that could not be committed)."""
        with self.backend.write() as t:
            unit = Unit(t)
            ok = commit_step(unit, step, worker, lease_seconds)
            unit.flush()
        return ok

    @retrying
    def fail_task(self, task_id: str, kind: str, message: str) -> None:
        """Fail an unfinished task with a runtime error (a step that cannot be
        committed, a record that cannot be read)."""
        with self.backend.write() as t:
            unit = Unit(t)
            rec = unit.get(task_id)
            if rec is None and task_id in unit.unreadable:
                fail_unreadable(unit, task_id, unit.unreadable[task_id], unit.now)
            elif rec is not None and not rec.finished:
                fail(unit, rec, kind, message, unit.now)
            unit.flush()

    def release(self, worker: str) -> int:
        """Give up every lease ``worker`` holds on runnable tasks; how many."""
        return self._release(lambda lease: lease.worker == worker, None)

    def release_dead(self, task_ids: list[str] | None = None) -> int:
        """Give up the leases of workers whose liveness lock is free."""
        alive: dict[str, bool] = {}

        def gone(lease: Lease) -> bool:
            if lease.worker not in alive:
                alive[lease.worker] = self.backend.worker_alive(lease.worker)
            return not alive[lease.worker]
        return self._release(gone, task_ids)

    @retrying
    def _release(self, which: Callable[[Lease], bool], task_ids: list[str] | None) -> int:
        cleared = 0
        with self.backend.write() as t:
            unit = Unit(t)
            ids = task_ids if task_ids is not None else t.leased()
            unit.prefetch(list(ids))
            for task_id in ids:
                rec = unit.get(task_id)
                if rec is not None and rec.lease is not None and which(rec.lease):
                    rec.lease = None
                    unit.put(rec)
                    cleared += 1
            unit.flush()
        return cleared

    # settings, access tokens, callbacks ------------------------------------------------

    def setting(self, key: str) -> str | None:
        """A store-wide setting."""
        with self.backend.read() as t:
            return t.setting_get(key)

    def start_key(self, key: str) -> str | None:
        """The task an earlier ``start`` with this idempotency key made, if any."""
        kept = self.setting(START_KEY + _key_digest(key))
        return None if kept is None else kept.partition(" ")[0]

    @retrying
    def set_setting(self, key: str, value: str | None) -> None:
        """Set (None: remove) a store-wide setting."""
        with self.backend.write() as t:
            t.setting_put(key, value)

    @retrying
    def transact(self, work: Callable[[Unit], Any]) -> Any:
        """``work(unit)`` in one write transaction (its records written back); its value.
        ``work`` may run more than once (a retried transaction): it must not act on the
        world, only on the unit."""
        with self.backend.write() as t:
            unit = Unit(t)
            value = work(unit)
            unit.flush()
        return value

    @retrying
    def update_setting(self, key: str, change: Callable[[str | None], str | None]) -> str | None:
        """Replace a setting by ``change(old)`` (None: absent / remove) in one write
        transaction, safe against concurrent updates; the new value.  ``change`` may run
        more than once (a retried transaction), so it must not act on the world."""
        with self.backend.write() as t:
            value = change(t.setting_get(key, lock=True))
            t.setting_put(key, value)
        return value

    @retrying
    def token_create(self, name: str, scope: str) -> tuple[str, Any]:
        """Make an access token: (the token, shown only now, and its record)."""
        from . import access

        with self.backend.write() as t:
            return access.create(t, name, scope, t.clock())

    def tokens(self) -> list:
        """Every access token's record (``TokenRecord``), oldest first."""
        from . import access

        with self.backend.read() as t:
            return sorted((rec for _, rec in access.records(t)), key=lambda r: r.created)

    @retrying
    def token_revoke(self, token_id: str) -> Any:
        """Revoke a token by its id (or a unique prefix); its record."""
        from . import access

        with self.backend.write() as t:
            return access.revoke(t, token_id, t.clock())

    def token_check(self, token: str) -> Any:
        """The record of an access token, or None if the store has no such token."""
        from . import access

        with self.backend.read() as t:
            return access.check(t, token)

    def callback_secret(self, token: str) -> tuple[bool, str | None]:
        """(whether a callback has this token, its signing secret)."""
        from .callbacks import digest, secret_of

        with self.backend.read() as t:
            return secret_of(Unit(t), digest(token))

    @retrying
    def callback_deliver(self, token: str, value: bytes, size: int) -> Any:
        """A request (its value encoded, ``size`` bytes of body) arrived at the callback
        with this token: a ``callbacks.Delivery``."""
        from .callbacks import deliver_request, digest

        with self.backend.write() as t:
            unit = Unit(t)
            outcome = deliver_request(unit, digest(token), value, size)
            unit.flush()
        return outcome

    # the outbox (see ``outbox``) -------------------------------------------------------

    @retrying
    def outbox_claim(self, connector: str, kinds: tuple[str, ...], limit: int,
                     lease_seconds: float) -> list:
        """Lease up to ``limit`` due outbox entries of these kinds to ``connector``
        (``outbox.OutboxClaim``s)."""
        from .outbox import claim_entries

        with self.backend.write() as t:
            unit = Unit(t)
            claimed = claim_entries(unit, connector, kinds, limit, lease_seconds)
            unit.flush()
        return claimed

    @retrying
    def outbox_settle(self, connector: str, results: list) -> list[bool]:
        """Record the connector's attempts (``outbox.OutboxResult``s): answers delivered
        and entries removed, or retries scheduled; per result, whether it was taken."""
        from .outbox import settle_entries

        with self.backend.write() as t:
            unit = Unit(t)
            taken = settle_entries(unit, connector, results)
            unit.flush()
        return taken

    @retrying
    def outbox_renew(self, connector: str, held: list[tuple[str, int, int]],
                     lease_seconds: float) -> list[bool | None]:
        """Extend the connector's leases on (task, request, epoch) entries it is working
        on; per entry, whether it still holds it (None: the entry is gone, as when the
        task stopped waiting for it)."""
        from .outbox import renew_entries

        with self.backend.write() as t:
            kept = renew_entries(Unit(t), connector, held, lease_seconds)
        return kept

    @retrying
    def outbox_release(self, connector: str) -> int:
        """Give up every outbox lease ``connector`` holds; how many."""
        from .outbox import release_entries

        with self.backend.write() as t:
            unit = Unit(t)
            released = release_entries(unit, connector)
            unit.flush()
        return released

    @retrying
    def remove(self, task_ids: list[str]) -> list[TaskRecord]:
        """Delete finished tasks with their continuations, inboxes and journals, all or
        none; their records.  TaskError if one is unknown or unfinished."""
        with self.backend.write() as t:
            unit = Unit(t)
            unit.prefetch(list(task_ids))
            gone = []
            for task_id in task_ids:
                rec = unit.get(task_id)
                if rec is None:
                    raise TaskError(f"no task {task_id}")
                if not rec.finished:
                    raise TaskError(f"cannot remove task {task_id}: it is {rec.status} "
                                    f"(cancel it first)")
                gone.append(rec)
            for rec in gone:
                _delete(t, rec)
        return gone

    @retrying
    def _prune_page(self, statuses: tuple[str, ...], older_than: float, after: str,
                    page: int) -> tuple[list[str], str | None]:
        """One page of ``prune``: the ids deleted, and where the next page starts (None
        at the end)."""
        wanted = tuple(s for s in statuses if Status(s) in FINISHED)
        with self.backend.write() as t:
            unit = Unit(t)
            before = unit.now - older_than
            scanned = t.scan_tasks(TaskFilter(status=wanted), after, page)
            found = [rec for d in scanned if (rec := StoreView(t)._record("", d)) is not None]
            unit.prefetch(sorted({r.parent for r in found if r.parent}))
            gone = []
            for rec in found:
                parent = unit.get(rec.parent) if rec.parent else None
                if rec.updated < before and (parent is None or parent.finished):
                    _delete(t, rec)
                    gone.append(rec.id)
        return gone, (found[-1].id if len(scanned) == page and found else None)

    def prune(self, statuses: tuple[str, ...], older_than: float, page: int = 500
              ) -> list[str]:
        """Delete the finished tasks of these statuses that ended more than
        ``older_than`` seconds ago (the store's clock), a page per transaction; a task
        whose parent has not finished is kept.  The ids deleted."""
        if not statuses:
            return []
        out: list[str] = []
        after: str | None = ""
        while after is not None:
            gone, after = self._prune_page(statuses, older_than, after, page)
            out += gone
        return out

    @retrying
    def send(self, task_id: str, message: bytes, sender: str | None = None) -> int:
        """Queue an encoded message for an unfinished task; its sequence number."""
        with self.backend.write() as t:
            unit = Unit(t)
            rec = _live_task(unit, task_id, "send to")
            seq = post(unit, rec, message, sender, unit.now)
            unit.flush()
        return seq

    @retrying
    def cancel(self, task_id: str) -> TaskRecord:
        """Ask the task to stop: it sees a ``{:type :cancelled}`` error where it stands
        (at once if it waits, else at its next step)."""
        with self.backend.write() as t:
            unit = Unit(t)
            rec = _live_task(unit, task_id, "cancel")
            request_cancel(unit, rec, unit.now)
            unit.flush()
        return rec

    @retrying
    def upgrade(self, task_id: str, seen: TaskRecord, seen_state: bytes, state: bytes,
                program: str, programs: list[str], records: dict[str, dict]) -> TaskRecord:
        """Replace an unfinished task's continuation by ``state`` (its code moved onto
        ``program`` and ``programs``, whose records are stored first), if the task is
        still as ``seen`` and ``seen_state`` say (no step committed since) and no live
        worker holds it; its new record.  TaskError otherwise."""
        with self.backend.write() as t:
            unit = Unit(t)
            rec = _live_task(unit, task_id, "upgrade")
            now = unit.now
            if rec.steps != seen.steps or t.get_cont(task_id) != seen_state:
                raise TaskError(f"task {task_id} ran a step meanwhile; plan the upgrade "
                                "again")
            if rec.lease is not None and rec.lease.until > now and \
                    self.backend.worker_alive(rec.lease.worker):
                raise TaskError(f"task {task_id} is running on worker {rec.lease.worker}; "
                                "upgrade it while it waits")
            _put_programs(t, records)
            t.put_cont(task_id, state)
            event(unit, task_id, "upgraded", now, program=program, previous=rec.program)
            rec.program = program
            rec.programs = sorted(programs)
            rec.state_bytes = len(state)
            rec.blocked = None
            rec.updated = now
            if rec.status == Status.RUNNABLE:
                unit.runnable(rec)
            unit.put(rec)
            unit.flush()
        return rec

    # migration -------------------------------------------------------------------------

    def export_task(self, task_id: str, write: Callable[[dict], None]) -> TaskRecord:
        """Hand the task's state to ``write`` and mark it moved, in one transaction."""
        with self.backend.write() as t:
            unit = Unit(t)
            rec = unit.get(task_id)
            if rec is None:
                raise MigrationError(f"no task {task_id}")
            if rec.status == Status.MOVED:
                raise MigrationError(f"task {task_id} has already moved to another store")
            if rec.finished:
                raise MigrationError(f"task {task_id} is {rec.status}: only unfinished "
                                     "tasks can move")
            now = unit.now
            if rec.lease is not None and rec.lease.until > now and \
                    self.backend.worker_alive(rec.lease.worker):
                raise MigrationError(f"task {task_id} is running on worker "
                                     f"{rec.lease.worker}; stop that worker (or wait "
                                     "until the task waits) and export again")
            exported = rec.copy()
            exported.lease = None
            programs = {}
            for digest in sorted(set(rec.programs) | {rec.program}):
                data = t.get_program(digest)
                if data is not None:
                    programs[digest] = cbor2.loads(data)
            view = StoreView(t)
            write({
                "format": EXPORT_FORMAT, "exported": now, "store": self.location,
                "task": exported.to_bytes(), "cont": t.get_cont(task_id),
                "programs": programs,
                "inbox": [[seq, m.to_bytes()] for seq, m in view.inbox(task_id)],
                "output": [[seq, text] for seq, text in t.output_items(task_id)],
                "log": [[seq, data] for seq, data in t.log_items(task_id)],
                "wait": None if rec.waiting is None or rec.waiting.until is None else
                [rec.waiting.until, rec.waiting.request,
                 _timer_of(rec.waiting, rec.updated).to_bytes()],
                "outbox": [[request, _released(data)]
                           for _, request, data in t.outbox_items(task_id)],
                "callbacks": [[key, data] for key, data in t.callbacks_of(task_id)],
            })
            _mark_moved(unit, rec, now)
            unit.flush()
        return exported

    @retrying
    def import_task(self, data: dict, check: Callable[[TaskRecord, bytes], None] | None = None
                    ) -> TaskRecord:
        """Add an exported task as it was when it left; its new record.  ``check(record,
        continuation)`` may refuse it (raising) before anything is written."""
        try:
            rec = TaskRecord.from_bytes(data["task"])
        except RecordError as exc:
            raise MigrationError(f"the task export is unreadable: {exc}") from None
        with self.backend.write() as t:
            unit = Unit(t)
            task_id = rec.id
            here = unit.get(task_id)
            if here is not None and here.status != Status.MOVED:
                raise MigrationError(f"task {task_id} is already in this store "
                                     f"({here.status})")
            _put_programs(t, data["programs"])
            if check is not None:
                check(rec, data["cont"])
            if here is not None:
                t.delete_task_data(task_id)
            now = unit.now
            rec.lease = None
            rec.moved_to = None
            rec.joiners = []
            rec.updated = now
            t.put_cont(task_id, data["cont"])
            for seq, message in data.get("inbox", []):
                t.inbox_put(task_id, seq, message)
            for _, text in data.get("output", []):
                t.output_append(task_id, text)
            for _, entry in data.get("log", []):
                t.log_append(task_id, entry)
            for request, entry in data.get("outbox", []):
                _put_outbox(t, task_id, request, entry)
            for key, callback in data.get("callbacks", []):
                t.callback_put(key, task_id, callback)
            unit.put(rec)
            event(unit, task_id, "imported", now, source=data.get("store"))
            if rec.status == Status.RUNNABLE:
                unit.runnable(rec)
            elif rec.status == Status.WAITING:
                _wait_again(unit, rec, data.get("wait"), now)
            schedule_deadline(unit, rec)
            unit.flush()
        return rec

    # workers ---------------------------------------------------------------------------

    @retrying
    def hold_worker(self, worker: str, host: str = "", pid: int = 0) -> Any:
        """Register the worker and take its liveness lock."""
        handle = self.backend.hold_worker(worker)
        with self.backend.write() as t:
            t.put_worker(worker, WorkerRecord(worker, host, pid, t.clock()).to_bytes())
        return handle

    @retrying
    def forget_worker(self, worker: str) -> None:
        """Remove a stopped worker's registration."""
        with self.backend.write() as t:
            t.delete_worker(worker)
        self.claims.pop(worker, None)

    def worker_alive(self, worker: str) -> bool:
        """Whether the worker's liveness lock is held."""
        return self.backend.worker_alive(worker)

    def wait_for_work(self, timeout: float) -> None:
        """Return when work may have arrived, or after ``timeout`` seconds."""
        self.backend.wait_for_work(timeout)

    def size_bytes(self) -> int:
        """Bytes the store takes."""
        return self.backend.size_bytes()

    def close(self) -> None:
        """Release the store."""
        self.backend.close()


def _released(data: bytes) -> bytes:
    """An outbox entry without its lease (a connector of another store never had it)."""
    from ..runtime.records import OutboxEntry

    try:
        entry = OutboxEntry.from_bytes(data)
    except RecordError:
        return data
    entry.lease_worker = entry.lease_until = None
    return entry.to_bytes()


def _put_outbox(t: Tables, task_id: str, request: int, data: bytes) -> None:
    from ..runtime.records import OutboxEntry

    try:
        entry = OutboxEntry.from_bytes(data)
    except RecordError:
        return  # unreadable: the request times out in its new store
    t.outbox_put(task_id, request, data, entry.not_before, entry.lease_until)


def _copy_requests(s: Tables, d: Tables, task_id: str) -> None:
    """Copy the task's outbox entries (their leases given up) and callbacks."""
    for _, request, data in s.outbox_items(task_id):
        _put_outbox(d, task_id, request, _released(data))
    for key, callback in s.callbacks_of(task_id):
        d.callback_put(key, task_id, callback)


def _key_digest(key: str) -> str:
    return sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _put_programs(t: Tables, records: dict[str, dict | bytes]) -> None:
    # A record is a dict, or bytes: the CBOR of one (``code.program_records``).
    for digest, record in records.items():
        if t.get_program(digest) is None:
            t.put_program(digest, record if type(record) is bytes else cbor2.dumps(record))


def _live_task(unit: Unit, task_id: str, what: str) -> TaskRecord:
    rec = unit.get(task_id)
    if rec is None:
        raise TaskError(f"no task {task_id}")
    if rec.status == Status.MOVED:
        raise TaskError(f"cannot {what} task {task_id}: it moved to another store")
    if rec.finished:
        raise TaskError(f"cannot {what} task {task_id}: it is {rec.status}")
    return rec


def task_tree(unit: Unit, root: str) -> list[TaskRecord]:
    """The records of ``root`` and of the tasks it spawned, transitively, parents first."""
    out: list[TaskRecord] = []
    pending = [root]
    while pending:
        unit.prefetch(pending)
        level, pending = pending, []
        for task_id in level:
            rec = unit.get(task_id)
            if rec is not None:
                out.append(rec)
                pending.extend(rec.children)
    return out


def _delete(t: Tables, rec: TaskRecord) -> None:
    """Remove a finished task: its record, continuation, inbox, journals and timers."""
    t.delete_task_data(rec.id)
    t.delete_task(rec.id)


def _take_output(unit: Unit, root: str) -> list[tuple[str, str]]:
    """The output not yet shown of ``root`` and the tasks it spawned; marked shown."""
    out: list[tuple[str, str]] = []
    for rec in task_tree(unit, root):
        last = rec.shown
        for seq, text in unit.t.output_items(rec.id, rec.shown):
            out.append((rec.id, text))
            last = seq
        if last > rec.shown:
            rec.shown = last
            unit.put(rec)
    return out


def _timer_of(waiting: Waiting, asked: float) -> Timer:
    kind = TimerKind.WAKE if waiting.op == "sleep" else TimerKind.TIMEOUT
    return Timer(kind, waiting.op, max(0.0, (waiting.until or asked) - asked))


def _mark_moved(unit: Unit, rec: TaskRecord, now: float) -> None:
    t = unit.t
    if rec.waiting is not None and rec.waiting.until is not None:
        t.timer_delete(rec.waiting.until, rec.id, rec.waiting.request)
    for due, request in _arm_timers(rec.waiting):
        t.timer_delete(due, rec.id, request)
    if rec.limits.deadline:
        t.timer_delete(rec.created + rec.limits.deadline, rec.id, 0)
    t.runnable_remove(rec.id)
    joiners, rec.joiners = rec.joiners, []
    rec.status, rec.moved_to, rec.lease, rec.waiting, rec.updated = (
        Status.MOVED, "export", None, None, now)
    unit.put(rec)
    event(unit, rec.id, "exported", now)
    for joiner_id, request_id in joiners:
        joiner = unit.get(joiner_id)
        if joiner is not None:
            fail_request(unit, joiner, request_id, "task-moved",
                         f"join: task {rec.id} moved to another store", now, task=rec.id)


def _wait_again(unit: Unit, rec: TaskRecord, wait_: list | None, now: float) -> None:
    """Arm the timer of the task's wait again; a join also finds its task here."""
    waiting = rec.waiting
    request_id = waiting.request
    if waiting.op == "join":
        target = unit.get(waiting.task)
        if target is None or target.status == Status.MOVED:
            fail_request(unit, rec, request_id, "no-such-task",
                         f"join: no task {waiting.task} in this store", now, task=waiting.task)
            return
        if target.finished:
            if target.status == Status.DONE:
                deliver(unit, rec, Answer(request_id, True, target.result), now)
            else:
                deliver(unit, rec, Answer(request_id, False, target.error,
                                          AnswerKind.TASK_FAILED, task=target.id,
                                          status=str(target.status)), now)
            return
        target.joiners.append((rec.id, request_id))
        unit.put(target)
    if wait_ is not None:
        due, request, timer = wait_
        unit.t.timer_add(due, rec.id, request, timer)
        unit.woke = True
    for due, request in _arm_timers(waiting):
        op = next(arm[0] for arm in waiting.arms if arm[1] == request)
        unit.t.timer_add(due, rec.id, request,
                         Timer(TimerKind.TIMEOUT, op, max(0.0, due - now)).to_bytes())
        unit.woke = True


def _arm_timers(waiting: Waiting | None) -> list[tuple[float, int]]:
    """The (due, request) of the timers of a select's arms (``store.select``)."""
    if waiting is None or waiting.op != "select":
        return []
    return [(arm[3], arm[1]) for arm in waiting.arms or () if len(arm) > 3 and
            arm[3] is not None]


def _apply_draft(unit: Unit, draft: Any, step: StepCommit) -> bool:
    from . import drafts

    return drafts.apply(unit, draft, step)


def decode_task(task_id: str, data: bytes | None, unreadable: dict[str, str]
                ) -> TaskRecord | None:
    """The task record stored as ``data`` (None if there is none, or, noted in
    ``unreadable``, if it cannot be read)."""
    if data is None:
        return None
    try:
        return TaskRecord.from_bytes(data)
    except RecordError as exc:
        unreadable[task_id] = str(exc)
        return None


class StoreView:
    """``base.View`` over a read transaction's tables."""

    def __init__(self, t: Tables):
        self.t = t
        self.unreadable: dict[str, str] = {}
        self.skipped = 0

    def _record(self, task_id: str, data: bytes | None) -> TaskRecord | None:
        return decode_task(task_id, data, self.unreadable)

    def task(self, task_id: str) -> TaskRecord | None:
        """The task's record, or None (``unreadable`` says why, if it is there)."""
        return self._record(task_id, self.t.get_task(task_id))

    def tasks(self, where: TaskFilter = ALL_TASKS, after: str = "", limit: int = 100,
              descending: bool = False) -> list[TaskRecord]:
        """Matching records in id order; unreadable ones are counted in ``skipped``."""
        out = []
        for data in self.t.scan_tasks(where, after, limit, descending):
            try:
                out.append(TaskRecord.from_bytes(data))
            except RecordError:
                self.skipped += 1
        return out

    def count(self, where: TaskFilter = ALL_TASKS) -> dict[str, int]:
        """How many tasks match, by status."""
        return self.t.count_tasks(where)

    def continuation(self, task_id: str) -> bytes | None:
        """The task's encoded continuation."""
        data = self.t.get_cont(task_id)
        return None if data is None else bytes(data)

    def outbox(self, task_id: str | None = None) -> list[tuple[str, int, Any]]:
        """Outbox entries (of one task, or all): (task, request, ``OutboxEntry``, or the
        text of why it cannot be read)."""
        from ..runtime.records import OutboxEntry

        out: list[tuple[str, int, Any]] = []
        for task, request, data in self.t.outbox_items(task_id):
            try:
                out.append((task, request, OutboxEntry.from_bytes(data)))
            except RecordError as exc:
                out.append((task, request, str(exc)))
        return out

    def next_outbox(self) -> float | None:
        """When the earliest outbox entry not leased may be attempted, or None."""
        from ..runtime.records import OutboxEntry

        due = None
        for _, _, data in self.t.outbox_items():
            try:
                entry = OutboxEntry.from_bytes(data)
            except RecordError:
                continue
            when = entry.not_before if entry.lease_until is None else \
                max(entry.not_before, entry.lease_until)
            due = when if due is None else min(due, when)
        return due

    def inbox(self, task_id: str) -> list[tuple[int, Message]]:
        """The queued messages, oldest first (unreadable ones left out)."""
        out = []
        for seq, data in self.t.inbox_items(task_id):
            try:
                out.append((seq, Message.from_bytes(data)))
            except RecordError:
                continue
        return out

    def log(self, task_id: str, after: int = 0) -> Iterator[tuple[int, Event]]:
        """The task's events above ``after`` (an unreadable one reads as kind "?")."""
        for seq, data in self.t.log_items(task_id, after):
            try:
                yield seq, Event.from_bytes(data)
            except RecordError as exc:
                yield seq, Event(0.0, "?", {"problem": str(exc)})

    def output(self, task_id: str, after: int = 0) -> Iterator[tuple[int, str]]:
        """The task's output above ``after``."""
        return self.t.output_items(task_id, after)

    def program_hashes(self) -> list[str]:
        """The hashes of every stored program."""
        return [digest for digest, _ in self.t.all_programs()]

    def program(self, digest: str) -> dict | None:
        """A program record by hash."""
        # No hash (the record that replaced an unreadable task's names no program): LMDB
        # refuses an empty key.
        data = self.t.get_program(digest) if digest else None
        if data is None:
            return None
        try:
            record = cbor2.loads(data)
        except Exception:
            raise StoreError(f"the record of program {digest[:12]} is unreadable") from None
        return record if type(record) is dict else None

    def resolve(self, name: str) -> str | None:
        """The program hash a name stands for."""
        return self.t.get_name(name)

    def next_timer(self) -> float | None:
        """When the earliest timer is due."""
        return self.t.next_timer()

    def has_work(self) -> bool:
        """Whether anything will happen without help from outside: a runnable task that
        is not blocked, or a timer a program asked for (a sleep, an explicit
        ``:timeout``), not a default wait's nor a deadline's."""
        t = self.t
        if t.any_runnable():
            for data in t.scan_tasks(TaskFilter(status=(str(Status.RUNNABLE),)), "", 1 << 62):
                rec = self._record("", data)
                if rec is None or not rec.blocked:
                    return True
        if t.next_timer() is None:
            return False
        for limit in (64, 1 << 62):
            due = t.timers_due(MAX_TIME, limit)
            for _, task_id, _, data in due:
                if self._timer_counts(task_id, data):
                    return True
            if len(due) < limit:
                return False
        return False

    def _timer_counts(self, task_id: str, data: bytes) -> bool:
        """Whether a timer is one a program asked for (see ``has_work``)."""
        try:
            timer = Timer.from_bytes(data)
        except RecordError:
            return False
        if timer.kind == TimerKind.WAKE:
            return True
        if timer.kind != TimerKind.TIMEOUT:
            return False
        rec = self.task(task_id)
        return rec is not None and rec.waiting is not None and not rec.waiting.by_default

    def clock(self) -> float:
        """The store's clock."""
        return self.t.clock()


COPY_PAGE = 200  # tasks copied per write transaction


def copy_store(src: TaskStore, dst: TaskStore, say: Callable[[str], None] | None = None
               ) -> int:
    """Copy every program, name and task (record, continuation, inbox, timers, log and
    output) of ``src`` into the empty store ``dst``, from one snapshot of ``src``; how
    many tasks.  Leases are not copied: a task runnable in ``src`` is runnable in
    ``dst``.  Run it while no worker uses ``src`` (what happens there afterwards is not
    copied)."""
    with dst.view() as view:
        if view.tasks(limit=1):
            raise StoreError(f"{dst.location} already has tasks: copy into an empty store")
    copied = 0
    with src.backend.read() as s:
        programs = list(s.all_programs())
        names = list(s.all_names())
        timers: dict[str, list] = {}
        for due, task_id, request, data in s.timers_due(MAX_TIME, 1 << 62):
            timers.setdefault(task_id, []).append((due, request, data))
        for i in range(0, len(programs), COPY_PAGE):
            with dst.backend.write() as d:
                for digest, data in programs[i:i + COPY_PAGE]:
                    if d.get_program(digest) is None:
                        d.put_program(digest, data)
                if i == 0:
                    for name, digest in names:
                        d.put_name(name, digest)
        after = ""
        while True:
            page = s.scan_tasks(ALL_TASKS, after, COPY_PAGE)
            if not page:
                break
            with dst.backend.write() as d:
                for data in page:
                    rec = TaskRecord.from_bytes(data)
                    after = rec.id
                    rec.lease = None
                    d.put_task(rec.id, rec.to_bytes(), columns(rec) if d.needs_columns else None)
                    state = s.get_cont(rec.id)
                    if state is not None:
                        d.put_cont(rec.id, state)
                    for seq, message in s.inbox_items(rec.id):
                        d.inbox_put(rec.id, seq, message)
                    for _, entry in s.log_items(rec.id):
                        d.log_append(rec.id, entry)
                    for _, text in s.output_items(rec.id):
                        d.output_append(rec.id, text)
                    for due, request, timer in timers.get(rec.id, []):
                        d.timer_add(due, rec.id, request, timer)
                    _copy_requests(s, d, rec.id)
                    if rec.status == Status.RUNNABLE:
                        d.runnable_add(rec.id)
                    copied += 1
            if say is not None:
                say(f"{copied} tasks copied")
    return copied
