"""Typed records: what the store keeps about tasks, messages, timers, events and workers.

Every record is a dataclass with ``to_bytes`` and ``from_bytes``.  On disk a record is a
CBOR array whose first item is its format version, then its fields in the order the
dataclass declares them; nested records are nested arrays.  Values inside records
(results, errors, messages, answers) are codec bytes (``encode_data``), decoded only
when someone needs the value, so a store transaction never encodes, decodes or prints a
value of unbounded size.  A record that cannot be read raises ``RecordError``.
"""

from __future__ import annotations

import copy
import operator
import os
import time
from enum import StrEnum
from typing import Any

import cbor2

from ..structs import dataclass, field, fields

TASK_FORMAT = 2


class TaskError(Exception):
    """A task operation that cannot be done (unknown id, finished task, bad program)."""


class RecordError(TaskError):
    """A stored record that cannot be read (corrupt, truncated, of an unknown format)."""


class Status(StrEnum):
    """Where a task stands."""

    RUNNABLE = "runnable"    # has work to do: a worker may lease it
    WAITING = "waiting"      # waits for an answer to its request
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    MOVED = "moved"          # exported to another store


FINISHED = frozenset({Status.DONE, Status.FAILED, Status.CANCELLED, Status.MOVED})


@dataclass(slots=True)
class Limits:
    """What a task may use; exceeding one fails it with a ``:limit-error``."""

    fuel: int | None = None           # total reductions; None: no limit
    depth: int = 200_000              # frames in the continuation (see NOTES: Limits)
    state: int = 64 << 20             # bytes of the encoded continuation
    deadline: float | None = None     # seconds from creation; None: no limit
    wait: float = 86_400.0            # timeout of a wait that names none, seconds
    response_body: int = 1 << 20      # bytes of an HTTP response body

    @classmethod
    def of(cls, given: dict | Limits | None) -> Limits:
        """Limits from a dict of some of the fields (the rest default)."""
        if isinstance(given, Limits):
            return Limits(*_values(given))
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (given or {}).items() if k in names and v is not None})

    def as_dict(self) -> dict:
        """The limits as a plain dict (for JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(slots=True)
class Lease:
    """A worker's claim on a task: until ``until`` by the store's clock, at ``epoch``."""

    worker: str
    epoch: int
    until: float


@dataclass(slots=True)
class Waiting:
    """The request a waiting task waits on, and when its wait times out."""

    request: int
    op: str
    until: float | None = None        # when the wait times out (its timer is due)
    after: int = 0                    # receive: messages numbered above this are new
    deadline: float | None = None     # receive: the deadline its answer carries
    task: str | None = None           # join: the task joined
    by_default: bool = False          # the timeout is the task's default wait (none given)
    callback: str | None = None       # await: the digest of the callback's token
    arms: list | None = None          # select: [op, request, key] per arm (``select``)


class AnswerKind(StrEnum):
    """How the worker turns an answer's bytes into the value the task sees."""

    VALUE = "value"              # the value itself
    MESSAGE = "message"          # a received message: {:seq :message :deadline}
    TASK_FAILED = "task-failed"  # a joined task's error, wrapped as {:type :task-failed}


@dataclass(slots=True)
class Answer:
    """The answer to a task's request, stored before the task sees it."""

    request: int
    ok: bool
    value: bytes | None               # codec bytes of the value (or error)
    kind: AnswerKind = AnswerKind.VALUE
    seq: int = 0                      # MESSAGE: the message's number
    deadline: float | None = None     # MESSAGE: the receive's deadline
    task: str | None = None           # TASK_FAILED: the task that failed
    status: str | None = None         # TASK_FAILED: how it ended
    arm: int | None = None            # the answer of a select's arm: which one
    arm_op: str | None = None         # ... and its operation


