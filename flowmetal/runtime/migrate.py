"""Moving a task between stores: one self-contained export file, imported elsewhere.

An export (``flowmetal-task-export/1``) is a CBOR map::

    format     "flowmetal-task-export/1"
    exported   when (seconds since the epoch)
    store      the path of the store it left
    stdlib     the hash of the standard library its programs were analyzed against
    task       the task record as it was (without its lease)
    cont       the encoded continuation (codec.py)
    programs   {hash: program record} for every program its state refers to
    inbox      [[seq, message record], ...] the messages not yet taken
    output     [[seq, text], ...] everything it printed (``shown`` says how much was seen)
    log        [[seq, event], ...] its event log
    wait       {"due", "request", "timer"} the timer of its current wait, or nil

The exporting store marks the task ``moved`` in the transaction that reads it, and
writes the file before that transaction commits: a task that is exported never runs in
the old store again, and a failed write leaves it where it was.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cbor2

from ..codec import CodecError, decode_machine
from ..interpreter import base
from ..values import Map, kw
from .api import lease_live
from .inspect import load_programs
from .records import FINISHED, TaskError, decode_data
from .steps import Tasks, deliver, log, schedule_deadline, task_error

EXPORT_FORMAT = "flowmetal-task-export/1"


class MigrationError(TaskError):
    """A task cannot be exported or imported (running, finished, bad file, duplicate)."""


def _items(pairs: Any) -> list:
    return [[seq, item] for seq, item in pairs]


def export_task(store, task_id: str, write: Callable[[bytes], None]) -> dict:
    """Write the task's export with ``write`` and mark it moved; its record as exported.

    A task leased by a live worker cannot move (stop the worker first).
    """
    now = time.time()
    with store.write() as txn:
        tasks = Tasks(txn)
        rec = tasks.get(task_id)
        if rec is None:
            raise MigrationError(f"no task {task_id}")
        if rec["status"] == "moved":
            raise MigrationError(f"task {task_id} has already moved to another store")
        if rec["status"] in FINISHED:
            raise MigrationError(f"task {task_id} is {rec['status']}: only unfinished "
                                 "tasks can move")
        if lease_live(rec, now):
            raise MigrationError(f"task {task_id} is running on worker "
                                 f"{rec['lease']['worker']}; stop that worker (or wait "
                                 "until the task waits) and export again")
        exported = dict(rec, lease=None)
        digests = set(rec.get("programs") or []) | {rec["program"]}
        programs = {}
        for digest in sorted(digests):
            record = txn.get_program(digest)
            if record is not None:  # the standard library's programs are not stored
                programs[digest] = record
        events = _items(txn.log_items(task_id))
        data = {
            "format": EXPORT_FORMAT, "exported": now, "store": store.path,
            "stdlib": base().hash, "task": exported, "cont": txn.get_cont(task_id),
            "programs": programs, "inbox": _items(txn.inbox_items(task_id)),
            "output": _items(txn.output_items(task_id)), "log": events,
            "wait": _wait_timer(rec, events),
        }
        write(cbor2.dumps(data))
        _mark_moved(tasks, rec, now)
        tasks.flush()
    return exported


def _wait_timer(rec: dict, events: list) -> dict | None:
    """The timer of the task's current wait, rebuilt from its record and log."""
    waiting = rec.get("waiting")
    if rec["status"] != "waiting" or not waiting or waiting.get("timer") is None:
        return None
    asked = rec["updated"]
    for _, event in reversed(events):
        if event.get("kind") == "request" and event.get("request") == waiting["request"]:
            asked = event["at"]
            break
    op = waiting["op"]
    return {"due": waiting["timer"], "request": waiting["request"],
            "timer": {"kind": "wake" if op == "sleep" else "timeout", "op": op,
                      "seconds": max(0.0, waiting["timer"] - asked)}}


