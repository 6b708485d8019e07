"""Committing steps: everything one step changed, in the transaction that commits it.

A worker runs a task's machine to its next effect (or the end of its slice) outside any
transaction, producing a ``Step``.  ``commit_step`` then writes, in one transaction with
other steps: the new continuation, the output, the consumed inbox messages, the request
and whatever handling the request does at once (timers, messages to other tasks, new
tasks, answers), and the task's new status.  Nothing a step produced is visible before
that commit, and an answer is in the store before the task that asked sees it.
"""

from __future__ import annotations

import os
from typing import Any

import cbor2

from ..codec import encode_machine
from ..interpreter import Session, base
from ..machine import Machine, call_state, error_value
from ..primitives.effects import TaskId
from ..printer import display_string, to_string
from ..program import Program
from ..values import Boolean, Map, Vector, kw, sym
from .records import (
    FINISHED,
    decode_data,
    encode_data,
    new_task_id,
    new_task_record,
    program_record,
)

K_SEQ, K_MESSAGE, K_DEADLINE, K_OP = kw("seq"), kw("message"), kw("deadline"), kw("op")
COMMAND_LINE_ARGS = sym("*command-line-args*")
ATOMS = frozenset({int, float, str, type(None), Boolean, TaskId})  # values with no parts


class Step:
    """What running one task's slice produced, waiting to be committed."""

    __slots__ = ("task_id", "epoch", "machine", "state", "programs", "output", "consumed",
                 "took_answer", "status", "request", "value", "error", "keep_lease",
                 "cancel_delivered", "draft")

    def __init__(self, task_id: str, epoch: int, machine: Machine):
        self.task_id = task_id
        self.epoch = epoch
        self.machine = machine
        self.state: bytes | None = None   # the continuation to store (None when finished)
        self.programs: set = set()        # the programs the continuation's code is from
        self.output = ""
        self.consumed: list = []          # inbox messages taken
        self.took_answer = False
        self.status = "runnable"          # runnable, waiting, done, failed, cancelled
        self.request: Any = None          # the effect asked for (a Map), when waiting
        self.value: Any = None            # the result, when done
        self.error: Any = None            # the error value, when failed or cancelled
        self.keep_lease = True
        self.cancel_delivered = False
        self.draft: Any = None            # its commit worked out in advance (drafts.py)


class Tasks:
    """The task records touched in one transaction: read once, written once at the end.

    ``known`` (id -> (stored bytes, record)) carries records from one transaction to the
    next: a record whose stored bytes are unchanged is not decoded again.  Whoever keeps
    it must drop it when a transaction fails, since its records were changed in place.
    """

    def __init__(self, txn: Any, known: dict[str, tuple[bytes, dict]] | None = None):
        self.txn = txn
        self.cache: dict[str, dict | None] = {}
        self.dirty: set[str] = set()
        self.known = known
        # Answers given in this transaction whose values are atoms (task id -> (request,
        # value)): once it commits, a worker may hand them over without decoding them.
        self.answers: dict[str, tuple[int, Any]] = {}

    def get(self, task_id: str) -> dict | None:
        """The task's record (changes go back with ``put``)."""
        cache = self.cache
        if task_id in cache:
            return cache[task_id]
        data = self.txn.get_task_data(task_id)
        kept = self.known.get(task_id) if self.known is not None else None
        if data is None:
            rec = None
        elif kept is not None and kept[0] == data:
            rec = kept[1]
        else:
            rec = cbor2.loads(data)
        cache[task_id] = rec
        return rec

    def put(self, record: dict) -> None:
        """Mark a record as changed."""
        self.cache[record["id"]] = record
        self.dirty.add(record["id"])

    def flush(self) -> None:
        """Write the changed records."""
        for task_id in sorted(self.dirty):
            rec = self.cache[task_id]
            data = cbor2.dumps(rec)
            self.txn.put_task_data(task_id, data)
            if self.known is not None:
                self.known[task_id] = (data, rec)
        self.dirty.clear()


