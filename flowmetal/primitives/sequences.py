"""The building blocks of sequence runs (``stdlib/sequences.fm``): task events handed to
workers through the outbox, the queue of runs, the kept evaluations, and the runs that
follow a finished one.  See ``flowmetal.sequences``."""

from __future__ import annotations

from typing import Any

from .. import json_values
from ..printer import shown
from ..procedures import CONTROL, define
from ..values import FlowmetalError, Map, kw
from .effects import _request, _seconds


def _plain(op: str, value: Any) -> Any:
    if type(value) is not Map:
        raise FlowmetalError(f"{op}: expected a map, got {shown(value)}", "type-error")
    return json_values.to_plain(value)


@define("%task-event", CONTROL, 3)
def task_event(m: Any, args: tuple, k: Any) -> tuple:
    """(%task-event {:type name :event triggered-event} start-timeout finish-timeout):
    hand the task event to a worker serving ``name`` and wait for its ``.finished`` data;
    see ``task-event`` in the standard library."""
    spec, start, finish = args
    plain = _plain("task-event", spec)
    if type(plain.get("type")) is not str or not plain["type"]:
        raise FlowmetalError("task-event: the event needs a :type (the task's name)",
                             "type-error")
    start = _seconds("task-event", start, "start-timeout")
    finish = _seconds("task-event", finish, "finish-timeout")
    times = {kw("start-timeout"): start, kw("finish-timeout"): finish}
    return m.suspend(_request("task-event", spec=Map({**spec, **times}), timeout=start), k)


@define("%enqueue-run", CONTROL, 1)
def enqueue_run(m: Any, args: tuple, k: Any) -> tuple:
    """(%enqueue-run run): put this run in the queue of its stage and service; the runs
    ahead of it that had not ended then (task ids, oldest first)."""
    _plain("enqueue-run", args[0])
    return m.suspend(_request("enqueue-run", spec=args[0]), k)


@define("%evaluations", CONTROL, 1)
def evaluations(m: Any, args: tuple, k: Any) -> tuple:
    """(%evaluations {:op "previous" :key k :comparison c}) the earlier evaluations kept for
    ``k``; (%evaluations {:op "keep" :key k :evaluation e}) keep one, its id."""
    _plain("evaluations", args[0])
    return m.suspend(_request("evaluations", spec=args[0]), k)


@define("%sequence-run", CONTROL, 1)
def sequence_run(m: Any, args: tuple, k: Any) -> tuple:
    """(%sequence-run {:stage :sequence :data :context}): the run map of a sequence of
    the current shipyard of the data's project; see ``trigger-sequence``."""
    _plain("sequence-run", args[0])
    return m.suspend(_request("sequence-run", spec=args[0]), k)


@define("%sequence-followers", min_args=2)
def sequence_followers(run: Any, finished: Any) -> Any:
    """The runs (as run maps) of the sequences triggered by ``run``'s finished event,
    whose data is ``finished``."""
    from ..sequences.runs import followers

    return json_values.from_plain(followers(_plain("sequence-followers", run),
                                            _plain("sequence-followers", finished)))


@define("%sli-query", min_args=4)
def sli_query(query: Any, start: Any, end: Any, variables: Any) -> str:
    """An SLI's Prometheus query with its placeholders ($DURATION_SECONDS, $PROJECT,
    $STAGE, $SERVICE ...) replaced, for the time range start..end (seconds)."""
    from ..sequences.prometheus import substitute

    if type(query) is not str:
        raise FlowmetalError(f"sli-query: a query is a string, not {shown(query)}",
                             "type-error")
    names = {key: str(value) for key, value in _plain("sli-query", variables).items()}
    return substitute(query, float(start), float(end), names)


@define("%sli-value", min_args=2)
def sli_value(sli: Any, body: Any) -> Any:
    """The value of an SLI in a Prometheus API answer (its JSON as data), or nil."""
    from ..sequences.prometheus import PrometheusError, answer_value

    try:
        return answer_value(shown(sli) if type(sli) is not str else sli,
                            json_values.to_plain(body))
    except PrometheusError as exc:
        raise FlowmetalError(str(exc), "evaluation-error") from None


@define("%duration-seconds", min_args=1)
def duration_seconds(value: Any) -> Any:
    """Seconds of a Go duration ("5m", "1h30m") or of a number of seconds."""
    from ..sequences.shipyard import ShipyardError, parse_go_duration

    if type(value) in (int, float):
        return value
    try:
        return parse_go_duration(value)
    except (ShipyardError, ValueError, TypeError) as exc:
        raise FlowmetalError(f"not a duration: {shown(value)} ({exc})", "type-error") from None
