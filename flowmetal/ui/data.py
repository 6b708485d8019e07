"""What the UI's pages show, gathered from the control plane's own data functions (the
dicts its JSON API answers with), plus what only the pages show: a task's program
source, inbox, outbox and recorded (trace-mode) steps, and the sequences' task events
and kept evaluations.  Every function here runs on the store's thread."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from ..codec import CodecError
from ..runtime import inspect
from ..runtime.records import TaskError, decode_data
from ..server.app import log_events, output_after, tasks_page
from ..store.tables import TaskFilter
from ..structs import replace

PAGE_SIZE = 50
TIMELINE_MAX = 2000     # log entries a task page shows at once (the newest)
OUTPUT_MAX = 5000       # output lines a task page shows at once (the newest)
VALUE_CHARS = 2000      # characters of an inbox message shown


def task_list(store: Any, where: TaskFilter, after: str = "", limit: int = PAGE_SIZE
              ) -> dict:
    """A page of tasks, newest first: ``tasks_page``'s dict plus ``now``."""
    page = tasks_page(store, where, after, limit, descending=True)
    with store.view() as view:
        page["now"] = view.clock()
    return page


def tasks_now(store: Any, ids: list[str], where: TaskFilter, newest: str | None,
              limit: int = PAGE_SIZE) -> dict:
    """For a list page following changes: the summaries of the tasks it shows (by id,
    None for one gone), and the tasks newer than ``newest`` that match ``where``,
    newest first (at most ``limit``; ``more`` when there are others)."""
    from ..store.filters import matches

    with store.view() as view:
        now = view.clock()
        shown = {}
        for tid in ids:
            rec = view.task(tid)
            shown[tid] = None if rec is None else inspect.task_summary(rec, now)
        new: list[dict] = []
        more = False
        if newest is not None:
            # The newest tasks of all are read, not those matching ``where``: a filter
            # matching nothing new would scan the whole store.
            for rec in view.tasks(TaskFilter(), limit=limit + 1, descending=True):
                if rec.id <= newest:
                    break
                if len(new) == limit:
                    more = True
                    break
                if matches(where, rec.to_bytes()):
                    new.append(inspect.task_summary(rec, now))
    return {"now": now, "shown": shown, "new": new, "more": more}


def inbox_items(view: Any, tid: str) -> list[dict]:
    """The task's queued messages, oldest first: seq, sender, at and the value printed."""
    out = []
    for seq, message in view.inbox(tid):
        try:
            text = inspect.value_text(decode_data(message.value), VALUE_CHARS)
        except CodecError as exc:
            text = f"#<unreadable message: {exc}>"
        out.append({"seq": seq, "sender": message.sender, "at": message.at, "value": text})
    return out


def outbox_items(view: Any, tid: str) -> list[dict]:
    """The task's outbox entries: request, kind, what it asks (an HTTP request's method
    and URL, a task event's type; never headers or bodies), attempts and the last error."""
    out = []
    for _, request, entry in view.outbox(tid):
        if isinstance(entry, str):
            out.append({"request": request, "kind": "?", "what": entry, "attempts": 0,
                        "worker": None, "not_before": None, "last_error": ""})
            continue
        spec = entry.spec
        if "url" in spec:
            what = f"{spec.get('method', '')} {spec['url']}"
        else:
            what = str(spec.get("type", ""))
        out.append({"request": request, "kind": entry.kind, "what": what,
                    "attempts": entry.attempts, "worker": entry.lease_worker,
                    "not_before": entry.not_before, "last_error": entry.last_error})
    return out


def recorded_steps(view: Any, rec: Any) -> list[tuple[int, float]]:
    """A trace-mode task's recorded steps: (log seq, when) of each, oldest first."""
    if not rec.trace:
        return []
    return [(seq, e.at) for seq, e in view.log(rec.id) if e.kind == "step"]


def step_frames(view: Any, rec: Any, seq: int) -> tuple[list[dict], str | None]:
    """The frames of the state a recorded step (its log seq) committed, and why they
    could not be read (or None)."""
    state = None
    for _, event in view.log(rec.id, seq - 1):
        state = event.details.get("state")
        break
    if state is None:
        return [], "this step recorded no state"
    try:
        m = inspect.load_machine(view, rec, bytes(state))
    except (TaskError, CodecError, KeyError) as exc:
        return [], str(exc)
    return ([] if m is None else inspect.frames(m)), None


def task_page(store: Any, tid: str, step: int | None = None) -> dict:
    """Everything a task page shows: ``detail`` (``task_detail``), ``events`` (the
    log's ``log_entry``s), ``output`` ((seq, text) pairs), the program's ``source``,
    ``inbox``, ``outbox``, and for a trace-mode task ``steps`` with the frames of the
    one viewed (``step``, counted from 1; None: the latest state)."""
    detail = inspect.task_detail(store, tid)
    events = log_events(store, tid)["events"]
    output, _ = output_after(store, tid)
    with store.view() as view:
        rec = view.task(tid)
        if rec is None:
            raise TaskError(f"no task {tid}")
        program = view.program(rec.program) or {}
        data = {"detail": detail, "events": events[-TIMELINE_MAX:],
                "events_left_out": max(0, len(events) - TIMELINE_MAX),
                "output": output[-OUTPUT_MAX:],
                "source": program.get("source"), "file": program.get("file"),
                "inbox": inbox_items(view, tid), "outbox": outbox_items(view, tid),
                "steps": recorded_steps(view, rec), "step": None}
        steps = data["steps"]
        if step is not None and steps:
            step = max(1, min(step, len(steps)))
            frames, problem = step_frames(view, rec, steps[step - 1][0])
            data.update(step=step, step_frames=frames, step_problem=problem)
    return data


