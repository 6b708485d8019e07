"""Evaluating SLI values against an SLO, by the rules of Keptn's lighthouse service.

For each objective: with no value for its SLI it fails (score 0).  Otherwise its pass
criteria are tried (the criteria of one list ANDed, the lists ORed; every list is tried,
so every target is reported): if they hold it passes and scores its weight; if not, its
warning criteria are tried and, if they hold, it warns and scores half its weight;
otherwise it fails and scores 0.  An objective without pass criteria is informative
(status ``info``): it is shown but neither scores nor counts towards the maximum.

A relative criterion is measured against the aggregate (avg, p50, p90, p95) of the SLI's
values in the earlier evaluations the comparison chooses: those whose overall result
``include_result_with_score`` admits (all; pass; pass or warning), the newest
``number_of_comparison_results`` of them (one for ``single_result``), counting only
those that have a value for the SLI.  With no such value the criterion holds.

The score is the sum of the objectives' scores in percent of the sum of the weights of
the scored objectives (100 if there are none).  The verdict is pass at or above
``total_score.pass``, warning at or above ``total_score.warning``, fail below; a failed
key SLI (``key_sli``, a missing value included) makes it fail whatever the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from .slo import SLO, Comparison, Criterion, shown

RESULTS = ("pass", "warning", "fail")
NO_VALUE = "no value received from SLI provider"
ADMITTED = {"all": RESULTS, "pass": ("pass",), "pass_or_warn": ("pass", "warning")}
PERCENTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95}


class EvaluationError(ValueError):
    """SLI values or earlier results that are not of the expected shape."""


@dataclass(frozen=True)
class PreviousResult:
    """An earlier evaluation: its verdict, score and SLI values (None: had no value)."""

    result: str
    score: float | None
    values: dict[str, float | None]
    id: str = ""


@dataclass(frozen=True)
class Target:
    """One criterion as evaluated: the value it compared with (None when a relative
    criterion had no earlier value to compare with) and whether it was violated."""

    criteria: str
    target_value: float | None
    violated: bool


@dataclass(frozen=True)
class IndicatorResult:
    """One objective's outcome."""

    sli: str
    display_name: str
    value: float | None
    success: bool
    message: str
    score: float
    status: str  # pass, warning, fail, info
    key_sli: bool
    pass_targets: tuple[Target, ...] = ()
    warning_targets: tuple[Target, ...] = ()
    compared_value: float | None = None  # the aggregate of earlier values, if any


@dataclass(frozen=True)
class Evaluation:
    """An evaluation's verdict and score (percent), and every objective's outcome."""

    result: str
    score: float
    indicator_results: tuple[IndicatorResult, ...]
    maximum_score: float
    key_sli_failed: bool
    compared: tuple[str, ...] = field(default=())  # ids of the earlier evaluations used


def select_previous(comparison: Comparison, previous: list[PreviousResult]
                    ) -> list[PreviousResult]:
    """The earlier evaluations (oldest first) a comparison uses: those with a result it
    admits, the newest ``comparison.count`` of them."""
    admitted = ADMITTED[comparison.include_result_with_score]
    chosen = [p for p in previous if p.result in admitted]
    return chosen[-comparison.count:]


def aggregate(function: str, values: list[float]) -> float:
    """avg, or a percentile as Keptn computes it (rank p·(n+1), interpolated, clamped to
    the smallest and largest value)."""
    if function == "avg":
        return math.fsum(values) / len(values)
    ordered = sorted(values)
    n = len(ordered)
    pos = PERCENTILES[function] * (n + 1)
    if pos < 1:
        return ordered[0]
    if pos >= n:
        return ordered[-1]
    lower, upper = ordered[int(pos) - 1], ordered[int(pos)]
    return lower + (pos - math.floor(pos)) * (upper - lower)


def _holds(value: float, op: str, target: float) -> bool:
    if op == "<":
        return value < target
    if op == "<=":
        return value <= target
    if op == "=":
        return value == target
    if op == ">=":
        return value >= target
    return value > target


def _target(criterion: Criterion, value: float, base: float | None) -> Target:
    if not criterion.relative:
        goal = criterion.value
    elif base is None:
        return Target(criterion.text, None, False)
    elif criterion.percent:
        goal = base * (100.0 + criterion.value) / 100.0
    else:
        goal = base + criterion.value
    return Target(criterion.text, goal, not _holds(value, criterion.op, goal))


def _criteria(groups: tuple, value: float, base: float | None) -> tuple[bool, list[Target]]:
    """Whether any group of criteria holds entirely, and every criterion's target."""
    satisfied = False
    targets: list[Target] = []
    for group in groups:
        group_targets = [_target(c, value, base) for c in group]
        targets.extend(group_targets)
        if not any(t.violated for t in group_targets):
            satisfied = True
    return satisfied, targets


