"""Drafts: a step's writes prepared outside a one-writer store's write lock.

Only one process writes to an LMDB store at a time, so whatever a worker does inside
its write transaction holds up every other worker.  A step whose commit touches nothing
but its own task (a slice that ran out of fuel, ``now``, ``random``, ``sleep``) can be
worked out beforehand from the record the worker committed last: ``prepare`` runs
``commit_step`` against a ``DraftTables`` that notes the writes instead of making them.
Inside the transaction, ``apply`` makes those writes only if the stored record is still
byte for byte the one the draft started from: every change to a task by anyone else
(a message, a cancel, a timer, another worker taking the lease) rewrites its record.
Otherwise the step is committed the ordinary way, so a draft is never wrong, only
sometimes wasted.
"""

from __future__ import annotations

import time
from typing import Any

from ..runtime.records import TaskRecord
from .base import StepCommit
from .engine import Unit, commit_step

# Requests whose handling writes only the asking task's record, log, timers and state.
LOCAL_OPS = frozenset({"now", "random", "sleep"})


class DraftTables:
    """Stands in for a write transaction: notes the writes (all of them to the task's
    own data) that a local commit makes.  It has no way to read: the task's record is
    handed to the commit beforehand, and a commit that needs anything else fails with
    an AttributeError and leaves no draft."""

    def __init__(self, now: float):
        self.writes: list[tuple[str, tuple]] = []
        self.now = now

    def clock(self) -> float:
        """The time the draft was made."""
        return self.now


def _noting(name: str) -> Any:
    def write(self: DraftTables, *args: Any) -> None:
        self.writes.append((name, args))

    write.__name__ = name
    return write


# The writes a local commit makes, all of them to the task's own data.
for _name in ("put_cont", "log_append", "output_append", "inbox_delete", "timer_add",
              "timer_delete", "runnable_add", "runnable_remove"):
    setattr(DraftTables, _name, _noting(_name))


class Draft:
    """What ``apply`` needs: the step, the record the draft started from, the new record
    and its bytes, the writes, and the answers given."""

    __slots__ = ("step", "base", "record", "data", "writes", "answers", "woke")

    def __init__(self, step: StepCommit, base: bytes, record: TaskRecord, data: bytes,
                 writes: list, answers: dict, woke: bool):
        self.step, self.base, self.record, self.data = step, base, record, data
        self.writes, self.answers, self.woke = writes, answers, woke


def prepare(step: StepCommit, known: tuple[bytes, TaskRecord] | None, worker: str,
            lease_for: float) -> Draft | None:
    """The draft of ``step``'s commit from ``known`` (the task's record as last committed:
    its bytes and value), or None if the step is not one that can be drafted."""
    if known is None or not step.keep_lease or step.blocked is not None:
        return None
    if step.status == "waiting":
        if step.request.op not in LOCAL_OPS:
            return None
    elif step.status != "runnable":
        return None
    base, committed = known
    record = committed.copy()
    tables = DraftTables(time.time())
    unit = Unit(tables)  # type: ignore[arg-type]
    unit.cache[step.task_id] = record
    try:
        if not commit_step(unit, step, worker, lease_for):
            return None
    except Exception:  # not local, or a failure the ordinary commit will meet and report
        return None
    return Draft(step, base, record, record.to_bytes(), tables.writes, unit.answers,
                 unit.woke)


def apply(unit: Unit, draft: Draft, step: StepCommit) -> bool:
    """Make the draft's writes in ``unit``'s transaction, if it is the draft of ``step``
    and the task's stored record is still the one the draft started from (and nothing
    in this transaction changed it)."""
    task_id = draft.step.task_id
    if draft.step is not step or not step.keep_lease or task_id in unit.dirty:
        return False  # not this step's, or the step changed (its worker is stopping)
    t = unit.t
    if t.get_task(task_id) != draft.base:
        return False
    for name, args in draft.writes:
        getattr(t, name)(*args)
    t.put_task(task_id, draft.data, _columns(draft.record) if t.needs_columns else None)
    unit.cache[task_id] = draft.record
    if unit.known is not None:
        unit.known[task_id] = (draft.data, draft.record)
    unit.answers.update(draft.answers)
    unit.woke = unit.woke or draft.woke
    return True


def _columns(rec: TaskRecord) -> Any:
    from .engine import columns

    return columns(rec)
