"""Keptn's SLO evaluation as a pure function of Flowmetal data (``evaluate-slo``); see
``flowmetal.sequences.evaluation`` for the rules."""

from __future__ import annotations

from typing import Any

from .. import json_values
from ..printer import shown
from ..procedures import define
from ..values import FlowmetalError, Map


@define("evaluate-slo", min_args=2, max_args=3)
def evaluate_slo(slo: Any, values: Any, previous: Any = None) -> Map:
    """(evaluate-slo slo values previous): judge the SLI values (a map of SLI name to
    number or nil) by the SLO (a map of the SLO file's keys, or its YAML text), comparing
    with the earlier evaluations ``previous`` (oldest first: maps of :result and :values,
    or evaluations as this returns them); the evaluation as a map of :result, :score,
    :indicatorResults ..."""
    from ..sequences import evaluation
    from ..sequences.slo import SLOError, parse_slo, slo_from_json

    try:
        if type(slo) is str:
            objectives = parse_slo(slo, "<slo>")
        elif type(slo) is Map:
            objectives = slo_from_json(json_values.to_plain(slo))
        else:
            raise FlowmetalError(f"evaluate-slo: an SLO is a map or YAML text, not "
                                 f"{shown(slo)}", "type-error")
        earlier = [] if previous is None else json_values.to_plain(previous)
        if not isinstance(earlier, list):
            raise FlowmetalError(f"evaluate-slo: earlier evaluations are a vector, not "
                                 f"{shown(previous)}", "type-error")
        result = evaluation.evaluate(
            objectives, evaluation.values_from_json(json_values.to_plain(values)),
            [evaluation.previous_from_json(item, str(i)) for i, item in enumerate(earlier)])
    except (SLOError, evaluation.EvaluationError) as exc:
        raise FlowmetalError(f"evaluate-slo: {exc}", "evaluation-error") from None
    return json_values.from_plain(evaluation.evaluation_to_json(result))