def log(tasks: Tasks, task_id: str, kind: str, now: float, **fields: Any) -> None:
    """Append an event to a task's log."""
    tasks.txn.log_append(task_id, {"v": 1, "at": now, "kind": kind, **fields})


def commit_step(tasks: Tasks, step: Step, worker: str, now: float, lease_for: float) -> bool:
    """Write ``step``; False (and nothing written) if its lease was lost meanwhile."""
    rec = tasks.get(step.task_id)
    lease = rec.get("lease") if rec else None
    if not lease or lease["worker"] != worker or lease["epoch"] != step.epoch:
        return False
    txn = tasks.txn
    task_id = rec["id"]
    if step.took_answer:
        rec["answer"] = None
    if step.cancel_delivered:
        rec["cancel_delivered"] = True
    if step.output:
        txn.output_append(task_id, step.output)
    for seq in step.consumed:
        txn.inbox_delete(task_id, seq)
    rec["steps"] += 1
    rec["reductions"] = step.machine.reductions
    rec["updated"] = now
    if step.state is not None:
        txn.put_cont(task_id, step.state)
        rec["state_bytes"] = len(step.state)
        rec["programs"] = sorted(step.programs)
        if rec.get("trace"):
            log(tasks, task_id, "step", now, reductions=step.machine.reductions,
                state=step.state)
    if step.status == "waiting":
        request(tasks, rec, step, now)  # an answer given at once makes it runnable again
    elif step.status in ("done", "failed", "cancelled"):
        finish(tasks, rec, step.status, now, step.value, step.error)
    else:
        rec["status"] = "runnable"
        txn.runnable_add(task_id)
    if rec["status"] == "runnable" and step.keep_lease:
        rec["lease"] = {"worker": worker, "epoch": step.epoch, "until": now + lease_for}
    else:
        rec["lease"] = None
    if rec["status"] != "runnable":
        txn.runnable_remove(task_id)
    tasks.put(rec)
    return True


# ---------------------------------------------------------------------------------------
# Answers, timers, finishing


def deliver(tasks: Tasks, rec: dict, request_id: int, ok: bool, value: Any, now: float) -> bool:
    """Answer the task's request ``request_id`` (if it still waits on it): the answer is
    stored and logged, and the task becomes runnable.  Stale answers are dropped."""
    waiting = rec.get("waiting")
    if rec["status"] != "waiting" or not waiting or waiting["request"] != request_id:
        return False
    rec["answer"] = {"request": request_id, "ok": ok, "value": encode_data(value)}
    if type(value) in ATOMS:
        tasks.answers[rec["id"]] = (request_id, value)
    rec["status"] = "runnable"
    rec["waiting"] = None
    rec["updated"] = now
    if waiting.get("timer") is not None:
        tasks.txn.timer_delete(waiting["timer"], rec["id"], request_id)
    log(tasks, rec["id"], "answer", now, request=request_id, op=waiting["op"], ok=ok,
        value=to_string(value))
    tasks.txn.runnable_add(rec["id"])
    tasks.put(rec)
    return True


def task_error(kind: str, message: str, data: Any = None) -> Map:
    """An error value raised into a task by the runtime (no Flowmetal backtrace)."""
    return error_value(kind, message, data, Vector())


