"""Task events: the tasks of a sequence run, handed to workers in any language.

A run asks for a task (``task-event`` in ``stdlib/sequences.fm``) as a step that leaves it
waiting with an outbox entry of kind ``task-event``, so the event exists only once that
step is committed.  Workers fetch and lock such entries over the control plane: a claim
names the worker, the task types it serves, how many it takes and how long its lock
lasts (by the store's clock), and gets each entry as Keptn's
``sh.keptn.event.<task>.triggered`` CloudEvent with a ``lock`` to present with its
answers.  ``.started`` and ``.status.changed`` extend the lock (a heartbeat);
``.finished`` answers the run's request.  An answer under a lock that expired, or that
another worker has taken since, is refused; an entry whose lock expired is offered again.

Timeouts: the run's wait first lasts the task's start timeout (no ``.started`` by then
fails the task event saying no worker took it), and from ``.started`` its finish timeout.
When the run ends or is aborted, the entry goes with its wait, and the worker learns it at
its next heartbeat.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..json_values import from_plain
from ..runtime.records import (
    Answer,
    OutboxEntry,
    RecordError,
    TaskRecord,
    Timer,
    TimerKind,
    encode_data,
)
from ..store.engine import Unit, deliver, event, fail_request, wait
from ..store.outbox import end_wait, idempotency_key, put_entry, waits_on

KIND = "task-event"
NEVER = 1e15              # an entry's not_before: never due for a connector's scan
LOCK_DEFAULT = 60.0       # seconds a lock lasts when the worker does not say
LOCK_MAX = 3600.0
START_TIMEOUT = 600.0     # the defaults of a task's timeouts
FINISH_TIMEOUT = 3600.0
TYPE_PREFIX = "sh.keptn.event."
PAUSED = "sequence-paused:"  # setting per paused run


class Refusal(StrEnum):
    """Why a worker's answer about a task event was not taken."""

    UNKNOWN = "unknown"        # no such task event (404)
    GONE = "gone"              # the run no longer waits on it: aborted, paused, ended (410)
    LOCK = "lock"              # the lock expired or another worker holds it now (409)


@dataclass(slots=True)
class Claimed:
    """A task event locked to a worker: its triggered CloudEvent and the lock to present."""

    event: dict
    lock: str
    locked_until: float


def event_id(task_id: str, request: int) -> str:
    """The id of the triggered event of the task's request."""
    return f"{task_id}.{request}"


def parse_event_id(text: str) -> tuple[str, int] | None:
    """(task, request) of a triggered event's id, or None if it is not one."""
    task_id, dot, request = text.rpartition(".")
    if not dot or not task_id or not request.isdigit():
        return None
    return task_id, int(request)


def iso_time(seconds: float) -> str:
    """RFC 3339 UTC time of a store clock reading."""
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{whole}.{int(seconds % 1 * 1000):03d}Z"


def handle_task_event(unit: Unit, rec: TaskRecord, request_id: int, req: Any, step: Any,
                      now: float) -> None:
    """The run waits on a task event (its start timeout armed), entered in the outbox;
    a paused run's request fails at once with ``{:type :paused}``."""
    if unit.t.setting_get(PAUSED + rec.id) is not None:
        fail_request(unit, rec, request_id, "paused", "the run is paused", now)
        return
    spec = dict(req.spec)
    spec["started"] = None
    spec["created"] = now
    entry = OutboxEntry(KIND, spec, idempotency_key(rec.id, request_id), now, NEVER)
    put_entry(unit, rec.id, request_id, entry)
    start = spec.get("start-timeout")
    wait(unit, rec, request_id, KIND, now, START_TIMEOUT if start is None else start)
    event(unit, rec.id, "task-event", now, request=request_id, task=spec["type"],
          phase="triggered")


def triggered_event(task_id: str, request: int, entry: OutboxEntry) -> dict:
    """The entry as Keptn's ``<task>.triggered`` CloudEvent."""
    spec = entry.spec
    out = {"specversion": "1.0", "id": event_id(task_id, request),
           "type": f"{TYPE_PREFIX}{spec['type']}.triggered", "source": "flowmetal",
           "time": iso_time(spec.get("created") or entry.created),
           "datacontenttype": "application/json",
           "shkeptncontext": spec.get("context") or task_id,
           "data": spec.get("data") or {}}
    if spec.get("triggeredid"):
        out["triggeredid"] = spec["triggeredid"]
    return out


def _entry(unit: Unit, task_id: str, request: int) -> OutboxEntry | None:
    data = unit.t.outbox_get(task_id, request)
    if data is None:
        return None
    try:
        entry = OutboxEntry.from_bytes(data)
    except RecordError:
        return None
    return entry if entry.kind == KIND else None


