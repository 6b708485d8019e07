"""``select``: one wait on several things, answered by whichever comes first.

A select of n arms is request R of its task; its arms get requests R+1 ... R+n, under
which each is set up as its single-operation wait would be: a join registers with the
joined task, an HTTP request puts an entry in the outbox, a receive and an await are
looked for when a message or a callback request arrives.  The first answer to any arm's
request answers R, saying which arm (``Answer.arm``); the answers the other arms get
later find the task no longer waiting on them and are dropped, and their outbox entries
go at once.  A timeout answers with ``{:op :timeout}``.

An HTTP arm's own ``:timeout`` and an await arm's callback expiry end the arm as they end
the single wait: a timer of the arm's request (due at the arm's fourth item, so that it
is disarmed with the others), armed when it comes before the select's own timeout, fails
that arm with the error the single wait gets.  An await arm on a
callback already expired or used up fails at once, as ``await`` does.
"""

from __future__ import annotations

import math

from ..connectors.http_request import DEFAULT_TIMEOUT
from ..runtime.records import (
    Answer,
    AnswerKind,
    Message,
    OutboxEntry,
    RecordError,
    Status,
    TaskRecord,
    Timer,
    TimerKind,
    Waiting,
    encode_data,
)
from ..values import Map, kw
from .base import Request, StepCommit
from .callbacks import read_callback
from .engine import MAX_WAIT, Unit, answer_value, deliver, fail_request, task_error, wait

OPS = ("receive", "await", "join", "http")


def arm_of(waiting: Waiting, request: int) -> tuple[int, list] | None:
    """(index, arm) of the select arm whose request is ``request``."""
    for index, arm in enumerate(waiting.arms or ()):
        if arm[1] == request:
            return index, arm
    return None


def waits_on(rec: TaskRecord, request: int) -> bool:
    """Whether the task waits on ``request``: its own, or an arm of its select."""
    waiting = rec.waiting
    if rec.status != Status.WAITING or waiting is None:
        return False
    return waiting.request == request or (
        waiting.op == "select" and arm_of(waiting, request) is not None)


def timed_out(unit: Unit, rec: TaskRecord, request_id: int, now: float) -> None:
    """The select's timeout passed: it answers ``{:op :timeout}``."""
    answer_value(unit, rec, request_id, True, Map({kw("op"): kw("timeout"),
                                                   kw("index"): None}), now)


def handle_select(unit: Unit, rec: TaskRecord, request_id: int, req: Request,
                  step: StepCommit, now: float) -> None:
    """Answer at once from the first arm that is ready, or set every arm up and wait."""
    specs = (req.spec or {}).get("arms") or []
    if not specs:
        fail_request(unit, rec, request_id, "type-error", "select: give at least one arm",
                     now)
        return
    first = rec.request_seq + 1
    rec.request_seq += len(specs)
    arms = []
    for index, spec in enumerate(specs):
        op, sub = spec.get("op"), first + index
        if op == "receive":
            found = _first_message(unit, rec, spec.get("after", 0), step)
            if found is not None:
                seq, data = found
                _answer_arm(unit, rec, request_id, index, op,
                            Answer(sub, True, data, AnswerKind.MESSAGE, seq=seq), now)
                return
            arms.append([op, sub, spec.get("after", 0)])
        elif op == "await":
            key = spec.get("digest", "")
            cb = read_callback(unit, key)
            if cb is None or cb.task != rec.id:
                fail_request(unit, rec, request_id, "callback-error",
                             f"select: arm {index}: no such callback of this task", now)
                return
            if cb.pending:
                value = cb.pending.pop(0)
                unit.t.callback_put(key, rec.id, cb.to_bytes())
                _answer_arm(unit, rec, request_id, index, op, Answer(sub, True, value), now)
                return
            if cb.used_up(now):
                used = now < cb.expires
                error = task_error("callback-error" if used else "timeout",
                                   "await: the callback took its one request already"
                                   if used else "await: the callback expired")
                _answer_arm(unit, rec, request_id, index, op,
                            Answer(sub, False, encode_data(error)), now)
                return
            arms.append([op, sub, key, cb.expires])
        elif op == "join":
            target = unit.get(spec.get("task") or "")
            if target is None:
                fail_request(unit, rec, request_id, "no-such-task",
                             f"select: arm {index}: no task {spec.get('task')}", now)
                return
            if target.finished:
                answer = Answer(sub, True, target.result) if target.status == Status.DONE \
                    else Answer(sub, False, target.error, AnswerKind.TASK_FAILED,
                                task=target.id, status=str(target.status))
                _answer_arm(unit, rec, request_id, index, op, answer, now)
                return
            arms.append([op, sub, target.id])
        elif op == "http":
            timeout = (spec.get("spec") or {}).get("timeout", DEFAULT_TIMEOUT)
            arms.append([op, sub, None, now + timeout])
        else:
            fail_request(unit, rec, request_id, "type-error",
                         f"select: arm {index}: unknown operation {op!r}", now)
            return
    # Nothing is ready: set every arm up, and wait.
    for arm, spec in zip(arms, specs):
        if arm[0] == "join":
            target = unit.get(arm[2])
            target.joiners.append((rec.id, arm[1]))
            unit.put(target)
        elif arm[0] == "http":
            from .outbox import add_entry, idempotency_key

            add_entry(unit, rec.id, arm[1], OutboxEntry(
                "http", spec.get("spec") or {}, idempotency_key(rec.id, arm[1]), now, now))
    wait(unit, rec, request_id, "select", now, req.timeout, arms=arms)
    _arm_timers(unit, rec, arms, now)