def finish(tasks: Tasks, rec: dict, status: str, now: float, value: Any = None,
           error: Any = None) -> None:
    """Mark the task finished, disarm its timers and answer everyone joined on it."""
    waiting = rec.get("waiting")
    if waiting and waiting.get("timer") is not None:
        tasks.txn.timer_delete(waiting["timer"], rec["id"], waiting["request"])
    deadline = rec["limits"].get("deadline")
    if deadline:
        tasks.txn.timer_delete(rec["created"] + deadline, rec["id"], 0)
    rec["status"] = status
    rec["waiting"] = None
    rec["answer"] = None
    rec["lease"] = None
    rec["updated"] = now
    if status == "done":
        rec["result"] = encode_data(value)
        log(tasks, rec["id"], "done", now, value=to_string(value))
    else:
        rec["error"] = encode_data(error)
        log(tasks, rec["id"], status, now, error=to_string(error))
    tasks.txn.runnable_remove(rec["id"])
    for joiner_id, request_id in rec.get("joiners", []):
        joiner = tasks.get(joiner_id)
        if joiner is None:
            continue
        if status == "done":
            deliver(tasks, joiner, request_id, True, value, now)
        else:
            deliver(tasks, joiner, request_id, False,
                    task_error("task-failed", f"task {rec['id']} {status}",
                               Map({kw("task"): TaskId(rec["id"]), kw("error"): error})), now)
    rec["joiners"] = []
    tasks.put(rec)


def fail(tasks: Tasks, rec: dict, kind: str, message: str, now: float, data: Any = None
         ) -> None:
    """Fail the task with a runtime error (limits, corrupt state, missing code)."""
    finish(tasks, rec, "failed", now, error=task_error(kind, message, data))


def fire_timers(tasks: Tasks, now: float, limit: int = 10_000) -> int:
    """Handle the timers due at ``now``; how many fired."""
    due = tasks.txn.timers_due(now, limit)
    for when, task_id, request_id, timer in due:
        tasks.txn.timer_delete(when, task_id, request_id)
        rec = tasks.get(task_id)
        if rec is None or rec["status"] in FINISHED:
            continue
        kind = timer.get("kind")
        if kind == "wake":
            deliver(tasks, rec, request_id, True, None, now)
        elif kind == "timeout":
            op = WAIT_NAMES.get(timer.get("op"), timer.get("op", "wait"))
            seconds = round(timer.get("seconds", 0), 3)
            deliver(tasks, rec, request_id, False,
                    task_error("timeout", f"{op} timed out after {seconds:g} s",
                               Map({kw("op"): kw(op)})), now)
        elif kind == "deadline":
            fail(tasks, rec, "limit-error",
                 f"task deadline of {rec['limits']['deadline']:g} s passed", now,
                 Map({kw("limit"): kw("deadline")}))
    return len(due)


WAIT_NAMES = {"next-message": "receive"}
MAX_WAIT = 100 * 365 * 86_400.0  # a century: no timer is armed further away


def wait(tasks: Tasks, rec: dict, request_id: int, op: str, now: float, seconds: float | None,
         deadline: float | None = None, kind: str = "timeout", **extra: Any) -> None:
    """Leave the task waiting on its request, with a timer at the deadline."""
    if deadline is None:
        seconds = rec["limits"]["wait"] if seconds is None else seconds
        deadline = now + seconds
    if not deadline >= now:  # in the past, or NaN
        deadline = now
    deadline = min(deadline, now + MAX_WAIT)
    rec["waiting"] = {"request": request_id, "op": op, "until": deadline, "timer": deadline,
                      **extra}
    tasks.txn.timer_add(deadline, rec["id"], request_id,
                        {"kind": kind, "op": op, "seconds": max(0.0, deadline - now)})


# ---------------------------------------------------------------------------------------
# Requests


def request(tasks: Tasks, rec: dict, step: Step, now: float) -> None:
    """Record the step's request and do what can be done at once."""
    req = step.request
    op = req.get(K_OP).name
    rec["request_seq"] += 1
    request_id = rec["request_seq"]
    rec["status"] = "waiting"
    rec["waiting"] = {"request": request_id, "op": op, "until": None, "timer": None}
    handler = HANDLERS.get(op)
    if handler is None:
        deliver(tasks, rec, request_id, False,
                task_error("effect-error", f"unknown effect {op}"), now)
        return
    handler(tasks, rec, request_id, req, step, now)
    # A request answered at once is logged once, by its answer (which names the op).
    if rec["status"] == "waiting":
        log(tasks, rec["id"], "request", now, request=request_id, op=op, args=to_string(req))


