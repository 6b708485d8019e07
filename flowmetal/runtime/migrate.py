"""Moving a task between stores: one self-contained export file, imported elsewhere.

An export (``flowmetal-task-export/2``) is a CBOR map::

    format     "flowmetal-task-export/2"
    exported   when (the exporting store's clock)
    store      where it left (a directory or a URL)
    task       the task record as it was, without its lease (records.TaskRecord bytes)
    cont       the encoded continuation (codec.py)
    programs   {hash: program record} for every program its state refers to
    inbox      [[seq, message record], ...] the messages not yet taken
    output     [[seq, text], ...] everything it printed (``shown`` says how much was seen)
    log        [[seq, event record], ...] its event log
    wait       [due, request, timer record] of its current wait, or nil

The exporting store marks the task ``moved`` in the transaction that reads it, and the
file is written and synced before that transaction commits: a task that is exported
never runs in the old store again, and a failed write leaves it where it was.  LMDB and
PostgreSQL stores export and import the same files.
"""

from __future__ import annotations

from collections.abc import Callable

import cbor2

from ..codec import CodecError
from ..store.engine import EXPORT_FORMAT, MigrationError
from .code import CodeUnavailable, task_machine
from .records import TaskRecord

__all__ = ["EXPORT_FORMAT", "MigrationError", "export_task", "import_task", "read_export"]


def export_task(store, task_id: str, write: Callable[[bytes], None]) -> TaskRecord:
    """Write the task's export with ``write`` and mark it moved; its record as exported.

    A task leased by a live worker cannot move (stop the worker first).
    """
    return store.export_task(task_id, lambda data: write(cbor2.dumps(data)))


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
    if type(top.get("task")) is not bytes or type(top.get("cont")) is not bytes or \
            type(top.get("programs")) is not dict:
        raise MigrationError("the task export is incomplete")
    return top


def import_task(store, data: bytes) -> TaskRecord:
    """Add the exported task to ``store`` as it was when it left (runnable, or waiting
    with its timer armed again); its new record.  A task already here cannot come in
    again, unless what is here is the record of its having moved away.  The task's
    code and continuation are checked before anything is written."""
    top = read_export(data)

    def check(rec: TaskRecord, cont: bytes) -> None:
        view = _Programs(top["programs"])
        try:
            task_machine(view, rec, cont)
        except (CodeUnavailable, CodecError) as exc:
            raise MigrationError(f"task {rec.id} cannot run here: {exc}") from None

    return store.import_task(top, check)


class _Programs:
    """The export's programs, looked up as a store view's are."""

    def __init__(self, programs: dict):
        self.programs = programs

    def program(self, digest: str) -> dict | None:
        return self.programs.get(digest)