def _mark_moved(tasks: Tasks, rec: dict, now: float) -> None:
    txn = tasks.txn
    waiting = rec.get("waiting")
    if waiting and waiting.get("timer") is not None:
        txn.timer_delete(waiting["timer"], rec["id"], waiting["request"])
    if rec["limits"].get("deadline"):
        txn.timer_delete(rec["created"] + rec["limits"]["deadline"], rec["id"], 0)
    txn.runnable_remove(rec["id"])
    joiners, rec["joiners"] = rec.get("joiners", []), []
    rec.update(status="moved", moved_to="export", lease=None, waiting=None, updated=now)
    tasks.put(rec)
    log(tasks, rec["id"], "exported", now)
    for joiner_id, request_id in joiners:
        joiner = tasks.get(joiner_id)
        if joiner is not None:
            deliver(tasks, joiner, request_id, False,
                    task_error("task-moved", f"join: task {rec['id']} moved to another store",
                               Map({kw("task"): _task_id(rec["id"])})), now)


def _task_id(task_id: str) -> Any:
    from ..primitives.effects import TaskId

    return TaskId(task_id)


def read_export(data: bytes) -> dict:
    """The export in ``data``, checked for its format (MigrationError if it is not one)."""
    try:
        top = cbor2.loads(data)
    except Exception:
        raise MigrationError("not a Flowmetal task export (unreadable CBOR)") from None
    if type(top) is not dict or top.get("format") != EXPORT_FORMAT:
        found = top.get("format") if type(top) is dict else None
        raise MigrationError(f"not a {EXPORT_FORMAT} file" +
                             (f" (it is {found})" if found else ""))
    rec = top.get("task")
    if type(rec) is not dict or type(rec.get("id")) is not str or \
            type(top.get("cont")) is not bytes or type(top.get("programs")) is not dict:
        raise MigrationError("the task export is incomplete")
    return top


def import_task(store, data: bytes) -> dict:
    """Add the exported task to ``store`` as it was when it left (runnable, or waiting
    with its timer armed again); its new record.  A task already here cannot come in
    again, unless what is here is the record of its having moved away."""
    top = read_export(data)
    now = time.time()
    with store.write() as txn:
        tasks = Tasks(txn)
        rec = dict(top["task"])
        task_id = rec["id"]
        here = tasks.get(task_id)
        if here is not None and here["status"] != "moved":
            raise MigrationError(f"task {task_id} is already in this store "
                                 f"({here['status']})")
        for digest, record in top["programs"].items():
            if txn.get_program(digest) is None:
                txn.put_program(digest, record)
        try:
            load_programs(txn, rec)
            decode_machine(top["cont"], base().globals)
        except (TaskError, CodecError) as exc:
            raise MigrationError(f"task {task_id} cannot run here: {exc}") from None
        if here is not None:
            txn.delete_task_data(task_id)
        rec.update(lease=None, moved_to=None, joiners=[], updated=now)
        txn.put_cont(task_id, top["cont"])
        for seq, message in top.get("inbox", []):
            txn.inbox_put(task_id, seq, message)
        for _, text in top.get("output", []):
            txn.output_append(task_id, text)
        for _, event in top.get("log", []):
            txn.log_append(task_id, event)
        tasks.put(rec)
        log(tasks, task_id, "imported", now, source=top.get("store"))
        if rec["status"] == "runnable":
            txn.runnable_add(task_id)
        elif rec["status"] == "waiting":
            _wait_again(tasks, rec, top.get("wait"), now)
        schedule_deadline(tasks, rec, now)
        tasks.flush()
    return rec


def _wait_again(tasks: Tasks, rec: dict, wait: dict | None, now: float) -> None:
    """Arm the timer of the task's wait again; a join also finds its task here."""
    waiting = rec["waiting"]
    request_id = waiting["request"]
    if waiting["op"] == "join":
        target = tasks.get(waiting.get("task"))
        if target is None or target["status"] == "moved":
            deliver(tasks, rec, request_id, False,
                    task_error("no-such-task", f"join: no task {waiting.get('task')} in "
                               "this store", Map({kw("task"): _task_id(waiting.get("task"))})),
                    now)
            return
        if target["status"] in FINISHED:
            ok = target["status"] == "done"
            value = decode_data(target["result"]) if ok else task_error(
                "task-failed", f"task {target['id']} {target['status']}",
                Map({kw("task"): _task_id(target["id"]),
                     kw("error"): decode_data(target["error"])}))
            deliver(tasks, rec, request_id, ok, value, now)
            return
        target.setdefault("joiners", []).append([rec["id"], request_id])
        tasks.put(target)
    if wait is not None:
        tasks.txn.timer_add(wait["due"], rec["id"], request_id, wait["timer"])
