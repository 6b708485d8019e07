"""Operations on tasks, as the command line and the REPL use them (over ``Store``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..codec import encode_machine
from ..interpreter import Session, base
from ..store.base import NewTask
from ..values import Vector
from .code import (
    COMMAND_LINE_ARGS,
    FILE,
    code_of,
    program_records,
    spawnable,
)
from .records import Limits, TaskError, TaskRecord, encode_data, new_task_id
from .worker import Worker

SAME = object()  # start's default *file*: the program's file name


def start(store, source: str, file: str, args: list[str] | None = None,
          limits: dict | None = None, trace: bool = False, script: Any = SAME,
          name: str | None = None, key: str | None = None,
          fingerprint: str | None = None) -> str:
    """Analyze a program and submit it as a new runnable task; its id.

    The program sees ``args`` as ``*command-line-args*`` and ``script`` (default:
    ``file``) as ``*file*``.  The program, the standard library it was analyzed against
    and every program it spawns by a literal name are stored with it.  Read and syntax
    errors raise before anything is stored.  A start with the idempotency ``key`` of an
    earlier one starts nothing and gives that one's id (``KeyReused`` if both gave a
    ``fingerprint`` of what they asked for, and they differ).
    """
    import os

    session = Session()
    program = session.load_program(source, file)
    session.globals[COMMAND_LINE_ARGS] = Vector(args or [])
    session.globals[FILE] = file if script is SAME else script
    m = session.machine(program)
    names, records = spawnable(program)
    records.update(program_records(program))
    programs: set = set()
    state = encode_machine(m, base().globals, programs)
    rec = TaskRecord(new_task_id(), name or os.path.basename(file), program.hash,
                     limits=Limits.of(limits), trace=trace,
                     programs=list(code_of(m, programs | {program.hash})), spawnable=names)
    return store.start(NewTask(rec, state, {"file": file}), records, key=key,
                       fingerprint=fingerprint)


def start_stored(store, program: str, args: list[str] | None = None,
                 limits: dict | None = None, key: str | None = None,
                 fingerprint: str | None = None) -> str:
    """Start a task running a program of the store, named by a deployed name or by its
    hash (or a unique prefix of at least 8 digits of it); its id.  ``key`` and
    ``fingerprint`` as in ``start``."""
    import os

    from .code import CodeUnavailable, base_globals, load_program, program_machine

    with store.view() as view:
        digest = view.resolve(program) or _program_hash(view, program)
        if digest is None:
            raise TaskError(f"no program {program} in the store (deploy it first)")
        try:
            loaded = load_program(view, digest)
            m = program_machine(view, loaded, tuple(args or ()), loaded.file)
        except CodeUnavailable as exc:
            raise TaskError(f"program {program}: {exc}") from None
    programs: set = set()
    state = encode_machine(m, base_globals(m), programs)
    rec = TaskRecord(new_task_id(), os.path.basename(loaded.file or program), digest,
                     limits=Limits.of(limits),
                     programs=list(code_of(m, programs | {digest})))
    return store.start(NewTask(rec, state, {"file": loaded.file, "started_as": program}),
                       key=key, fingerprint=fingerprint)


def _program_hash(view, text: str) -> str | None:
    if len(text) < 8 or any(c not in "0123456789abcdef" for c in text):
        return None
    if view.program(text) is not None:
        return text
    found = [h for h in view.program_hashes() if h.startswith(text)]
    return found[0] if len(found) == 1 else None


def deploy(store, source: str, file: str, name: str) -> str:
    """Store a program (and what it spawns by literal names) under ``name``, for
    ``(spawn name ...)``; its hash."""
    program = Session().load(source, file)
    _, records = spawnable(program)
    records.update(program_records(program))
    store.deploy(name, program.hash, records)
    return program.hash


def get(store, task_id: str) -> TaskRecord:
    """The task's record (TaskError if there is none)."""
    return store.get(task_id)


AMBIGUOUS_SHOWN = 10  # candidates an ambiguous id's message lists


