"""Sequence runs: each a durable task running ``run-sequence`` (``stdlib/sequences.fm``)
on a run map made here from the shipyard version it starts with.

A run is started by a ``<stage>.<sequence>.triggered`` event (the control plane's
``POST /api/v1/event``, ``flowmetal trigger``), or by the run before it, whose finished
event a ``triggeredOn`` of the shipyard matches.  Its first step puts it in the queue of
its project, stage and service (``queue_key``); it waits on the runs ahead of it until
fewer than the stage's ``concurrency`` are unfinished.  Runs are listed in the store's
run index, newest last, with what each waits on.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from ..runtime.records import Status, TaskRecord, encode_data
from ..store.engine import Unit, fail_request, post
from ..values import Map, kw
from .shipyard import Shipyard, shipyard_from_json, shipyard_to_json
from .task_events import FINISH_TIMEOUT, KIND, PAUSED, START_TIMEOUT, TYPE_PREFIX

RUNS = "sequence-runs"          # setting: the run index (JSON list, oldest first)
QUEUE = "sequence-queue:"       # setting per queue: its runs' task ids, oldest first
WORKERS = "sequence-workers"    # setting: task type -> worker -> when it last asked
RUNS_KEPT = 500
RUN_SOURCE = "(run-sequence (json-decode (first *command-line-args*)))\n"
RUN_FILE = "sequence-run.fm"
EVENT_KEY = "keptn-event:"  # a triggering event's id, as the idempotency key of its run
CONTEXTS = uuid.UUID("6f1a9d3e-2b47-4c1e-9a55-3f6e0c7d8b21")  # namespace of run contexts


class RunError(Exception):
    """A run cannot be started as asked (no such project, stage or sequence)."""


def queue_key(project: str, stage: str, service: str) -> str:
    """The queue a run waits in: one per project, stage and service."""
    return f"{project}/{stage}/{service}"


def make_run(shipyard: Shipyard, version: int, project: str, stage: str, sequence: str,
             event: dict) -> dict:
    """The run map (plain JSON data) of ``stage.sequence`` started by ``event`` (a
    CloudEvent as JSON): everything the run needs, so that it never reads the shipyard
    again."""
    st = shipyard.stage(stage)
    seq = shipyard.sequence(stage, sequence)
    if st is None or seq is None:
        raise RunError(f"project {project}: shipyard version {version} has no sequence "
                       f"{stage}.{sequence}")
    data = dict(event.get("data") or {})
    data.update(project=project, stage=stage)
    service = data.get("service")
    if type(service) is not str or not service:
        service = data["service"] = "default"
    return {
        "project": project, "stage": stage, "sequence": sequence, "service": service,
        "version": version, "context": event.get("shkeptncontext") or _context_of(event),
        "triggeredid": event.get("id"), "concurrency": st.concurrency,
        "queue": queue_key(project, stage, service),
        "tasks": [{"name": t.name, "triggered-after": t.triggered_after,
                   "properties": t.properties,
                   "start-timeout": START_TIMEOUT if t.start_timeout is None
                   else t.start_timeout,
                   "finish-timeout": FINISH_TIMEOUT if t.finish_timeout is None
                   else t.finish_timeout} for t in seq.tasks],
        "data": data,
        "shipyard": shipyard_to_json(shipyard),
    }


def followers(run: dict, finished: dict) -> list[dict]:
    """The run maps of the sequences whose ``triggeredOn`` matches the finished event of
    ``run`` (its data ``finished``), on the same shipyard version and context."""
    shipyard = shipyard_from_json(run["shipyard"])
    event = {"shkeptncontext": run["context"], "data": finished,
             "id": f"{run['context']}.{run['stage']}.{run['sequence']}.finished"}
    return [make_run(shipyard, run["version"], run["project"], stage, sequence, event)
            for stage, sequence in shipyard.followers(run["stage"], run["sequence"],
                                                      finished)]


def _context_of(event: dict) -> str:
    """A new run's Keptn context: made from the triggering event's id, so that the event
    sent again names the same run's context (a fresh one for an event without an id)."""
    event_id = event.get("id")
    if type(event_id) is str and event_id:
        return str(uuid.uuid5(CONTEXTS, event_id))
    return str(uuid.uuid4())


def start_run(store: Any, run: dict, key: str | None = None) -> str:
    """Start the run as a new task (``key``: an idempotency key, the triggering event's
    id); its task id."""
    from ..runtime import api

    return api.start(store, RUN_SOURCE, RUN_FILE, [json.dumps(run)],
                     name=f"{run['stage']}.{run['sequence']}", key=key)


# -- the effects of a run, answered in the transaction of its step ---------------------

