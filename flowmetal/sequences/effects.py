"""The requests of sequence runs answered in the store, in the transaction of the step
that makes them (``store.engine`` dispatches them here)."""

from __future__ import annotations

from collections.abc import Callable

from .runs import handle_enqueue
from .task_events import handle_task_event

HANDLERS: dict[str, Callable] = {
    "task-event": handle_task_event,
    "enqueue-run": handle_enqueue,
}