def _arg(req: Map, name: str) -> Any:
    return req.get(kw(name))


def handle_sleep(tasks, rec, request_id, req, step, now) -> None:
    wait(tasks, rec, request_id, "sleep", now, _arg(req, "seconds"), kind="wake")


def handle_now(tasks, rec, request_id, req, step, now) -> None:
    deliver(tasks, rec, request_id, True, now, now)


def handle_random(tasks, rec, request_id, req, step, now) -> None:
    below = _arg(req, "below")
    rng = int.from_bytes(os.urandom(8), "big")
    value = rng % below if below is not None else rng / 2**64
    deliver(tasks, rec, request_id, True, value, now)


def handle_send(tasks, rec, request_id, req, step, now) -> None:
    target_id = _arg(req, "to")
    message = _arg(req, "message")
    target = tasks.get(target_id)
    if target is None:
        deliver(tasks, rec, request_id, False,
                task_error("no-such-task", f"send: no task {target_id}",
                           Map({kw("task"): TaskId(target_id)})), now)
        return
    if target["status"] == "moved":
        deliver(tasks, rec, request_id, False,
                task_error("task-moved", f"send: task {target_id} moved to another store",
                           Map({kw("task"): TaskId(target_id)})), now)
        return
    if target["status"] not in FINISHED:
        post(tasks, target, message, rec["id"], now)
    deliver(tasks, rec, request_id, True, None, now)


def post(tasks: Tasks, target: dict, message: Any, sender: str | None, now: float) -> int:
    """Queue ``message`` in the target's inbox, answering a receive waiting for one."""
    seq = target["inbox_seq"] = target.get("inbox_seq", 0) + 1
    tasks.put(target)
    tasks.txn.inbox_put(target["id"], seq, {"v": 1, "from": sender, "at": now,
                                           "value": encode_data(message)})
    log(tasks, target["id"], "message", now, seq=seq, sender=sender, value=to_string(message))
    waiting = target.get("waiting")
    if target["status"] == "waiting" and waiting and waiting["op"] == "next-message" \
            and seq > waiting.get("after", 0):
        deliver(tasks, target, waiting["request"], True,
                Map({K_SEQ: seq, K_MESSAGE: message, K_DEADLINE: waiting.get("deadline_value")}),
                now)
    return seq


def handle_next_message(tasks, rec, request_id, req, step, now) -> None:
    after = _arg(req, "after")
    deadline = _arg(req, "deadline")
    if deadline is not None and type(deadline) not in (int, float):
        deliver(tasks, rec, request_id, False,
                task_error("type-error", "receive: the deadline must be a number"), now)
        return
    if deadline is None:
        timeout = _arg(req, "timeout")
        deadline = now + (rec["limits"]["wait"] if timeout is None else timeout)
    for seq, message in tasks.txn.inbox_items(rec["id"], after):
        if seq in step.consumed:
            continue
        deliver(tasks, rec, request_id, True,
                Map({K_SEQ: seq, K_MESSAGE: decode_data(message["value"]),
                     K_DEADLINE: deadline}), now)
        return
    wait(tasks, rec, request_id, "next-message", now, None, deadline=deadline, after=after,
         deadline_value=deadline)


def handle_join(tasks, rec, request_id, req, step, now) -> None:
    target_id = _arg(req, "task")
    target = tasks.get(target_id)
    if target is None or target["status"] == "moved":
        what = "no task" if target is None else "moved away:"
        deliver(tasks, rec, request_id, False,
                task_error("no-such-task", f"join: {what} {target_id}",
                           Map({kw("task"): TaskId(target_id)})), now)
        return
    if target["status"] == "done":
        deliver(tasks, rec, request_id, True, decode_data(target["result"]), now)
        return
    if target["status"] in FINISHED:
        deliver(tasks, rec, request_id, False,
                task_error("task-failed", f"task {target_id} {target['status']}",
                           Map({kw("task"): TaskId(target_id),
                                kw("error"): decode_data(target["error"])})), now)
        return
    target.setdefault("joiners", []).append([rec["id"], request_id])
    tasks.put(target)
    wait(tasks, rec, request_id, "join", now, _arg(req, "timeout"), task=target_id)


