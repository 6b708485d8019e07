"""The control plane's sequence endpoints: Keptn's events in, task events out to workers
in any language (fetch and lock), and the runs with pause, resume and abort.

``POST /api/v1/event`` takes a CloudEvent: ``sh.keptn.event.<stage>.<sequence>.triggered``
starts a run; a worker's ``sh.keptn.event.<task>.started``, ``.status.changed`` and
``.finished`` answer the task event named by ``triggeredid``, presenting the lock its
claim gave (the ``flowmetallock`` attribute, or a ``Flowmetal-Lock`` header): 409 when
that lock expired or another worker holds the task now, 410 when the run no longer waits
on it (aborted, paused, timed out), 404 for an unknown task event.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from ..sequences import client, runs, task_events
from ..sequences.events import EventError, Phase, parse_event
from ..sequences.runs import RunError
from .app import API, STORE, WAIT_MAX, call, field, json_body
from .problems import Problem

CLAIM_MAX = 100          # task events one claim takes at most
NOTE_EVERY = 5.0         # seconds between records of a worker's subscription
STATUS = {task_events.Refusal.UNKNOWN: 404, task_events.Refusal.GONE: 410,
          task_events.Refusal.LOCK: 409}
MESSAGES = {
    task_events.Refusal.UNKNOWN: "no task event {id}",
    task_events.Refusal.GONE: "the run no longer waits on task event {id} (it was "
                              "aborted, paused or timed out, or has ended)",
    task_events.Refusal.LOCK: "the lock on task event {id} expired or is another "
                              "worker's now: claim it again",
}
NOTED = web.AppKey("workers-noted", dict)


def add_routes(app: web.Application) -> None:
    """Route the sequence endpoints."""
    app[NOTED] = {}
    r = app.router
    r.add_post(f"{API}/event", post_event)
    r.add_post(f"{API}/task-events/claim", claim_task_events)
    r.add_get(f"{API}/sequences", list_runs)
    r.add_post(f"{API}/sequences/{{id}}/{{action}}", control_run)


async def post_event(request: web.Request) -> web.Response:
    """A Keptn CloudEvent: a sequence triggered, or a worker's answer about a task."""
    body = await json_body(request)
    try:
        ev = parse_event(body)
        kind = ev.event_type
    except EventError as exc:
        raise Problem(400, f"not a Keptn event: {exc}") from None
    store = request.app[STORE]
    if kind.is_sequence:
        if kind.phase != Phase.TRIGGERED:
            raise Problem(400, f"{ev.type}: only a sequence's .triggered event starts "
                          "anything; a run sends its own .finished")
        project = (body.get("data") or {}).get("project") \
            if type(body.get("data")) is dict else None
        if project is not None and type(project) is not str:
            raise Problem(400, f"data.project must be a string, not "
                               f"{type(project).__name__}")
        earlier = await call(request, store.start_key, runs.EVENT_KEY + ev.id)
        try:
            task_id, run = await call(request, runs.trigger, store, kind.stage,
                                      kind.sequence, body)
        except RunError as exc:
            raise Problem(404, str(exc)) from None
        # (The same event again: its run, 200, and the same context, made from its id.)
        return web.json_response({"keptnContext": run["context"], "task": task_id,
                                  "project": run["project"]},
                                 status=201 if earlier is None else 200)
    triggered = ev.triggeredid
    if not triggered:
        raise Problem(400, f"{ev.type}: triggeredid must name the task's .triggered event")
    if kind.phase == Phase.TRIGGERED:
        raise Problem(400, f"{ev.type}: task events are triggered by runs, not posted")
    lock = str(ev.extra.get("flowmetallock") or request.headers.get("Flowmetal-Lock", ""))
    if not lock:
        raise Problem(400, "present the lock of the claim (the flowmetallock attribute or "
                      "a Flowmetal-Lock header)")
    seconds = _lock_seconds(ev.extra.get("flowmetallockseconds"))

    def answer(unit: Any) -> Any:
        if kind.phase == Phase.STARTED:
            return task_events.started(unit, triggered, lock, seconds)
        if kind.phase == Phase.STATUS_CHANGED:
            return task_events.heartbeat(unit, triggered, lock, seconds, ev.data or None)
        return task_events.finished(unit, triggered, lock, _finished_data(ev.data))
    outcome = await call(request, store.transact, answer)
    if isinstance(outcome, task_events.Refusal):
        raise Problem(STATUS[outcome], MESSAGES[outcome].format(id=triggered))
    body = {"triggeredid": triggered, "phase": str(kind.phase)}
    if type(outcome) is float:
        body["lockedUntil"] = task_events.iso_time(outcome)
    return web.json_response(body, status=200)


