"""The outbox: requests tasks make of the world, claimed, attempted and answered by
connectors.

A step that asks for something outside the store (an HTTP request) leaves the task
waiting and writes an outbox entry in the same transaction, so the entry exists only
once the step is committed: a connector never acts on a step that may yet be lost.  A
connector claims due entries with a lease (by the store's clock), makes its attempt
outside any transaction, and settles it: either the answer, delivered to the task and
the entry removed in one transaction, or a retry at a later time.  A settlement from a
connector whose lease was taken over is refused, and an answer reaches the task only
while it still waits on that request, so a task sees exactly one answer per request.
When the wait ends otherwise (its timeout, a cancel, the task's end) the entry goes.
"""

from __future__ import annotations

from typing import Any

from ..runtime.records import Answer, OutboxEntry, RecordError, TaskRecord
from ..structs import dataclass
from .base import Request, StepCommit
from .engine import Unit, deliver, event, fail_request, wait


@dataclass(slots=True)
class OutboxClaim:
    """An entry leased to a connector: which request, and the entry as claimed."""

    task_id: str
    request: int
    entry: OutboxEntry


@dataclass(slots=True)
class OutboxResult:
    """How a connector's attempt at a claimed entry ended.

    Final (``retry_in`` None): ``ok`` and ``value`` (codec bytes of the answer, or of the
    error raised in the task).  Otherwise the next attempt is due ``retry_in`` seconds
    from now by the store's clock.
    ``note`` is plain data for the task's log (status, duration, error text).
    ``given`` is the answer's value itself, when the connector runs in the process of the
    worker that settles it: the task may then take it without decoding ``value`` (it is
    never stored; Flowmetal values are immutable, so sharing it is safe)."""

    task_id: str
    request: int
    epoch: int
    attempts: int
    ok: bool = True
    value: bytes | None = None
    retry_in: float | None = None
    error_text: str = ""
    note: dict | None = None
    given: Any = None


def waits_on(rec: TaskRecord, request: int) -> bool:
    """Whether the task waits on ``request`` (itself, or as an arm of a select)."""
    from .select import waits_on as waiting

    return waiting(rec, request)


def idempotency_key(task_id: str, request: int) -> str:
    """The key a connector sends with every attempt at the task's request."""
    return f"flowmetal-{task_id}-{request}"


def put_entry(unit: Unit, task_id: str, request: int, entry: OutboxEntry) -> None:
    """Write an entry with the times the store indexes."""
    unit.t.outbox_put(task_id, request, entry.to_bytes(), entry.not_before,
                      entry.lease_until)


def add_entry(unit: Unit, task_id: str, request: int, entry: OutboxEntry) -> None:
    """Write a new entry; one of the kinds of the connector whose part of the round this
    is (``Unit.lease_new``) is leased to it at once, as its claim would (there is room
    for it), so that the claim neither looks for it nor writes it again."""
    part = unit.lease_new
    if part is not None and entry.kind in part.kinds and \
            len(unit.claimed_new) < part.limit:
        entry.epoch += 1
        entry.lease_worker = part.connector
        entry.lease_until = unit.now + part.lease_seconds
        unit.claimed_new.append(OutboxClaim(task_id, request, entry))
    put_entry(unit, task_id, request, entry)


def still_claimed(unit: Unit) -> list[OutboxClaim]:
    """The entries ``add_entry`` leased in this round whose task still waits on them."""
    return [c for c in unit.claimed_new
            if (rec := unit.get(c.task_id)) is not None and waits_on(rec, c.request)]


def handle_outbox_request(unit: Unit, rec: TaskRecord, request_id: int, req: Request,
                          step: StepCommit, now: float) -> None:
    """Leave the task waiting on a request for a connector (``req.op`` names its kind),
    with its entry in the outbox and the wait's timeout armed."""
    entry = OutboxEntry(req.op, req.spec or {}, idempotency_key(rec.id, request_id), now,
                        now)
    add_entry(unit, rec.id, request_id, entry)
    wait(unit, rec, request_id, req.op, now, req.timeout)


def end_wait(unit: Unit, task_id: str, request: int) -> None:
    """The task no longer waits on this request: its outbox entry, if any, goes."""
    unit.t.outbox_delete(task_id, request)


