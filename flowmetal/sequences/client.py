"""The sequence operations the CLI offers, on a local store or through a server
(``--server``): one function each, answering the JSON the control plane answers."""

from __future__ import annotations

from typing import Any

from ..store.remote import RemoteStore
from . import runs
from .events import new_event, sequence_type


def trigger(store: Any, stage: str, sequence: str, data: dict,
            context: str | None = None) -> dict:
    """Trigger ``stage.sequence`` with ``data`` (a new triggered event): ``{"keptnContext",
    "task", "project"}``."""
    from .events import event_to_json

    event = event_to_json(new_event(sequence_type(stage, sequence, "triggered"), data,
                                    shkeptncontext=context))
    if isinstance(store, RemoteStore):
        return store.api("POST", "/event", event)
    task_id, run = runs.trigger(store, stage, sequence, event)
    return {"keptnContext": run["context"], "task": task_id, "project": run["project"]}


def listing(store: Any, limit: int = 100) -> dict:
    """The latest runs and the warnings: ``{"runs": [...], "warnings": [...]}``."""
    if isinstance(store, RemoteStore):
        return store.api("GET", "/sequences")
    return {"runs": [v.to_json() for v in runs.runs(store, limit)],
            "warnings": runs.warnings(store)}


def control(store: Any, task_id: str, action: str) -> dict:
    """Pause, resume or abort the run: ``{"task", "action", "status"}``."""
    if isinstance(store, RemoteStore):
        return store.api("POST", f"/sequences/{task_id}/{action}")
    if action == "pause":
        status = runs.pause(store, task_id)
    elif action == "resume":
        status = runs.resume(store, task_id)
    else:
        from ..runtime import api

        store.transact(lambda unit: runs.run_record(unit, task_id))  # (a run, not ended)
        status = str(api.cancel(store, task_id).status)
        store.set_setting(runs.PAUSED + task_id, None)
    return {"task": task_id, "action": action, "status": status}