def handle_enqueue(unit: Unit, rec: TaskRecord, request_id: int, req: Any, step: Any,
                   now: float) -> None:
    """Put the run in its queue and the run index; answer with the unfinished runs
    ahead of it."""
    from ..primitives.effects import TaskId
    from ..runtime.records import Answer
    from ..store.engine import deliver
    from ..values import Vector

    run = req.spec
    key = QUEUE + run["queue"]
    ids = _json_list(unit.t.setting_get(key, lock=True))
    unit.prefetch([i for i in ids if i != rec.id])
    ahead = [i for i in ids if i != rec.id and _unfinished(unit, i)]
    unit.t.setting_put(key, json.dumps([*ahead, rec.id]))
    index = _json_list(unit.t.setting_get(RUNS, lock=True))
    if not any(entry.get("task") == rec.id for entry in index):
        index.append({"task": rec.id, "project": run["project"], "stage": run["stage"],
                      "sequence": run["sequence"], "service": run["service"],
                      "context": run["context"], "version": run["version"],
                      "queue": run["queue"], "created": now})
        unit.t.setting_put(RUNS, json.dumps(index[-RUNS_KEPT:]))
    value = Vector([TaskId(i) for i in ahead])
    deliver(unit, rec, Answer(request_id, True, encode_data(value)), now)


def _json_list(text: str | None) -> list:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if type(value) is list else []


def _unfinished(unit: Unit, task_id: str) -> bool:
    rec = unit.get(task_id)
    return rec is not None and not rec.finished


# -- pause, resume, abort --------------------------------------------------------------

RESUME = Map({kw("control"): kw("resume")})


def pause(store: Any, task_id: str) -> str:
    """Pause the run at once: a task event in flight is withdrawn (its worker learns it at
    its next heartbeat; it is triggered again on resume), and no task starts until
    ``resume``.  The run's status."""
    def work(unit: Unit) -> str:
        rec = run_record(unit, task_id)
        now = unit.now
        waiting = rec.waiting
        unit.t.setting_put(PAUSED + rec.id, str(now))
        if rec.status == Status.WAITING and waiting is not None and waiting.op == KIND:
            fail_request(unit, rec, waiting.request, "paused", "the run was paused", now)
        return str(rec.status)
    return store.transact(work)


def resume(store: Any, task_id: str) -> str:
    """Let a paused run go on; the run's status."""
    def work(unit: Unit) -> str:
        from ..runtime.records import TaskError

        rec = run_record(unit, task_id)
        if unit.t.setting_get(PAUSED + rec.id) is None:
            raise TaskError(f"run {task_id} is not paused")
        unit.t.setting_put(PAUSED + rec.id, None)
        post(unit, rec, encode_data(RESUME), None, unit.now)
        return str(rec.status)
    return store.transact(work)


def run_record(unit: Unit, task_id: str) -> TaskRecord:
    """The record of the run ``task_id`` (TaskError if it is no run, or has ended)."""
    from ..runtime.records import TaskError

    rec = unit.get(task_id)
    if rec is None or not _is_run(unit, rec):
        raise TaskError(f"no run {task_id[:64]}" + ("" if rec is None else
                                                     " (that task is not a sequence run)"))
    if rec.finished:
        raise TaskError(f"run {task_id} has ended ({rec.status})")
    return rec


def _is_run(unit: Unit, rec: TaskRecord) -> bool:
    """Whether the task runs a sequence (the program ``start_run`` starts)."""
    import cbor2

    data = unit.t.get_program(rec.program) if rec.program else None
    try:
        program = cbor2.loads(data) if data is not None else None
    except Exception:  # (an unreadable record: not a run's)
        return False
    return type(program) is dict and program.get("file") == RUN_FILE and \
        program.get("source") == RUN_SOURCE


# -- what the runs are doing -----------------------------------------------------------

@dataclass(slots=True)
class RunView:
    """One run as ``flowmetal sequences`` shows it."""

    task: str
    project: str
    stage: str
    sequence: str
    service: str
    context: str
    status: str                 # the task's status
    state: str                  # queued, running, paused, sleeping, done, failed...
    detail: str                 # what it waits on, in words
    blocked_by: str | None = None
    task_type: str | None = None
    worker: str | None = None

    def to_json(self) -> dict:
        """The view as JSON data."""
        return {name: getattr(self, name) for name in self.__slots__}