def task_changes(store: Any, tid: str, log_after: int, output_after_seq: int) -> dict:
    """What changed in a task since a page showed it: its record's ``updated`` and
    ``steps``, whether it ended, and the log entries and output above those seqs."""
    from ..runtime.inspect import log_entry

    with store.view() as view:
        rec = view.task(tid)
        if rec is None:
            raise TaskError(f"no task {tid}")
        events = [log_entry(seq, e) for seq, e in view.log(tid, log_after)]
        output = list(view.output(tid, output_after_seq))
        return {"updated": rec.updated, "steps": rec.steps, "status": str(rec.status),
                "finished": rec.finished, "events": events, "output": output}


# -- counts per status ------------------------------------------------------------------

@dataclass
class Counted:
    """Counts of one filter, when they were made and how long that took."""

    counts: dict[str, int]
    at: float
    took: float


class StatusCounts:
    """The counts per status of a filter (its status left out), made again when older
    than ``max(MIN_AGE, SLOWER * the time it took)``: counting reads every record an
    LMDB store holds (about a second for 100,000 tasks), so a page never waits for it
    and the counts lag by at most a few seconds of counting."""

    MIN_AGE = 1.0
    SLOWER = 5.0
    KEPT = 64

    def __init__(self) -> None:
        self.found: dict[TaskFilter, Counted] = {}
        self.lock = threading.Lock()

    @staticmethod
    def key(where: TaskFilter) -> TaskFilter:
        """The filter whose counts a listing of ``where`` shows (every status)."""
        return replace(where, status=())

    def cached(self, where: TaskFilter) -> dict[str, int] | None:
        """The counts kept for ``where``, however old, or None."""
        with self.lock:
            found = self.found.get(self.key(where))
        return None if found is None else found.counts

    def fresh(self, store: Any, where: TaskFilter) -> dict[str, int]:
        """The counts for ``where``, made again if they are stale (on the store's
        thread)."""
        key = self.key(where)
        now = time.monotonic()
        with self.lock:
            found = self.found.get(key)
        if found is not None and now - found.at < max(self.MIN_AGE, self.SLOWER * found.took):
            return found.counts
        with store.view() as view:
            counts = view.count(key)
        took = time.monotonic() - now
        with self.lock:
            if len(self.found) >= self.KEPT:
                self.found.pop(next(iter(self.found)))
            self.found[key] = Counted(counts, time.monotonic(), took)
        return counts


# -- sequences ------------------------------------------------------------------------

EVALUATIONS_SHOWN = 20


def run_task_events(events: list[dict]) -> list[dict]:
    """A run's task events from its log's ``task-event`` entries: one row per task
    event (request), in order, with its latest phase, worker, result and status, and
    when it was triggered and finished."""
    rows: dict[int, dict] = {}
    for entry in events:
        if entry["kind"] != "task-event":
            continue
        d = entry["details"]
        row = rows.setdefault(d.get("request"), {
            "task": d.get("task"), "phase": None, "worker": None, "result": None,
            "status": None, "triggered": entry["at"], "finished": None})
        row["phase"] = d.get("phase")
        row["worker"] = d.get("worker") or row["worker"]
        if d.get("phase") == "finished":
            row.update(result=d.get("result"), status=d.get("status"), finished=entry["at"])
    return list(rows.values())


def sequences_page(store: Any) -> dict:
    """The sequences page: the runs of ``GET /api/v1/sequences`` (newest first), each
    with its task events; the stages of each project's current shipyard; and the kept
    evaluations of every project, stage and service with a run (the newest
    ``EVALUATIONS_SHOWN``)."""
    from ..sequences import client, evaluations, shipyards

    listing = client.listing(store)
    runs = list(reversed(listing["runs"]))
    for run in runs:
        try:
            run["task_events"] = run_task_events(log_events(store, run["task"])["events"])
        except TaskError:
            run["task_events"] = []
    stages: dict[str, list[str]] = {}
    for project in shipyards.projects(store):
        current = shipyards.current_shipyard(store, project)
        if current is not None:
            stages[project] = [stage.name for stage in current[1].stages]
    kept = {}
    for key in sorted({(r["project"], r["stage"], r["service"]) for r in runs}):
        try:
            found = evaluations.history(store, evaluations.Key(*key))
        except evaluations.EvaluationStoreError as exc:
            kept[key] = {"error": str(exc), "items": []}
            continue
        if found:
            kept[key] = {"error": None, "items": [
                {"id": k.id, "at": k.at, "invalidated": k.invalidated,
                 "evaluation": k.evaluation} for k in found[-EVALUATIONS_SHOWN:]]}
    return {"runs": runs, "warnings": listing["warnings"], "stages": stages,
            "evaluations": kept}