@dataclass(slots=True)
class TaskRecord:
    """Everything the store keeps about a task but its continuation and journals."""

    id: str
    name: str
    program: str                      # the hash of the program it started
    status: Status = Status.RUNNABLE
    parent: str | None = None
    root: str = ""
    created: float = 0.0
    updated: float = 0.0
    limits: Limits = field(default_factory=Limits)
    programs: list[str] = field(default_factory=list)  # programs its state refers to
    children: list[str] = field(default_factory=list)
    lease: Lease | None = None
    epoch: int = 0
    waiting: Waiting | None = None
    answer: Answer | None = None
    request_seq: int = 0
    inbox_seq: int = 0
    steps: int = 0
    reductions: int = 0
    state_bytes: int = 0
    result: bytes | None = None       # codec bytes of the result, when done
    error: bytes | None = None        # codec bytes of the error, when failed/cancelled
    joiners: list[tuple[str, int]] = field(default_factory=list)  # (task, request)
    cancel: bool = False
    cancel_delivered: bool = False
    trace: bool = False
    shown: int = 0                    # output entries shown by ``flowmetal run``
    moved_to: str | None = None
    blocked: str | None = None        # why no worker can run it now (its code is missing)
    spawnable: dict[str, str] = field(default_factory=dict)  # spawn name -> program hash

    def to_bytes(self) -> bytes:
        """The record as stored: ``[TASK_FORMAT, *fields]``, nested records as arrays.

        A step changes a few fields: the runs of fields that rarely change are encoded
        once and kept by task id while their values stay equal (``_kept_runs``)."""
        head, code, tail = _kept_runs(self)
        lease, waiting, answer = self.lease, self.waiting, self.answer
        if answer is not None:
            answer = list(_ANSWER_GET(answer))
            answer[_KIND_AT] = answer[_KIND_AT]._value_  # cbor2: a str subclass is slow
        return b"".join((
            _TASK_HEAD, head,
            cbor2.dumps([self.status._value_, self.parent, self.root, self.created,
                         self.updated])[1:],
            code,
            cbor2.dumps([None if lease is None else list(_LEASE_GET(lease)), self.epoch,
                         None if waiting is None else list(_WAITING_GET(waiting)), answer,
                         self.request_seq, self.inbox_seq, self.steps, self.reductions,
                         self.state_bytes, self.result, self.error])[1:],
            tail))

    @classmethod
    def from_bytes(cls, data: bytes) -> TaskRecord:
        """The record stored as ``data`` (RecordError if it is not one)."""
        try:
            items = cbor2.loads(data)
            if type(items) is not list or items[0] != TASK_FORMAT:
                raise ValueError("unknown task record format")
            (task_id, name, program, status, parent, root, created, updated, limits,
             programs, children, lease, epoch, waiting, answer, *rest) = items[1:]
            rec = cls(task_id, name, program, Status(status), parent, root, created,
                      updated, Limits(*limits), programs, children,
                      None if lease is None else Lease(*lease), epoch,
                      None if waiting is None else Waiting(*waiting),
                      None if answer is None else _answer(answer), *rest)
            rec.joiners = [(t, r) for t, r in rec.joiners]
            if type(rec.id) is not str or type(rec.program) is not str:
                raise ValueError("a task record needs an id and a program")
            return rec
        except RecordError:
            raise
        except Exception as exc:
            raise RecordError(f"unreadable task record: {type(exc).__name__}: {exc}"
                              ) from None

    def copy(self) -> TaskRecord:
        """A copy whose nested records and lists are copies too (everything a commit
        may change in place; strings, bytes and tuples are shared)."""
        c = TaskRecord(*_TASK_GET(self))
        limits, lease, waiting, answer = _NESTED_GET
        c.limits = Limits(*limits[1](c.limits))
        if c.lease is not None:
            c.lease = Lease(*lease[1](c.lease))
        if c.waiting is not None:
            w = c.waiting = Waiting(*waiting[1](c.waiting))
            if w.arms is not None:
                w.arms = copy.deepcopy(w.arms)
        if c.answer is not None:
            c.answer = Answer(*answer[1](c.answer))
        c.programs, c.children = list(c.programs), list(c.children)
        c.joiners, c.spawnable = list(c.joiners), dict(c.spawnable)
        return c

    @property
    def finished(self) -> bool:
        """Whether the task has ended (or left this store)."""
        return self.status in FINISHED


_TASK_FIELDS = tuple(f.name for f in fields(TaskRecord))
_TASK_GET = operator.attrgetter(*_TASK_FIELDS)
_KIND_AT = [f.name for f in fields(Answer)].index("kind")
_NESTED_GET = [(_TASK_FIELDS.index(name), operator.attrgetter(*(f.name for f in fields(kind))))
               for name, kind in (("limits", Limits), ("lease", Lease), ("waiting", Waiting),
                                  ("answer", Answer))]
_LIMITS_GET, _LEASE_GET, _WAITING_GET, _ANSWER_GET = (get for _, get in _NESTED_GET)


_TAIL_FIELDS = ("joiners", "cancel", "cancel_delivered", "trace", "shown", "moved_to",
                "blocked", "spawnable")
_TAIL_SCALARS = operator.attrgetter(*_TAIL_FIELDS[1:-1])
_KEPT_TASKS = 4096  # tasks whose runs are kept; past that the memory starts again
# task id -> (a snapshot of the kept runs' fields, the runs' bytes); an entry is replaced
# whole, never changed, so threads may share the memory.
_kept: dict[str, tuple[tuple, tuple[bytes, bytes, bytes]]] = {}