def runs(store: Any, limit: int = 100) -> list[RunView]:
    """The latest runs (newest last) and what each is doing."""
    from ..store.outbox import entries_of

    index = _json_list(store.setting(RUNS))[-limit:]
    out = []
    with store.view() as view:
        for entry in index:
            rec = view.task(entry["task"])
            status = "missing" if rec is None else str(rec.status)
            state, detail, blocked, task_type, worker = status, "", None, None, None
            waiting = rec.waiting if rec is not None else None
            if rec is not None and rec.status == Status.WAITING and waiting is not None:
                if waiting.op == "join":
                    state, blocked = "queued", waiting.task
                    detail = f"queued behind run {waiting.task}"
                elif waiting.op == KIND:
                    for request, e in entries_of(view, rec.id):
                        if request == waiting.request and not isinstance(e, str):
                            task_type, worker = e.spec.get("type"), e.lease_worker
                    state = "running"
                    detail = f"task {task_type}: " + (
                        f"locked by {worker}" if worker else "waiting for a worker")
                elif waiting.op == "next-message":
                    state, detail = "paused", "paused (resume it to go on)"
                elif waiting.op == "sleep":
                    state, detail = "sleeping", "waiting for a task's triggeredAfter"
            out.append(RunView(entry["task"], entry["project"], entry["stage"],
                               entry["sequence"], entry["service"], entry["context"],
                               status, state, detail, blocked, task_type, worker))
    return out


def note_worker(store: Any, worker: str, types: list[str], now: float) -> None:
    """Record that ``worker`` asked for task events of these types (at ``now``)."""
    def change(text: str | None) -> str:
        try:
            seen = json.loads(text) if text else {}
        except ValueError:
            seen = {}
        if type(seen) is not dict:
            seen = {}
        for name in types:
            workers = seen.setdefault(name, {})
            workers[worker] = now
            for other, when in list(workers.items()):
                if now - when > 86400:
                    del workers[other]
        return json.dumps(seen)
    store.update_setting(WORKERS, change)


def unserved(store: Any, types: list[str], now: float, within: float = 300.0) -> list[str]:
    """Those of the task types no worker has asked for within ``within`` seconds."""
    try:
        seen = json.loads(store.setting(WORKERS) or "{}")
    except ValueError:
        seen = {}
    return [name for name in types
            if not any(now - when <= within for when in (seen.get(name) or {}).values())]


def finished_type(stage: str, sequence: str) -> str:
    """The CloudEvent type of a run's end."""
    return f"{TYPE_PREFIX}{stage}.{sequence}.finished"


def resolve_run(store: Any, stage: str, sequence: str, event: dict) -> dict:
    """The run map of ``stage.sequence`` of the current shipyard of the event's project
    (``data.project``, or the store's only project) for the triggered ``event``.  ``store``
    needs only ``setting``: a step's transaction will do (``effects.UnitSettings``)."""
    from .shipyards import current_shipyard, projects

    data = event.get("data") or {}
    project = data.get("project")
    if project is not None and type(project) is not str:
        raise RunError(f"data.project must be a string, not {type(project).__name__}")
    if project is None:
        known = projects(store)
        if len(known) != 1:
            raise RunError("say which project (data.project): the store has "
                           + (f"{len(known)} projects" if known else "no shipyard applied"))
        project = known[0]
    found = current_shipyard(store, project)
    if found is None:
        raise RunError(f"no shipyard applied for project {project} (flowmetal shipyard "
                       "apply FILE)")
    version, shipyard = found
    return make_run(shipyard, version, project, stage, sequence, event)


def trigger(store: Any, stage: str, sequence: str, event: dict) -> tuple[str, dict]:
    """Start a run of ``stage.sequence`` for the triggered ``event`` (its id is the
    idempotency key: the same event starts one run); (task id, run map)."""
    run = resolve_run(store, stage, sequence, event)
    event_id = event.get("id")
    # (Keys of their own: an event's id is no start's Idempotency-Key of the API.)
    return start_run(store, run, key=f"{EVENT_KEY}{event_id}" if event_id else None), run


BUILT_IN = frozenset()  # task types the store's own workers serve (none are offered out)


def warnings(store: Any, within: float = 300.0) -> list[str]:
    """What will keep runs from going on: the task types of the current shipyards that no
    worker has asked for lately."""
    from .shipyards import current_shipyard, projects

    types: dict[str, list[str]] = {}
    for project in projects(store):
        found = current_shipyard(store, project)
        if found is None:
            continue
        for stage in found[1].stages:
            for seq in stage.sequences:
                for t in seq.tasks:
                    if t.name not in BUILT_IN:
                        types.setdefault(t.name, []).append(
                            f"{project}:{stage.name}.{seq.name}")
    return [f"no worker serves task type {name!r} (used by {', '.join(used)}): runs "
            "that reach it will fail after its start timeout"
            for name, used in types.items()
            if name in unserved(store, [name], store_clock(store), within)]


def store_clock(store: Any) -> float:
    """The store's clock now."""
    with store.view() as view:
        return view.clock()