def claim(unit: Unit, worker: str, types: list[str], limit: int, lock_for: float
          ) -> list[Claimed]:
    """Lock up to ``limit`` task events of these types (oldest first) to ``worker``."""
    now = unit.now
    wanted = set(types)
    candidates = []
    for task_id, request, data in unit.t.outbox_items():
        try:
            entry = OutboxEntry.from_bytes(data)
        except RecordError:
            continue
        if entry.kind == KIND and entry.spec.get("type") in wanted and \
                (entry.lease_until is None or entry.lease_until <= now):
            candidates.append((entry.created, task_id, request))
    candidates.sort()
    out: list[Claimed] = []
    for _, task_id, request in candidates:
        if len(out) >= limit:
            break
        rec = unit.get(task_id)  # locks the task: a concurrent claim waits here
        entry = _entry(unit, task_id, request)
        if entry is None or (entry.lease_until is not None and entry.lease_until > now):
            continue
        if rec is None or not waits_on(rec, request):
            end_wait(unit, task_id, request)
            continue
        entry.epoch += 1
        entry.lease_worker = worker
        entry.lease_until = now + lock_for
        entry.attempts += 1
        put_entry(unit, task_id, request, entry)
        event(unit, task_id, "task-event", now, request=request, task=entry.spec["type"],
              phase="claimed", worker=worker, attempt=entry.attempts)
        out.append(Claimed(triggered_event(task_id, request, entry),
                           f"{worker}:{entry.epoch}", now + lock_for))
    return out


def _held(unit: Unit, triggered: str, lock: str
          ) -> tuple[TaskRecord, int, OutboxEntry] | Refusal:
    """The task event a worker answers about, if its lock still stands."""
    ids = parse_event_id(triggered)
    if ids is None:
        return Refusal.UNKNOWN
    task_id, request = ids
    rec = unit.get(task_id)
    if rec is None:
        return Refusal.UNKNOWN
    entry = _entry(unit, task_id, request)
    if entry is None or not waits_on(rec, request):
        return Refusal.GONE if rec.request_seq >= request else Refusal.UNKNOWN
    worker, _, epoch = lock.rpartition(":")
    if entry.lease_worker != worker or str(entry.epoch) != epoch or \
            entry.lease_until is None or entry.lease_until < unit.now:
        return Refusal.LOCK
    return rec, request, entry


def started(unit: Unit, triggered: str, lock: str, lock_for: float) -> float | Refusal:
    """The worker began the task: its lock extended, and from now the run waits up to the
    task's finish timeout; when the lock now lasts until, or why it was refused."""
    held = _held(unit, triggered, lock)
    if isinstance(held, Refusal):
        return held
    rec, request, entry = held
    now = unit.now
    if entry.spec.get("started") is None:
        entry.spec["started"] = now
        waiting = rec.waiting
        if waiting is not None and waiting.request == request and waiting.until is not None:
            unit.t.timer_delete(waiting.until, rec.id, request)
        finish = entry.spec.get("finish-timeout")
        seconds = FINISH_TIMEOUT if finish is None else finish
        rec.waiting.until = now + seconds
        unit.t.timer_add(rec.waiting.until, rec.id, request,
                         Timer(TimerKind.TIMEOUT, KIND, seconds).to_bytes())
        unit.put(rec)
        event(unit, rec.id, "task-event", now, request=request, task=entry.spec["type"],
              phase="started", worker=entry.lease_worker)
    entry.lease_until = now + lock_for
    put_entry(unit, rec.id, request, entry)
    return entry.lease_until


def heartbeat(unit: Unit, triggered: str, lock: str, lock_for: float, status: Any = None
              ) -> float | Refusal:
    """A ``.status.changed`` from the worker: its lock extended (the task's progress is
    logged); when the lock now lasts until, or why it was refused."""
    held = _held(unit, triggered, lock)
    if isinstance(held, Refusal):
        return held
    rec, request, entry = held
    entry.lease_until = unit.now + lock_for
    put_entry(unit, rec.id, request, entry)
    if status is not None:
        event(unit, rec.id, "task-event", unit.now, request=request,
              task=entry.spec["type"], phase="status.changed", status=status)
    return entry.lease_until


def finished(unit: Unit, triggered: str, lock: str, data: dict) -> bool | Refusal:
    """The worker's ``.finished``: its data answers the run's request (True), or why it
    was refused."""
    held = _held(unit, triggered, lock)
    if isinstance(held, Refusal):
        return held
    rec, request, entry = held
    now = unit.now
    event(unit, rec.id, "task-event", now, request=request, task=entry.spec["type"],
          phase="finished", worker=entry.lease_worker, result=data.get("result"),
          status=data.get("status"))
    deliver(unit, rec, Answer(request, True, encode_data(from_plain(data))), now)
    return True


def timed_out(unit: Unit, rec: TaskRecord, request: int, seconds: float, now: float
              ) -> None:
    """The task event's timeout passed: the run's request fails, saying which timeout."""
    entry = _entry(unit, rec.id, request)
    if entry is None or not waits_on(rec, request):
        return
    spec = entry.spec
    name = spec["type"]
    if spec.get("started") is None:
        held = f"; worker {entry.lease_worker} locked it but never said .started" \
            if entry.lease_worker else ""
        message = (f"task {name}: no worker took it within {seconds:g} s (no .started "
                   f"event{held}; is a worker subscribed to {name}?)")
        phase = "start"
    else:
        message = f"task {name}: no .finished within {seconds:g} s of its .started"
        phase = "finish"
    fail_request(unit, rec, request, "timeout", message, now, op="task-event",
                 task_type=name, phase=phase)