def _kept_runs(rec: TaskRecord) -> tuple[bytes, bytes, bytes]:
    """The bytes (array items without a header) of a task record's three runs of rarely
    changing fields: id to program, limits to children, joiners to spawnable."""
    global _kept
    key = (rec.name, rec.program, _LIMITS_GET(rec.limits), tuple(rec.programs),
           tuple(rec.children), tuple(rec.joiners), _TAIL_SCALARS(rec),
           tuple(rec.spawnable.items()))
    kept = _kept.get(rec.id)
    if kept is not None and kept[0] == key:
        return kept[1]
    runs = (cbor2.dumps([TASK_FORMAT, rec.id, rec.name, rec.program])[1:],
            cbor2.dumps([list(key[2]), rec.programs, rec.children])[1:],
            cbor2.dumps([rec.joiners, *key[6], rec.spawnable])[1:])  # (< 24 items each)
    if len(_kept) >= _KEPT_TASKS:
        _kept = {}
    _kept[rec.id] = (key, runs)
    return runs


_TASK_HEAD = cbor2.dumps([None] * (1 + len(_TASK_FIELDS)))[:-(1 + len(_TASK_FIELDS))]
# The runs and the fields encoded at each step, in the order of the record's fields:
assert _TASK_FIELDS == ("id", "name", "program", "status", "parent", "root", "created",
                        "updated", "limits", "programs", "children", "lease", "epoch",
                        "waiting", "answer", "request_seq", "inbox_seq", "steps",
                        "reductions", "state_bytes", "result", "error") + _TAIL_FIELDS


def _answer(items: list) -> Answer:
    answer = Answer(*items)
    answer.kind = AnswerKind(answer.kind)
    return answer


def _values(record: Any) -> list:
    """A record's field values in order, nested records as lists."""
    out = []
    for f in fields(record):
        value = getattr(record, f.name)
        if hasattr(value, "__dataclass_fields__"):
            value = _values(value)
        out.append(value)
    return out


@dataclass(slots=True)
class Message:
    """A message in a task's inbox."""

    sender: str | None
    at: float
    value: bytes

    def to_bytes(self) -> bytes:
        """The record as stored."""
        return cbor2.dumps([1, self.sender, self.at, self.value])

    @classmethod
    def from_bytes(cls, data: bytes) -> Message:
        """The message stored as ``data``."""
        return cls(*_load(data, 1, "message"))


class TimerKind(StrEnum):
    """What a timer does when it is due."""

    WAKE = "wake"          # answers a sleep
    TIMEOUT = "timeout"    # answers a wait with a {:type :timeout} error
    DEADLINE = "deadline"  # fails the task: its deadline passed


@dataclass(slots=True)
class Timer:
    """An armed timer (keyed in the store by due time, task and request)."""

    kind: TimerKind
    op: str = ""
    seconds: float = 0.0   # how long the wait was

    def to_bytes(self) -> bytes:
        """The record as stored."""
        return cbor2.dumps([1, str(self.kind), self.op, self.seconds])

    @classmethod
    def from_bytes(cls, data: bytes) -> Timer:
        """The timer stored as ``data``."""
        kind, op, seconds = _load(data, 1, "timer")
        return cls(TimerKind(kind), op, seconds)


@dataclass(slots=True)
class Event:
    """An entry of a task's event log: when, what kind, and its details (plain data;
    values are codec bytes under keys ending in ``value``/``error``/``args``, printed
    only when the log is read)."""

    at: float
    kind: str
    details: dict = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        """The record as stored."""
        return event_bytes(self.at, self.kind, self.details)

    @classmethod
    def from_bytes(cls, data: bytes) -> Event:
        """The event stored as ``data``."""
        at, kind, details = _load(data, 1, "event")
        return cls(at, kind, details)


def event_bytes(at: float, kind: str, details: dict) -> bytes:
    """The stored bytes of ``Event(at, kind, details)`` (without making one)."""
    return cbor2.dumps([1, at, kind, details])


@dataclass(slots=True)
class WorkerRecord:
    """A worker known to the store: where it runs (for people; never to judge it)."""

    id: str
    host: str
    pid: int
    started: float

    def to_bytes(self) -> bytes:
        """The record as stored."""
        return cbor2.dumps([1, self.id, self.host, self.pid, self.started])

    @classmethod
    def from_bytes(cls, data: bytes) -> WorkerRecord:
        """The worker record stored as ``data``."""
        return cls(*_load(data, 1, "worker"))