def _arm_timers(unit: Unit, rec: TaskRecord, arms: list, now: float) -> None:
    """Arm the timers of the arms that end before the select's own timeout; the others'
    ends are forgotten (``None``), the select ending first."""
    own = rec.waiting.until
    for arm in arms:
        if len(arm) < 4 or arm[3] is None:
            continue
        due = max(now, min(arm[3], now + MAX_WAIT))
        if due == math.inf or own is not None and due >= own:
            arm[3] = None
            continue
        arm[3] = due
        # (the timer's op names the single wait, whose timeout error the arm then gets)
        unit.t.timer_add(due, rec.id, arm[1],
                         Timer(TimerKind.TIMEOUT, arm[0], due - now).to_bytes())


def _first_message(unit: Unit, rec: TaskRecord, after: int, step: StepCommit
                   ) -> tuple[int, bytes] | None:
    consumed = set(step.consumed)
    for seq, data in unit.t.inbox_items(rec.id, after):
        if seq in consumed:
            continue
        try:
            return seq, Message.from_bytes(data).value
        except RecordError:
            continue
    return None


def _answer_arm(unit: Unit, rec: TaskRecord, request_id: int, index: int, op: str,
                answer: Answer, now: float) -> None:
    answer.request, answer.arm, answer.arm_op = request_id, index, op
    deliver(unit, rec, answer, now)


def as_select_answer(waiting: Waiting, answer: Answer) -> bool:
    """Make an answer to one of the select's arms the select's answer (False if it
    answers none of them)."""
    found = arm_of(waiting, answer.request)
    if found is None:
        return False
    answer.request, answer.arm, answer.arm_op = waiting.request, found[0], found[1][0]
    return True


def drop_other_arms(unit: Unit, rec: TaskRecord, waiting: Waiting) -> None:
    """The select was answered: its HTTP arms' requests are not made any more, and its
    arms' timers are disarmed."""
    for arm in waiting.arms or ():
        if arm[0] == "http":
            unit.t.outbox_delete(rec.id, arm[1])
        if len(arm) > 3 and arm[3] is not None:
            unit.t.timer_delete(arm[3], rec.id, arm[1])


def receive_arm(waiting: Waiting, seq: int) -> int | None:
    """The request of the select's receive arm that message ``seq`` answers, if any."""
    for op, sub, after, *_ in waiting.arms or ():
        if op == "receive" and seq > after:
            return sub
    return None


def await_arm(waiting: Waiting, key: str) -> int | None:
    """The request of the select's arm awaiting the callback kept under ``key``."""
    for op, sub, digest, *_ in waiting.arms or ():
        if op == "await" and digest == key:
            return sub
    return None