def evaluate(slo: SLO, values: dict[str, float | None],
             previous: list[PreviousResult]) -> Evaluation:
    """Evaluate SLI values (None or absent: no value) against ``slo``, comparing with the
    earlier evaluations ``previous`` (oldest first) as its comparison says."""
    compared = select_previous(slo.comparison, previous)
    results = []
    maximum = 0.0
    key_failed = False
    for objective in slo.objectives:
        if not objective.informative:
            maximum += objective.weight
        value = values.get(objective.sli)
        if value is None or math.isnan(value):
            results.append(IndicatorResult(
                objective.sli, objective.display_name, None, False, NO_VALUE, 0.0,
                "info" if objective.informative else "fail", objective.key_sli))
            key_failed = key_failed or (objective.key_sli and not objective.informative)
            continue
        earlier = [v for p in compared
                   if (v := p.values.get(objective.sli)) is not None and not math.isnan(v)]
        base = aggregate(slo.comparison.aggregate_function, earlier) if earlier else None
        if objective.informative:
            results.append(IndicatorResult(objective.sli, objective.display_name, value, True,
                                           "", 0.0, "info", objective.key_sli,
                                           compared_value=base))
            continue
        passed, pass_targets = _criteria(objective.pass_criteria, value, base)
        warning_targets: list[Target] = []
        if passed:
            status, score = "pass", float(objective.weight)
        else:
            warned, warning_targets = _criteria(objective.warning_criteria, value, base)
            if warned:
                status, score = "warning", 0.5 * objective.weight
            else:
                status, score = "fail", 0.0
                key_failed = key_failed or objective.key_sli
        results.append(IndicatorResult(objective.sli, objective.display_name, value, True, "",
                                       score, status, objective.key_sli, tuple(pass_targets),
                                       tuple(warning_targets), base))
    if maximum == 0:
        verdict, score = "pass", 100.0
    else:
        score = 100.0 * math.fsum(r.score for r in results) / maximum
        total = slo.total_score
        if key_failed:
            verdict = "fail"
        elif score >= total.pass_pct:
            verdict = "pass"
        elif total.warning_pct is not None and score >= total.warning_pct:
            verdict = "warning"
        else:
            verdict = "fail"
    return Evaluation(verdict, score, tuple(results), maximum, key_failed,
                      tuple(p.id for p in compared))


# ---------------------------------------------------------------------------------------
# JSON


def evaluation_to_json(ev: Evaluation) -> dict:
    """The evaluation in the shape of Keptn's ``evaluation.finished`` data."""
    def targets(ts: tuple[Target, ...]) -> list[dict]:
        return [{"criteria": t.criteria, "targetValue": t.target_value, "violated": t.violated}
                for t in ts]

    return {
        "result": ev.result,
        "score": ev.score,
        "indicatorResults": [{
            "value": {"metric": r.sli, "value": r.value, "success": r.success,
                      "message": r.message},
            "displayName": r.display_name,
            "score": r.score,
            "status": r.status,
            "keySli": r.key_sli,
            "passTargets": targets(r.pass_targets),
            "warningTargets": targets(r.warning_targets),
            "comparedValue": r.compared_value,
        } for r in ev.indicator_results],
        "maximumScore": ev.maximum_score,
        "keySliFailed": ev.key_sli_failed,
        "comparedEvaluations": list(ev.compared),
    }


def values_from_json(obj: Any) -> dict[str, float | None]:
    """SLI values from JSON data: an object of SLI name to a number or null."""
    if not isinstance(obj, dict):
        raise EvaluationError("SLI values are an object of SLI name to number, not "
                              f"{shown(obj)}")
    out: dict[str, float | None] = {}
    for name, value in obj.items():
        if value is not None and (type(value) not in (int, float) or
                                  not math.isfinite(value)):
            raise EvaluationError(f"the value of SLI {name!r} is {shown(value)}, not a number")
        out[name] = None if value is None else float(value)
    return out


def previous_from_json(obj: Any, id: str = "") -> PreviousResult:
    """An earlier evaluation from JSON data: ``{"result", "values": {SLI: number}}`` or an
    evaluation as ``evaluation_to_json`` gives it (its ``indicatorResults``)."""
    if not isinstance(obj, dict):
        raise EvaluationError(f"an earlier evaluation is an object, not {shown(obj)}")
    result = obj.get("result")
    if result not in RESULTS:
        raise EvaluationError(f"an earlier evaluation's result is pass, warning or fail, not "
                              f"{shown(result)}")
    score = obj.get("score")
    if score is not None and type(score) not in (int, float):
        raise EvaluationError(f"an earlier evaluation's score is a number, not {shown(score)}")
    if "values" in obj:
        values = values_from_json(obj["values"])
    elif isinstance(obj.get("indicatorResults"), list):
        values = {}
        for item in obj["indicatorResults"]:
            value = item.get("value") if isinstance(item, dict) else None
            if not isinstance(value, dict) or not isinstance(value.get("metric"), str):
                raise EvaluationError("an earlier evaluation's indicator result has no "
                                      "value.metric")
            number = value.get("value")
            ok = value.get("success", True) is True and type(number) in (int, float)
            values[value["metric"]] = float(number) if ok else None
    else:
        raise EvaluationError("an earlier evaluation needs \"values\" (an object of SLI name "
                              "to number) or \"indicatorResults\"")
    return PreviousResult(result, None if score is None else float(score), values, id)