@dataclass(slots=True)
class OutboxEntry:
    """A request a task made of the world, waiting for a connector (keyed in the store by
    task and request).  It exists only once the step that made it is committed, and
    leaves the store in the transaction that answers it, or when the wait ends otherwise.

    ``spec`` is the request as plain data for its connector (``kind``); ``epoch`` counts
    the claims, so that a connector whose lease was taken over cannot settle it."""

    kind: str
    spec: dict
    key: str                          # the idempotency key, the same across retries
    created: float
    not_before: float                 # the next attempt is not made before this
    attempts: int = 0                 # attempts made and settled
    epoch: int = 0
    lease_worker: str | None = None   # the connector working on it
    lease_until: float | None = None
    last_error: str = ""

    def to_bytes(self) -> bytes:
        """The record as stored."""
        return cbor2.dumps([1, *_OUTBOX_GET(self)])

    @classmethod
    def from_bytes(cls, data: bytes) -> OutboxEntry:
        """The entry stored as ``data``."""
        items = _load(data, 1, "outbox")
        try:
            entry = cls(*items)
        except TypeError as exc:
            raise RecordError(f"unreadable outbox record: {exc}") from None
        if type(entry.spec) is not dict or type(entry.kind) is not str:
            raise RecordError("unreadable outbox record: bad fields")
        return entry

    def claimable(self, now: float) -> bool:
        """Whether a connector may claim it at ``now``."""
        return self.not_before <= now and (self.lease_until is None or self.lease_until <= now)


_OUTBOX_GET = operator.attrgetter(*(f.name for f in fields(OutboxEntry)))


@dataclass(slots=True)
class CallbackRecord:
    """A callback URL made by a task (keyed in the store by the SHA-256 of its token):
    requests that arrive there wait in ``pending`` (codec bytes of each request's value)
    until the task takes them with ``await``."""

    task: str
    id: int                           # the callback's number in its task
    multi: bool
    expires: float                    # by the store's clock
    secret: str | None = None         # Standard Webhooks signing secret (whsec_...)
    deliveries: int = 0               # requests accepted
    pending: list = field(default_factory=list)
    max_body: int = 1 << 20

    def to_bytes(self) -> bytes:
        """The record as stored."""
        return cbor2.dumps([1, *_values(self)])

    @classmethod
    def from_bytes(cls, data: bytes) -> CallbackRecord:
        """The callback stored as ``data``."""
        try:
            return cls(*_load(data, 1, "callback"))
        except TypeError as exc:
            raise RecordError(f"unreadable callback record: {exc}") from None

    def used_up(self, now: float) -> bool:
        """Whether it accepts no more requests (expired, or single-use and used)."""
        return now >= self.expires or (not self.multi and self.deliveries > 0)


@dataclass(slots=True)
class TokenRecord:
    """An access token of the control plane (kept by the SHA-256 of the token; the token
    itself is shown once, when it is made)."""

    id: str                           # a short public name: the first digits of the digest
    name: str
    scope: str                        # "read" (GET only) or "write" (everything)
    created: float
    revoked: float | None = None

    def to_bytes(self) -> bytes:
        """The record as stored."""
        return cbor2.dumps([1, *_values(self)])

    @classmethod
    def from_bytes(cls, data: bytes) -> TokenRecord:
        """The token record stored as ``data``."""
        try:
            return cls(*_load(data, 1, "token"))
        except TypeError as exc:
            raise RecordError(f"unreadable token record: {exc}") from None


def _load(data: bytes, version: int, what: str) -> list:
    try:
        items = cbor2.loads(data)
    except Exception as exc:
        raise RecordError(f"unreadable {what} record: {type(exc).__name__}") from None
    if type(items) is not list or not items or items[0] != version:
        raise RecordError(f"unreadable {what} record: unknown format")
    return items[1:]


def new_task_id() -> str:
    """A fresh task id: milliseconds since the epoch (11 hex digits, so ids sort by
    creation) and 40 random bits (10 hex digits); callers check it is not taken."""
    return f"{int(time.time() * 1000):011x}{os.urandom(5).hex()}"  # (secrets' source)


def encode_data(value: Any) -> bytes:
    """A value (message, result, answer) as bytes for a record."""
    return (_language or _load_language()).encode_value(value)


def decode_data(data: bytes | None) -> Any:
    """The value of ``encode_data`` bytes."""
    if data is None:
        return None
    language = _language or _load_language()
    return language.decode_value(data, language.base().globals)


class _Language:
    """What records need of the language, imported at its first use (listing tasks
    needs no language)."""

    def __init__(self) -> None:
        from ..codec import decode_value, encode_value
        from ..interpreter import base

        self.encode_value, self.decode_value, self.base = encode_value, decode_value, base


_language: _Language | None = None


def _load_language() -> _Language:
    global _language
    _language = _Language()
    return _language


def result_value(rec: TaskRecord) -> Any:
    """A finished task's result (or error value) as a Flowmetal value."""
    return decode_data(rec.result if rec.status == Status.DONE else rec.error)
