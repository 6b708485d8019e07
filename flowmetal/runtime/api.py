"""Operations on tasks, as the command line and the REPL use them."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from ..interpreter import Session
from ..values import Vector, sym
from .records import (
    FINISHED,
    TaskError,
    new_task_id,
    new_task_record,
)
from .steps import Tasks, add_task, deliver, log, post, save_program, task_error
from .worker import Worker

COMMAND_LINE_ARGS = sym("*command-line-args*")
FILE = sym("*file*")
SAME = object()  # start's default *file*: the program's file name


def start(store, source: str, file: str, args: list[str] | None = None,
          limits: dict | None = None, trace: bool = False, script: Any = SAME) -> str:
    """Analyze a program and submit it as a new runnable task; its id.

    The program sees ``args`` as ``*command-line-args*`` and ``script`` (default:
    ``file``) as ``*file*``.  Read and syntax errors raise before anything is stored.
    """
    session = Session()
    program = session.load(source, file)
    session.globals[COMMAND_LINE_ARGS] = Vector(args or [])
    session.globals[FILE] = file if script is SAME else script
    m = session.machine(program)
    task_id = new_task_id()
    now = time.time()
    with store.write() as txn:
        tasks = Tasks(txn)
        while tasks.get(task_id) is not None:
            task_id = new_task_id()
        save_program(txn, program)
        add_task(tasks, new_task_record(task_id, program, limits, trace=trace), m, now,
                 file=file)
        tasks.flush()
    return task_id


def get(store, task_id: str) -> dict:
    """The task's record (TaskError if there is none)."""
    with store.read() as txn:
        rec = txn.get_task(task_id)
    if rec is None:
        raise TaskError(f"no task {task_id}")
    return rec


def tree(txn, root_id: str) -> list[str]:
    """The task and the tasks it spawned, transitively (parents first)."""
    return _tree(txn.get_task, root_id)


def _tree(get_task: Callable[[str], dict | None], root_id: str) -> list[str]:
    out, pending = [], [root_id]
    while pending:
        task_id = pending.pop(0)
        rec = get_task(task_id)
        if rec is None:
            continue
        out.append(task_id)
        pending.extend(rec.get("children", []))
    return out


def run_foreground(store, task_id: str, write: Callable[[str], None],
                   worker: Worker | None = None,
                   stop: Callable[[], bool] | None = None) -> dict:
    """Run the store's tasks until ``task_id`` finishes (or ``stop()`` is true), writing
    its output and that of the tasks it spawned as each step commits; the task's record
    as last committed.

    Output is shown once: the position reached is committed in the same transaction as
    the steps that printed it, and only then written.  A run that is killed may so lose
    the output of its last commit, but never shows output twice; an interrupted run is
    continued by calling this again, which shows only output not shown before.
    """
    worker = worker or Worker(store)
    unseen: list[str] = []
    latest: list[dict | None] = [None]

    def collect(tasks: Tasks) -> None:
        for tid in _tree(tasks.get, task_id):
            rec = tasks.get(tid)
            shown = last = rec.get("shown", 0)
            for seq, text in tasks.txn.output_items(tid, shown):
                unseen.append(text)
                last = seq
            if last > shown:
                rec["shown"] = last
                tasks.put(rec)
        rec = tasks.get(task_id)
        latest[0] = None if rec is None else dict(rec)

    def round_(stopping: bool = False) -> int:
        try:
            ran = worker.round(stopping=stopping)
        except BaseException:
            unseen.clear()  # not committed: not shown either
            raise
        texts = unseen[:]
        unseen.clear()
        for text in texts:
            write(text)
        return ran

    worker.on_commit = collect
    done = False
    try:
        while True:
            ran = round_()
            rec = latest[0]
            if rec is None:
                raise TaskError(f"no task {task_id}")
            if rec["status"] in FINISHED or (stop is not None and stop()):
                break
            if ran == 0:
                worker.idle()
        done = True
    finally:
        try:
            round_(stopping=True)
        finally:
            worker.on_commit = None
            if not done:
                release_leases(store, worker.id)
    return latest[0]


# ---------------------------------------------------------------------------------------
# Leases


def lease_holder_gone(lease: dict | None) -> bool:
    """True when the lease's worker is a process of this host that no longer runs."""
    if not lease:
        return True
    host, _, rest = lease["worker"].partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_live(rec: dict, now: float | None = None) -> bool:
    """True when a worker holds the task's lease and may be running it."""
    lease = rec.get("lease")
    now = time.time() if now is None else now
    return bool(lease) and lease["until"] > now and not lease_holder_gone(lease)


def release_dead_leases(store, which: Callable[[Any], list[str]]) -> int:
    """Clear the leases held by dead workers of this host on the tasks ``which(txn)``
    names (so they can be resumed at once instead of when the lease expires); how many
    were cleared.  The tasks are found in the write transaction: only a writer is sure to
    see the last commit of a worker that died committing."""
    cleared = 0
    with store.write() as txn:
        tasks = Tasks(txn)
        for task_id in which(txn):
            rec = tasks.get(task_id)
            if rec and rec.get("lease") and lease_holder_gone(rec["lease"]):
                rec["lease"] = None
                tasks.put(rec)
                cleared += 1
        tasks.flush()
    return cleared


def release_leases(store, worker_id: str) -> None:
    """Clear the leases ``worker_id`` holds on runnable tasks (a worker stopped abruptly)."""
    with store.write() as txn:
        tasks = Tasks(txn)
        for task_id in txn.runnable(1_000_000):
            rec = tasks.get(task_id)
            if rec and rec.get("lease") and rec["lease"]["worker"] == worker_id:
                rec["lease"] = None
                tasks.put(rec)
        tasks.flush()


# ---------------------------------------------------------------------------------------
# Messages and cancellation from outside


def _live_task(tasks: Tasks, task_id: str, what: str) -> dict:
    rec = tasks.get(task_id)
    if rec is None:
        raise TaskError(f"no task {task_id}")
    if rec["status"] == "moved":
        raise TaskError(f"cannot {what} task {task_id}: it moved to another store")
    if rec["status"] in FINISHED:
        raise TaskError(f"cannot {what} task {task_id}: it is {rec['status']}")
    return rec


def send(store, task_id: str, message: Any) -> int:
    """Put ``message`` in the task's inbox (a ``receive`` waiting for it wakes); the
    message's sequence number.  TaskError for an unknown or finished task."""
    now = time.time()
    with store.write() as txn:
        tasks = Tasks(txn)
        rec = _live_task(tasks, task_id, "send to")
        seq = post(tasks, rec, message, None, now)
        tasks.flush()
    return seq


def cancel(store, task_id: str) -> dict:
    """Ask the task to stop: it sees a ``{:type :cancelled}`` error where it stands (at
    once if it waits, else at its next step) and ends cancelled unless it catches it.
    Each call raises the error once.  The task's record after the request."""
    now = time.time()
    with store.write() as txn:
        tasks = Tasks(txn)
        rec = _live_task(tasks, task_id, "cancel")
        rec["cancel"] = True
        rec["cancel_delivered"] = False
        log(tasks, task_id, "cancel", now)
        waiting = rec.get("waiting")
        if rec["status"] == "waiting" and waiting:
            error = task_error("cancelled", f"task {task_id} was cancelled")
            deliver(tasks, rec, waiting["request"], False, error, now)
            # The worker raises nothing more: the answer is the cancellation.
            rec["cancel_delivered"] = True
        tasks.put(rec)
        tasks.flush()
    return rec
