"""Operations on tasks, as the command line and the REPL use them."""

from __future__ import annotations

import time
from collections.abc import Callable

from ..codec import encode_machine
from ..interpreter import Session, base
from ..values import Vector, sym
from .records import (
    FINISHED,
    TaskError,
    new_task_id,
    new_task_record,
)
from .steps import Tasks, log, save_program, schedule_deadline
from .worker import Worker

COMMAND_LINE_ARGS = sym("*command-line-args*")
FILE = sym("*file*")


def start(store, source: str, file: str, args: list[str] | None = None,
          limits: dict | None = None, trace: bool = False) -> str:
    """Analyze a program and submit it as a new runnable task; its id.

    Read and syntax errors raise before anything is stored.
    """
    session = Session()
    program = session.load(source, file)
    session.globals[COMMAND_LINE_ARGS] = Vector(args or [])
    session.globals[FILE] = file
    m = session.machine(program)
    programs: set = set()
    state = encode_machine(m, base().globals, programs)
    task_id = new_task_id()
    now = time.time()
    with store.write() as txn:
        tasks = Tasks(txn)
        save_program(txn, program)
        rec = new_task_record(task_id, program, limits, trace=trace)
        rec["programs"] = sorted(programs | {program.hash})
        rec["state_bytes"] = len(state)
        txn.put_cont(task_id, state)
        txn.runnable_add(task_id)
        tasks.put(rec)
        schedule_deadline(tasks, rec, now)
        log(tasks, task_id, "created", now, program=program.hash, file=file)
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
    out, pending = [], [root_id]
    while pending:
        task_id = pending.pop(0)
        rec = txn.get_task(task_id)
        if rec is None:
            continue
        out.append(task_id)
        pending.extend(rec.get("children", []))
    return out


def run_foreground(store, task_id: str, write: Callable[[str], None],
                   worker: Worker | None = None) -> dict:
    """Run the store's tasks until ``task_id`` finishes, writing its output (and that of
    the tasks it spawned) as each step commits; the task's final record.

    Output already shown (by an earlier, interrupted run) is not shown again: the
    position reached is saved with each round's commit.
    """
    worker = worker or Worker(store)
    shown: dict[str, int] = {}
    with store.read() as txn:
        for tid in tree(txn, task_id):
            shown[tid] = (txn.get_task(tid) or {}).get("shown", 0)

    def save_shown(tasks: Tasks) -> None:
        for tid, seq in shown.items():
            rec = tasks.get(tid)
            if rec is not None and rec.get("shown", 0) < seq:
                rec["shown"] = seq
                tasks.put(rec)

    def show() -> dict:
        with store.read() as txn:
            for tid in tree(txn, task_id):
                for seq, text in txn.output_items(tid, shown.get(tid, 0)):
                    write(text)
                    shown[tid] = seq
            return txn.get_task(task_id)

    worker.on_commit = save_shown
    try:
        while True:
            ran = worker.round()
            rec = show()
            if rec is None:
                raise TaskError(f"task {task_id} disappeared")
            if rec["status"] in FINISHED:
                break
            if ran == 0:
                worker.idle()
    finally:
        worker.round(stopping=True)
        worker.on_commit = None
    return rec
