"""The requests of sequence runs answered in the store, in the transaction of the step
that makes them (``store.engine`` dispatches them here)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..json_values import from_plain
from ..runtime.records import Answer, TaskRecord, encode_data
from ..store.engine import Unit, deliver, fail_request
from .runs import handle_enqueue
from .task_events import handle_task_event


class UnitSettings:
    """The settings of a transaction's tables, where a store's are expected (the kept
    evaluations read and change them inside the step's transaction)."""

    def __init__(self, unit: Unit):
        self.t = unit.t

    def setting(self, key: str) -> str | None:
        """A setting, as ``TaskStore.setting``."""
        return self.t.setting_get(key)

    def update_setting(self, key: str, change: Callable[[str | None], str | None]
                       ) -> str | None:
        """A read-modify-write of a setting, as ``TaskStore.update_setting``."""
        value = change(self.t.setting_get(key, lock=True))
        self.t.setting_put(key, value)
        return value


def handle_evaluations(unit: Unit, rec: TaskRecord, request_id: int, req: Any, step: Any,
                       now: float) -> None:
    """Evaluate SLI values against an SLO, comparing with the evaluations kept for the
    project, stage and service, and keep the result: the evaluation (with ``keptId``)."""
    from .evaluation import EvaluationError, evaluate, evaluation_to_json, values_from_json
    from .evaluations import EvaluationStoreError, Key, keep, previous_results
    from .slo import SLOError, parse_slo, slo_from_json

    spec = req.spec
    try:
        given = spec.get("slo")
        slo = parse_slo(given, "<slo>") if type(given) is str else slo_from_json(given)
        key = Key(*(str(part) for part in spec["key"]))
        settings = UnitSettings(unit)
        values = values_from_json(spec.get("values") or {})
        result = evaluation_to_json(evaluate(slo, values,
                                             previous_results(settings, key, slo.comparison)))
        result["keptId"] = keep(settings, key, result)
    except (SLOError, EvaluationError, EvaluationStoreError) as exc:
        fail_request(unit, rec, request_id, "evaluation-error", f"evaluation: {exc}", now)
        return
    deliver(unit, rec, Answer(request_id, True, encode_data(from_plain(result))), now)


def handle_sequence_run(unit: Unit, rec: TaskRecord, request_id: int, req: Any, step: Any,
                        now: float) -> None:
    """The run map of a sequence of the current shipyard, for a run started from
    Flowmetal code (``trigger-sequence``)."""
    from .runs import RunError, resolve_run
    from .shipyards import StoredShipyardError

    spec = req.spec
    event = {"id": f"{rec.id}.{request_id}", "data": spec.get("data") or {},
             "shkeptncontext": spec.get("context")}
    try:
        run = resolve_run(UnitSettings(unit), spec["stage"], spec["sequence"], event)
    except (RunError, StoredShipyardError) as exc:
        fail_request(unit, rec, request_id, "no-such-sequence", str(exc), now)
        return
    deliver(unit, rec, Answer(request_id, True, encode_data(from_plain(run))), now)


HANDLERS: dict[str, Callable] = {
    "task-event": handle_task_event,
    "enqueue-run": handle_enqueue,
    "evaluations": handle_evaluations,
    "sequence-run": handle_sequence_run,
}