def handle_spawn(tasks, rec, request_id, req, step, now) -> None:
    target = _arg(req, "target")
    args = tuple(_arg(req, "args") or ())
    parent = step.machine
    child_id = new_task_id()
    while tasks.get(child_id) is not None:
        child_id = new_task_id()
    try:
        if type(target) is str:
            program, m = _program_machine(tasks, rec, target, args)
            name = os.path.basename(target)
        else:
            program = _program_of(tasks, rec)
            m = Machine(dict(parent.globals), own=dict(parent.own))
            m.node, m.env, m.k, m.val = call_state(target, args)
            name = f"{rec['name']}/{getattr(target, 'name', 'fn')}"
    except (OSError, UnicodeDecodeError) as exc:
        deliver(tasks, rec, request_id, False,
                task_error("spawn-error", f"spawn: cannot read {target}: {exc}"), now)
        return
    except Exception as exc:  # a read or syntax error in the spawned program
        deliver(tasks, rec, request_id, False,
                task_error("spawn-error", f"spawn: {exc}"), now)
        return
    child = new_task_record(child_id, program, rec["limits"], parent=rec["id"],
                            root=rec.get("root") or rec["id"], trace=rec.get("trace", False),
                            name=name)
    add_task(tasks, child, m, now, parent=rec["id"], name=name)
    rec.setdefault("children", []).append(child_id)
    deliver(tasks, rec, request_id, True, TaskId(child_id), now)


def add_task(tasks: Tasks, rec: dict, m: Machine, now: float, **logged: Any) -> None:
    """Store a new task: its record, the machine's state as its continuation, runnable,
    its deadline armed and a "created" log entry (with ``logged`` details)."""
    programs: set = set()
    state = encode_machine(m, base().globals, programs)
    rec["programs"] = sorted(programs | {rec["program"]})
    rec["state_bytes"] = len(state)
    tasks.txn.put_cont(rec["id"], state)
    tasks.txn.runnable_add(rec["id"])
    tasks.put(rec)
    schedule_deadline(tasks, rec, now)
    log(tasks, rec["id"], "created", now, program=rec["program"], **logged)


def _program_of(tasks: Tasks, rec: dict) -> Program:
    from .records import load_program

    return load_program(tasks.txn, rec["program"])


def _program_machine(tasks: Tasks, rec: dict, path: str, args: tuple) -> tuple[Program, Machine]:
    parent_program = _program_of(tasks, rec)
    if not os.path.isabs(path) and os.path.exists(parent_program.file):
        path = os.path.join(os.path.dirname(os.path.abspath(parent_program.file)), path)
    with open(path, encoding="utf-8") as f:
        source = f.read()
    session = Session()
    program = session.load(source, path)
    save_program(tasks.txn, program)
    session.globals[COMMAND_LINE_ARGS] = Vector(a if type(a) is str else display_string(a)
                                                for a in args)
    return program, session.machine(program)


def save_program(txn: Any, program: Program) -> None:
    """Keep the program in the store (programs are immutable, stored once)."""
    if txn.get_program(program.hash) is None:
        txn.put_program(program.hash, program_record(program))


def schedule_deadline(tasks: Tasks, rec: dict, now: float) -> None:
    """Arm the timer that fails the task when its deadline passes."""
    seconds = rec["limits"].get("deadline")
    if seconds:
        tasks.txn.timer_add(rec["created"] + seconds, rec["id"], 0, {"kind": "deadline"})


HANDLERS = {
    "sleep": handle_sleep,
    "now": handle_now,
    "random": handle_random,
    "send": handle_send,
    "next-message": handle_next_message,
    "join": handle_join,
    "spawn": handle_spawn,
}