def find_task(store, text: str) -> str:
    """The id of the task ``text`` names: its id, or a prefix or else a suffix of it
    that names one task only.  TaskError otherwise (an ambiguous one lists the
    candidates)."""
    from ..store.tables import TaskFilter

    if not text:
        raise TaskError("no task id given")
    with store.view() as view:
        if view.task(text) is not None or text in view.unreadable:
            return text
        found = [r.id for r in view.tasks(TaskFilter(id_prefix=text), limit=AMBIGUOUS_SHOWN + 1)]
        if not found:
            found = [i for i in _all_ids(view) if i.endswith(text)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TaskError(f"no task {text}")
    listed = ", ".join(found[:AMBIGUOUS_SHOWN])
    more = ", ..." if len(found) > AMBIGUOUS_SHOWN else ""
    raise TaskError(f"{text} names more than one task ({listed}{more}): give more of the id")


def _all_ids(view) -> list[str]:
    ids: list[str] = []
    after = ""
    while True:
        page = view.tasks(after=after, limit=1000)
        ids += [r.id for r in page]
        if len(page) < 1000:
            return ids
        after = page[-1].id


def remove(store, task_ids: list[str]) -> list[TaskRecord]:
    """Delete finished tasks with their continuations, inboxes and journals (all or
    none); their records.  TaskError if one is unknown or unfinished."""
    return store.remove(task_ids)


def prune(store, statuses: tuple[str, ...], older_than: float) -> list[str]:
    """Delete the finished tasks of these statuses that ended more than ``older_than``
    seconds ago (a task whose parent has not finished is kept); the ids deleted."""
    return store.prune(statuses, older_than)


def tree(view, root_id: str) -> list[str]:
    """The task and the tasks it spawned, transitively (parents first)."""
    out, pending = [], [root_id]
    while pending:
        task_id = pending.pop(0)
        rec = view.task(task_id)
        if rec is None:
            continue
        out.append(task_id)
        pending.extend(rec.children)
    return out


def run_foreground(store, task_id: str, write: Callable[[str], None],
                   worker: Worker | None = None,
                   stop: Callable[[], bool] | None = None) -> TaskRecord:
    """Run the store's tasks until ``task_id`` finishes (or ``stop()`` is true), writing
    its output and that of the tasks it spawned as each step commits; the task's record
    as last committed.

    Output is shown once: the position reached is committed in the same transaction as
    the steps that printed it, and only then written.  A run that is killed may so lose
    the output of its last commit, but never shows output twice; an interrupted run is
    continued by calling this again, which shows only output not shown before.
    """
    worker = worker or Worker(store)
    worker.watch = task_id

    def show(output: list[tuple[str, str]]) -> None:
        for _, text in output:
            write(text)

    worker.on_output = show
    try:
        while True:
            ran = worker.round()
            rec = store.get(task_id)
            if rec.finished or (stop is not None and stop()):
                break
            if ran == 0:
                worker.idle()
    finally:
        try:
            worker.stop()
        finally:
            worker.on_output = None
            worker.watch = None
    return store.get(task_id)


def send(store, task_id: str, message: Any) -> int:
    """Put ``message`` in the task's inbox (a ``receive`` waiting for it wakes); the
    message's sequence number.  TaskError for an unknown or finished task."""
    return store.send(task_id, encode_data(message))


def cancel(store, task_id: str) -> TaskRecord:
    """Ask the task to stop: it sees a ``{:type :cancelled}`` error where it stands (at
    once if it waits, else at its next step) and ends cancelled unless it catches it.
    Each call raises the error once.  The task's record after the request."""
    return store.cancel(task_id)


def release_dead_leases(store, task_ids: list[str] | None = None) -> int:
    """Give up the leases of workers that are gone (their liveness lock is free), so
    their tasks resume at once instead of when the lease expires; how many."""
    return store.release_dead(task_ids)





def plan_upgrade(store, task_id: str, source: str | None = None, file: str | None = None
                 ) -> tuple[Any, TaskRecord, bytes, Any]:
    """Plan moving a task onto new code: onto the program ``source`` (named ``file``) if
    given, and onto this Flowmetal's standard library.  (plan, record, state, program)."""
    from ..upgrade import plan_upgrade as plan

    with store.view() as view:
        rec = view.task(task_id)
        if rec is None:
            raise TaskError(f"no task {task_id}")
        if rec.finished:
            raise TaskError(f"cannot upgrade task {task_id}: it is {rec.status}")
        state = view.continuation(task_id)
        records = _Records(view)
        program = Session().load(source, file) if source is not None else None
        result = plan(state, records.get, program=program, base=base(),
                      old_program=rec.program if program is not None else None)
    return result, rec, state, program


def upgrade(store, task_id: str, source: str | None = None, file: str | None = None
            ) -> Any:
    """Move a waiting task onto new code when every frame of its continuation maps onto
    an unchanged definition (see ``upgrade.py``); the plan (``plan.ok`` says whether the
    task was moved)."""
    from .code import program_records

    plan, rec, state, program = plan_upgrade(store, task_id, source, file)
    if plan.ok:
        records = program_records(*(p for p in [program] if p is not None))
        store.upgrade(task_id, rec, state, plan.state,
                      program.hash if program is not None else rec.program,
                      sorted(set(plan.programs) | ({plan.base} if plan.base else set())),
                      records)
    return plan


class _Records:
    """Program records looked up in a view, and in this process's own analyses (a new
    program and standard library are not stored until the upgrade commits)."""

    def __init__(self, view):
        self.view = view

    def get(self, digest: str) -> dict | None:
        from ..analysis import program_record
        from ..program import PROGRAMS

        current = base()
        if digest == current.hash or digest in {p.hash for p in current.programs}:
            return current.records().get(digest)
        record = self.view.program(digest)
        if record is None and digest in PROGRAMS:
            return program_record(PROGRAMS[digest])
        return record
