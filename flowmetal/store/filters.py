"""Task filters judged on stored records, for a store without indexes of its own (LMDB)."""

from __future__ import annotations

from ..runtime.records import RecordError, TaskRecord
from .tables import TaskFilter


def _record(data: bytes) -> TaskRecord | None:
    try:
        return TaskRecord.from_bytes(data)
    except RecordError:
        return None


def matches(where: TaskFilter, data: bytes) -> bool:
    """Whether the record stored as ``data`` passes the filter (an unreadable record
    passes a filter that asks nothing, so that listings show it is there)."""
    rec = _record(data)
    if rec is None:
        return where == TaskFilter() or bool(where.id_prefix and not (
            where.status or where.program or where.name or where.parent or where.root))
    return ((not where.status or str(rec.status) in where.status)
            and (where.program is None or rec.program.startswith(where.program))
            and (where.name is None or rec.name == where.name)
            and (where.parent is None or rec.parent == where.parent)
            and (where.root is None or rec.root == where.root)
            and (where.id_prefix is None or rec.id.startswith(where.id_prefix))
            and (where.created_after is None or rec.created >= where.created_after)
            and (where.created_before is None or rec.created < where.created_before))


def status_of(data: bytes) -> str:
    """The status of a stored record ("unreadable" if it cannot be read)."""
    rec = _record(data)
    return "unreadable" if rec is None else str(rec.status)


def has_lease(data: bytes) -> bool:
    """Whether the stored record has a lease."""
    rec = _record(data)
    return rec is not None and rec.lease is not None
