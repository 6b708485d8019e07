"""Drafts: a step's writes prepared outside the store's write lock.

Only one process writes to a store at a time, so whatever a worker does inside its
write transaction holds up every other worker.  A step whose commit touches nothing but
its own task (a slice that ran out of fuel, ``now``, ``random``, ``sleep``) can be
worked out beforehand from the record the worker committed last: ``prepare`` runs
``commit_step`` against a ``DraftTxn`` that notes the writes instead of making them.
Inside the transaction, ``apply`` makes those writes only if the stored record is still
byte for byte the one the draft started from: every change to a task by anyone else
(a message, a cancel, a timer, another worker taking the lease) rewrites its record.
Otherwise the step is committed the ordinary way, so a draft is never wrong, only
sometimes wasted.
"""

from __future__ import annotations

from typing import Any

import cbor2

from ..values import kw
from .steps import Step, Tasks, commit_step

# Requests whose handling writes only the asking task's record, log, timers and state.
LOCAL_OPS = frozenset({"now", "random", "sleep"})
_OP = kw("op")


class DraftTxn:
    """Stands in for a write transaction: notes the writes (all of them to the task's
    own data) that a local commit makes.  It has no way to read: the task's record is
    handed to the commit beforehand, and a commit that needs anything else fails with
    an AttributeError and leaves no draft."""

    def __init__(self):
        self.writes: list[tuple[str, tuple]] = []


def _noting(name: str) -> Any:
    def write(self: DraftTxn, *args: Any) -> None:
        self.writes.append((name, args))

    write.__name__ = name
    return write


# The writes a local commit makes, all of them to the task's own data.
for _name in ("put_cont", "log_append", "output_append", "inbox_delete", "timer_add",
              "timer_delete", "runnable_add", "runnable_remove"):
    setattr(DraftTxn, _name, _noting(_name))


class Draft:
    """What ``apply`` needs: the step, the record the draft started from, the new record
    and its bytes, the writes, and the answers given."""

    __slots__ = ("step", "base", "record", "data", "writes", "answers")

    def __init__(self, step: Step, base: bytes, record: dict, data: bytes, writes: list,
                 answers: dict):
        self.step, self.base, self.record, self.data = step, base, record, data
        self.writes, self.answers = writes, answers


def prepare(step: Step, known: tuple[bytes, dict] | None, worker: str, now: float,
            lease_for: float) -> Draft | None:
    """The draft of ``step``'s commit from ``known`` (the task's record as last committed:
    its bytes and value), or None if the step is not one that can be drafted."""
    if known is None or not step.keep_lease:
        return None
    if step.status == "waiting":
        if step.request.get(_OP).name not in LOCAL_OPS:
            return None
    elif step.status != "runnable":
        return None
    base, committed = known
    record = dict(committed)  # local commits replace fields, never change them in place
    txn = DraftTxn()
    tasks = Tasks(txn)
    tasks.cache[step.task_id] = record
    try:
        if not commit_step(tasks, step, worker, now, lease_for):
            return None
    except Exception:  # not local, or a failure the ordinary commit will meet and report
        return None
    return Draft(step, base, record, cbor2.dumps(record), txn.writes, tasks.answers)


def apply(tasks: Tasks, draft: Draft) -> bool:
    """Make the draft's writes in ``tasks``'s transaction, if the task's stored record is
    still the one the draft started from (and nothing in this transaction changed it)."""
    task_id = draft.step.task_id
    txn = tasks.txn
    if task_id in tasks.cache or txn.get_task_data(task_id) != draft.base:
        return False
    for name, args in draft.writes:
        getattr(txn, name)(*args)
    txn.put_task_data(task_id, draft.data)
    tasks.cache[task_id] = draft.record
    if tasks.known is not None:
        tasks.known[task_id] = (draft.data, draft.record)
    tasks.answers.update(draft.answers)
    return True