def claim_entries(unit: Unit, connector: str, kinds: tuple[str, ...], limit: int,
                  lease_for: float) -> list[OutboxClaim]:
    """Lease up to ``limit`` due entries of these kinds to ``connector``."""
    now = unit.now
    out: list[OutboxClaim] = []
    # Entries of other kinds are left for their connectors: ask for a few more.
    for task_id, request, data in unit.t.outbox_due(now, limit * 2 + 8):
        if len(out) >= limit:
            break
        try:
            entry = OutboxEntry.from_bytes(data)
        except RecordError as exc:
            _drop_unreadable(unit, task_id, request, str(exc), now)
            continue
        if entry.kind not in kinds:
            continue
        rec = unit.get(task_id)
        if rec is None or not waits_on(rec, request):
            unit.t.outbox_delete(task_id, request)  # its wait is over
            continue
        entry.epoch += 1
        entry.lease_worker = connector
        entry.lease_until = now + lease_for
        put_entry(unit, task_id, request, entry)
        out.append(OutboxClaim(task_id, request, entry))
    return out


def _drop_unreadable(unit: Unit, task_id: str, request: int, reason: str, now: float
                     ) -> None:
    unit.t.outbox_delete(task_id, request)
    rec = unit.get(task_id)
    if rec is not None and waits_on(rec, request):
        fail_request(unit, rec, rec.waiting.request, "internal-error",
                     f"the outbox entry of request {request} cannot be read: {reason}", now)


def settle_entries(unit: Unit, connector: str, results: list[OutboxResult]) -> list[bool]:
    """Record what the connector's attempts did; per result, whether it was taken (False:
    the lease was lost, or the request is no longer waited on)."""
    now = unit.now
    unit.prefetch([r.task_id for r in results])
    taken = []
    for r in results:
        data = unit.t.outbox_get(r.task_id, r.request)
        entry = None
        if data is not None:
            try:
                entry = OutboxEntry.from_bytes(data)
            except RecordError:
                entry = None
        if entry is None or entry.lease_worker != connector or entry.epoch != r.epoch:
            taken.append(False)
            continue
        rec = unit.get(r.task_id)
        if rec is None or not waits_on(rec, r.request):
            unit.t.outbox_delete(r.task_id, r.request)
            taken.append(False)
            continue
        if r.retry_in is not None:
            entry.attempts = r.attempts
            entry.not_before = now + r.retry_in
            entry.lease_worker = entry.lease_until = None
            entry.last_error = r.error_text
            put_entry(unit, r.task_id, r.request, entry)
            event(unit, r.task_id, "retry", now, request=r.request, attempt=r.attempts,
                  retry_in=r.retry_in, problem=r.error_text, **(r.note or {}))
            unit.woke = True
        else:
            if r.note:
                event(unit, r.task_id, "attempts", now, request=r.request,
                      attempts=r.attempts, **r.note)
            if not deliver(unit, rec, Answer(r.request, r.ok, r.value), now, r.given,
                           r.given is not None):
                unit.t.outbox_delete(r.task_id, r.request)  # (delivered: it went with it)
        taken.append(True)
    return taken


def renew_entries(unit: Unit, connector: str, held: list[tuple[str, int, int]],
                  lease_for: float) -> list[bool | None]:
    """Extend the connector's leases on these (task, request, epoch) entries; per entry,
    whether it is still the connector's (None: the entry is gone, its wait over)."""
    now = unit.now
    kept: list[bool | None] = []
    for task_id, request, epoch in held:
        data = unit.t.outbox_get(task_id, request)
        if data is None:
            kept.append(None)
            continue
        try:
            entry = OutboxEntry.from_bytes(data)
        except RecordError:
            entry = None
        ok = entry is not None and entry.lease_worker == connector and entry.epoch == epoch
        if ok:
            entry.lease_until = now + lease_for
            put_entry(unit, task_id, request, entry)
        kept.append(ok)
    return kept


def release_entries(unit: Unit, connector: str) -> int:
    """Give up the connector's leases (it stops): its entries may be claimed at once."""
    released = 0
    for task_id, request, data in list(unit.t.outbox_items()):
        try:
            entry = OutboxEntry.from_bytes(data)
        except RecordError:
            continue
        if entry.lease_worker == connector:
            entry.lease_worker = entry.lease_until = None
            put_entry(unit, task_id, request, entry)
            released += 1
    if released:
        unit.woke = True
    return released


def entries_of(unit: Unit, task_id: str) -> list[tuple[int, Any]]:
    """The task's outbox entries: (request, entry), unreadable ones as their error text."""
    out: list[tuple[int, Any]] = []
    for _, request, data in unit.t.outbox_items(task_id):
        try:
            out.append((request, OutboxEntry.from_bytes(data)))
        except RecordError as exc:
            out.append((request, str(exc)))
    return out