def _lock_seconds(value: Any) -> float:
    if value is None:
        return task_events.LOCK_DEFAULT
    if type(value) not in (int, float) or not 1 <= value <= task_events.LOCK_MAX:
        raise Problem(400, f"flowmetallockseconds must be a number from 1 to "
                      f"{task_events.LOCK_MAX:g}")
    return float(value)


def _finished_data(data: dict) -> dict:
    result = data.get("result", "pass")
    status = data.get("status", "succeeded")
    if result not in ("pass", "warning", "fail"):
        raise Problem(400, f"data.result must be pass, warning or fail, not {result!r:.40}")
    if status not in ("succeeded", "errored", "unknown"):  # (Keptn's three)
        raise Problem(400, f"data.status must be succeeded, errored or unknown, not "
                           f"{status!r:.40}")
    return {**data, "result": result, "status": status}


async def claim_task_events(request: web.Request) -> web.Response:
    """Fetch and lock: ``{"worker", "types": [...], "max", "lockSeconds", "waitSeconds"}``;
    up to ``max`` triggered task events of those types locked to the worker, waiting up
    to ``waitSeconds`` for one (a long poll)."""
    body = await json_body(request)
    worker = field(body, "worker", str, True)
    if not 0 < len(worker) <= 200 or ":" in worker:
        raise Problem(400, "a worker's name has 1 to 200 characters, without ':'")
    types = field(body, "types", list, True)
    if not types or not all(type(t) is str and 0 < len(t) <= 200 for t in types):
        raise Problem(400, "types must be a non-empty array of task names")
    limit = _number(body, "max", 1, 1, CLAIM_MAX)
    lock_for = _number(body, "lockSeconds", task_events.LOCK_DEFAULT, 1,
                       task_events.LOCK_MAX)
    wait = _number(body, "waitSeconds", 0, 0, WAIT_MAX)
    store = request.app[STORE]
    await _note(request, worker, types)
    end = time.monotonic() + wait
    while True:
        transport = request.transport
        if transport is None or transport.is_closing():
            # The worker hung up (it stopped): lock nothing to it, or its events would
            # wait out their locks before another worker may take them.
            return web.json_response({"events": []})
        claimed = await call(request, store.transact,
                             lambda unit: task_events.claim(unit, worker, types, int(limit),
                                                            lock_for))
        if claimed or time.monotonic() >= end:
            break
        await asyncio.sleep(min(0.02, max(0.0, end - time.monotonic())))
    return web.json_response({"events": [
        {"event": c.event, "lock": c.lock, "lockedUntil": task_events.iso_time(c.locked_until)}
        for c in claimed]})


def _number(body: dict, name: str, default: float, low: float, high: float) -> float:
    value = field(body, name, (int, float))
    if value is None:
        return default
    if not low <= value <= high:
        raise Problem(400, f"the field {name!r} must be from {low:g} to {high:g}")
    return value


async def _note(request: web.Request, worker: str, types: list[str]) -> None:
    """Record the worker's subscription (at most every few seconds per worker)."""
    noted = request.app[NOTED]
    key = (worker, tuple(sorted(types)))
    now = time.monotonic()
    if now - noted.get(key, -NOTE_EVERY) < NOTE_EVERY:
        return
    noted[key] = now
    store = request.app[STORE]
    await call(request, lambda: runs.note_worker(store, worker, types,
                                                  runs.store_clock(store)))


async def list_runs(request: web.Request) -> web.Response:
    """The latest runs, what each waits on and which blocks which, and the task types no
    worker serves."""
    return web.json_response(await call(request, client.listing, request.app[STORE]))


async def control_run(request: web.Request) -> web.Response:
    """Pause, resume or abort a run."""
    action = request.match_info["action"]
    if action not in ("pause", "resume", "abort"):
        raise Problem(404, f"no action {action!r} (pause, resume or abort)")
    done = await call(request, client.control, request.app[STORE], request.match_info["id"],
                      action)
    return web.json_response(done, status=202)
