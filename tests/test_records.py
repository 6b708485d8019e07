"""Task records as stored: a record changed in place reads back as it is now, and its
bytes are the documented array (format, then the fields in order, nested records as
arrays), whatever was encoded for the same task before."""

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmetal.runtime.records import (
    TASK_FORMAT,
    Answer,
    AnswerKind,
    Lease,
    Limits,
    Status,
    TaskRecord,
    Waiting,
)
from flowmetal.structs import fields


def documented_bytes(rec: TaskRecord) -> bytes:
    """The record's bytes as the records module's docstring describes them."""
    def plain(value):
        if isinstance(value, (Status, AnswerKind)):
            return value.value
        if hasattr(value, "__dataclass_fields__"):
            return [plain(getattr(value, f.name)) for f in fields(value)]
        return value
    return cbor2.dumps([TASK_FORMAT, *(plain(getattr(rec, f.name)) for f in fields(rec))])


texts = st.text(max_size=8)
CHANGES = {
    "child": lambda r, x: r.children.append(x),
    "joiner": lambda r, x: r.joiners.append((x, len(r.joiners))),
    "spawnable": lambda r, x: r.spawnable.__setitem__(x[:2], x),
    "fuel": lambda r, x: setattr(r.limits, "fuel", len(x) or None),
    "limits": lambda r, x: setattr(r, "limits", Limits(depth=len(x) + 1)),
    "programs": lambda r, x: setattr(r, "programs", sorted({x, "base"})),
    "programs-in-place": lambda r, x: r.programs.append(x),
    "lease": lambda r, x: setattr(r, "lease", Lease(x, len(x), 1.5) if x else None),
    "lease-in-place": lambda r, x: setattr(r.lease, "until", 2.5) if r.lease else None,
    "waiting": lambda r, x: setattr(r, "waiting", Waiting(len(x), "select",
                                                          arms=[[x, 1, None]]) if x else None),
    "answer": lambda r, x: setattr(r, "answer", Answer(1, True, x.encode(),
                                                       AnswerKind.MESSAGE) if x else None),
    "status": lambda r, x: setattr(r, "status", list(Status)[len(x) % len(Status)]),
    "name": lambda r, x: setattr(r, "name", x),
    "cancel": lambda r, x: setattr(r, "cancel", not r.cancel),
    "shown": lambda r, x: setattr(r, "shown", r.shown + 1),
    "blocked": lambda r, x: setattr(r, "blocked", x or None),
    "step": lambda r, x: (setattr(r, "steps", r.steps + 1), setattr(r, "updated", r.updated + 1)),
}


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3), st.lists(st.tuples(st.sampled_from(sorted(CHANGES)), texts),
                                   max_size=30))
def test_a_record_changed_in_place_is_stored_as_it_is_now(task, changes):
    rec = TaskRecord(f"task-{task}", "prog.fm", "p" * 64, root=f"task-{task}", created=1.0)
    for name, value in changes:
        CHANGES[name](rec, value)
        data = rec.to_bytes()
        assert data == documented_bytes(rec)
        assert TaskRecord.from_bytes(data) == rec


def test_records_of_two_tasks_do_not_share_their_bytes():
    a = TaskRecord("a", "one.fm", "1" * 64, root="a", children=["x"])
    b = TaskRecord("b", "two.fm", "2" * 64, root="b")
    for _ in range(2):
        assert TaskRecord.from_bytes(a.to_bytes()) == a
        assert TaskRecord.from_bytes(b.to_bytes()) == b
