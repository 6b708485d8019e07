"""Evaluating SLI values against Keptn SLO files: a table of cases worked out by hand from
the rules (flowmetal/sequences/evaluation.py's docstring), the SLO and SLI files' errors,
results kept in both stores, and ``flowmetal evaluate`` as a child process."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flowmetal.sequences import evaluations
from flowmetal.sequences.evaluation import (
    EvaluationError,
    PreviousResult,
    evaluate,
    evaluation_to_json,
    previous_from_json,
    values_from_json,
)
from flowmetal.sequences.slo import (
    Comparison,
    Criterion,
    SLOError,
    parse_criterion,
    parse_sli,
    parse_slo,
    slo_from_json,
    slo_to_json,
)

from .cli_helpers import TIMEOUT, env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def slo(*objectives: dict, comparison: dict | None = None, total: dict | None = None):
    """An SLO from objectives written short: ``pass``/``warning`` as lists of criteria
    lists."""
    objs = []
    for o in objectives:
        o = dict(o)
        for kind in ("pass", "warning"):
            if kind in o:
                o[kind] = [{"criteria": group} for group in o[kind]]
        objs.append(o)
    data = {"spec_version": "1.0", "objectives": objs,
            "total_score": total or {"pass": "90%", "warning": "75%"}}
    if comparison is not None:
        data["comparison"] = comparison
    return slo_from_json(data)


def prev(result: str, **values: float) -> PreviousResult:
    return PreviousResult(result, None, values)


RT = {"sli": "rt", "pass": [["<600"]]}
RT_W = {"sli": "rt", "pass": [["<600"]], "warning": [["<=800"]]}
REL = {"sli": "rt", "pass": [["<=+10%"]]}
SINGLE = {"compare_with": "single_result"}


def several(n: int, include: str = "all", function: str = "avg") -> dict:
    return {"compare_with": "several_results", "number_of_comparison_results": n,
            "include_result_with_score": include, "aggregate_function": function}


# (name, SLO, values, previous, verdict, score, {sli: status}); the comment under each
# works out the expected score: sum of objective scores / sum of scored weights.
CASES = [
    ("absolute pass", slo(RT), {"rt": 500}, [], "pass", 100.0, {"rt": "pass"}),
    # 500 < 600 holds: 1/1 = 100% >= 90%
    ("absolute fail, no warning criteria", slo(RT), {"rt": 700}, [], "fail", 0.0,
     {"rt": "fail"}),
    # 700 < 600 fails, nothing to warn: 0/1 = 0%
    ("warning criteria", slo(RT_W), {"rt": 700}, [], "fail", 50.0, {"rt": "warning"}),
    # 700 fails <600, holds <=800: 0.5/1 = 50% < 75%
    ("<= at the boundary", slo({"sli": "rt", "pass": [["<=600"]]}), {"rt": 600}, [], "pass",
     100.0, {"rt": "pass"}),
    # 600 <= 600: 1/1
    ("< at the boundary is strict", slo(RT_W), {"rt": 600}, [], "fail", 50.0,
     {"rt": "warning"}),
    # 600 < 600 fails, 600 <= 800 holds: 0.5/1 = 50%
    ("= holds", slo({"sli": "errors", "pass": [["=0"]]}), {"errors": 0}, [], "pass", 100.0,
     {"errors": "pass"}),
    # 0 = 0: 1/1
    ("= fails", slo({"sli": "errors", "pass": [["=0"]]}), {"errors": 1}, [], "fail", 0.0,
     {"errors": "fail"}),
    # 1 = 0 fails: 0/1
    (">= at the boundary", slo({"sli": "tp", "pass": [[">=100"]]}), {"tp": 100}, [], "pass",
     100.0, {"tp": "pass"}),
    # 100 >= 100: 1/1
    ("> strict, warning verdict", slo({"sli": "tp", "pass": [[">100"]], "warning": [[">=50"]]},
                                      total={"pass": "90%", "warning": "50%"}),
     {"tp": 100}, [], "warning", 50.0, {"tp": "warning"}),
    # 100 > 100 fails, 100 >= 50 holds: 0.5/1 = 50% >= the warning 50%
    ("criteria of one list are ANDed", slo({"sli": "rt", "pass": [["<600", ">100"]]}),
     {"rt": 50}, [], "fail", 0.0, {"rt": "fail"}),
    # 50 < 600 holds but 50 > 100 fails: the list fails, 0/1
    ("lists are ORed", slo({"sli": "rt", "pass": [["<100"], [">500"]]}), {"rt": 600}, [],
     "pass", 100.0, {"rt": "pass"}),
    # 600 < 100 fails, 600 > 500 holds: one list is enough, 1/1
    ("no list holds", slo({"sli": "rt", "pass": [["<100"], [">500"]]}), {"rt": 300}, [],
     "fail", 0.0, {"rt": "fail"}),
    # 300 is neither < 100 nor > 500: 0/1
    ("weights", slo({**RT, "weight": 2}, {"sli": "err", "pass": [["<=1"]]}),
     {"rt": 500, "err": 2}, [], "fail", 200 / 3, {"rt": "pass", "err": "fail"}),
    # rt passes (2), err fails (0): 2/3 = 66.67% < 75%
    ("weights with a warning", slo({**RT_W, "weight": 3}, {"sli": "err", "pass": [["<=1"]]},
                                   total={"pass": "90%", "warning": "60%"}),
     {"rt": 700, "err": 0.5}, [], "warning", 62.5, {"rt": "warning", "err": "pass"}),
    # rt warns (3 / 2 = 1.5), err passes (1): 2.5/4 = 62.5%, >= 60% and < 90%
    ("pass percentage reached exactly",
     slo(*({"sli": s, "pass": [["<1"]]} for s in "abcd"), total={"pass": "75%", "warning": "50%"}),
     {"a": 0, "b": 0, "c": 0, "d": 5}, [], "pass", 75.0, {"d": "fail"}),
    # three of four pass: 3/4 = 75% >= 75%
    ("just under the pass percentage",
     slo(*({"sli": s, "pass": [["<1"]]} for s in "abc"), total={"pass": "75%", "warning": "50%"}),
     {"a": 0, "b": 0, "c": 5}, [], "warning", 200 / 3, {"c": "fail"}),
    # two of three pass: 2/3 = 66.67%, >= 50% and < 75%
    ("warning percentage reached exactly", slo(RT_W, {"sli": "err", "pass": [["<=1"]]}),
     {"rt": 700, "err": 0}, [], "warning", 75.0, {"rt": "warning", "err": "pass"}),
    # rt warns (0.5), err passes (1): 1.5/2 = 75% >= 75%
    ("no warning percentage", slo(RT_W, total={"pass": "90%"}), {"rt": 700}, [], "fail", 50.0,
     {"rt": "warning"}),
    # 0.5/1 = 50% < 90%, and without total_score.warning there is no warning verdict
    ("a failed key SLI fails the evaluation",
     slo({**RT, "key_sli": True}, {"sli": "err", "pass": [["<=1"]], "weight": 9}),
     {"rt": 700, "err": 0}, [], "fail", 90.0, {"rt": "fail", "err": "pass"}),
    # rt fails (0), err passes (9): 9/10 = 90% would pass, but rt is a key SLI
    ("a key SLI that warns does not fail it",
     slo({**RT_W, "key_sli": True}, {"sli": "err", "pass": [["<=1"]], "weight": 9}),
     {"rt": 700, "err": 0}, [], "pass", 95.0, {"rt": "warning", "err": "pass"}),
    # rt warns (0.5), err passes (9): 9.5/10 = 95%
    ("a missing value fails its objective", slo(RT, {"sli": "err", "pass": [["<=1"]]}),
     {"err": 0}, [], "fail", 50.0, {"rt": "fail", "err": "pass"}),
    # rt has no value (0), err passes (1): 1/2 = 50% < 75%
    ("a missing key SLI fails the evaluation",
     slo({**RT, "key_sli": True}, {"sli": "err", "pass": [["<=1"]], "weight": 9}),
     {"rt": None, "err": 0}, [], "fail", 90.0, {"rt": "fail", "err": "pass"}),
    # rt has no value (0), err passes (9): 9/10 = 90%, but the key SLI failed
    ("an informative objective is not scored", slo({"sli": "tp"}, RT), {"tp": 5, "rt": 500},
     [], "pass", 100.0, {"tp": "info", "rt": "pass"}),
    # tp has no pass criteria, so neither scores nor counts: 1/1
    ("only informative objectives", slo({"sli": "tp"}, {"sli": "mem"}), {"tp": 5, "mem": 9},
     [], "pass", 100.0, {"tp": "info", "mem": "info"}),
    # maximum score 0: pass with 100, as Keptn does
    ("an informative objective without a value", slo({"sli": "tp"}, RT), {"rt": 500}, [],
     "pass", 100.0, {"tp": "info", "rt": "pass"}),
    # tp has no value but counts for nothing: 1/1
    ("relative criteria pass without earlier results", slo(REL), {"rt": 1000}, [], "pass",
     100.0, {"rt": "pass"}),
    # nothing to compare with: <=+10% holds, 1/1
    ("relative percentage", slo(REL, comparison=SINGLE), {"rt": 540}, [prev("pass", rt=500)],
     "pass", 100.0, {"rt": "pass"}),
    # target 500 * 110 / 100 = 550; 540 <= 550: 1/1
    ("relative percentage exceeded",
     slo({"sli": "rt", "pass": [["<=+10%"]], "warning": [["<=+20%"]]}, comparison=SINGLE),
     {"rt": 560}, [prev("pass", rt=500)], "fail", 50.0, {"rt": "warning"}),
    # targets 550 and 600: 560 fails <=550, holds <=600: 0.5/1 = 50%
    ("relative difference", slo({"sli": "rt", "pass": [["<=+50"]]}), {"rt": 551},
     [prev("pass", rt=500)], "fail", 0.0, {"rt": "fail"}),
    # target 500 + 50 = 550; 551 <= 550 fails: 0/1
    ("relative decrease", slo({"sli": "tp", "pass": [[">=-5"]]}), {"tp": 95},
     [prev("pass", tp=100)], "pass", 100.0, {"tp": "pass"}),
    # target 100 - 5 = 95; 95 >= 95: 1/1
    ("relative decrease in percent", slo({"sli": "tp", "pass": [[">=-10%"]]}), {"tp": 179},
     [prev("pass", tp=200)], "fail", 0.0, {"tp": "fail"}),
    # target 200 * 90 / 100 = 180; 179 >= 180 fails: 0/1
    ("relative and absolute ANDed",
     slo({"sli": "rt", "pass": [["<=+10%", "<600"]], "warning": [["<=800"]]}),
     {"rt": 580}, [prev("pass", rt=500)], "fail", 50.0, {"rt": "warning"}),
    # 580 <= 550 fails (580 < 600 holds): the pass list fails; 580 <= 800: 0.5/1 = 50%
    ("single_result compares with the newest only", slo(REL, comparison=SINGLE), {"rt": 540},
     [prev("pass", rt=100), prev("pass", rt=500)], "pass", 100.0, {"rt": "pass"}),
    # the newest is 500: target 550 (the older 100 would give 110); 540 <= 550
    ("several_results: the average of the newest n", slo(REL, comparison=several(3)),
     {"rt": 330}, [prev("pass", rt=1000), prev("pass", rt=200), prev("pass", rt=300),
                   prev("pass", rt=400)], "pass", 100.0, {"rt": "pass"}),
    # newest 3: 200, 300, 400, avg 300, target 330; 330 <= 330 (the 1000 is not counted)
    ("include_result_with_score: pass", slo(REL, comparison={**SINGLE,
                                                             "include_result_with_score": "pass"}),
     {"rt": 120}, [prev("pass", rt=100), prev("fail", rt=1000)], "fail", 0.0, {"rt": "fail"}),
    # the newest that passed is 100: target 110; 120 <= 110 fails: 0/1
    ("include_result_with_score: all", slo(REL, comparison={**SINGLE,
                                                            "include_result_with_score": "all"}),
     {"rt": 120}, [prev("pass", rt=100), prev("fail", rt=1000)], "pass", 100.0,
     {"rt": "pass"}),
    # the newest of all is 1000: target 1100; 120 <= 1100: 1/1
    ("include_result_with_score: pass_or_warn", slo(REL, comparison=several(3, "pass_or_warn")),
     {"rt": 160}, [prev("pass", rt=100), prev("warning", rt=200), prev("fail", rt=1000)],
     "pass", 100.0, {"rt": "pass"}),
    # the fail is left out: avg(100, 200) = 150, target 165; 160 <= 165
    ("the count is of admitted evaluations", slo(REL, comparison=several(2, "pass")),
     {"rt": 170}, [prev("pass", rt=100), prev("pass", rt=200), prev("fail", rt=900),
                   prev("fail", rt=900)], "fail", 0.0, {"rt": "fail"}),
    # the newest 2 that passed: avg(100, 200) = 150, target 165; 170 <= 165 fails
    ("an earlier evaluation without the SLI still counts", slo(REL, comparison=SINGLE),
     {"rt": 1000}, [prev("pass", rt=100), prev("pass", err=1)], "pass", 100.0,
     {"rt": "pass"}),
    # single_result takes the newest evaluation, which has no rt: nothing to compare, pass
    ("p50 interpolates", slo({"sli": "rt", "pass": [["<=+0%"]]},
                             comparison=several(4, function="p50")),
     {"rt": 25}, [prev("pass", rt=v) for v in (40, 10, 30, 20)], "pass", 100.0,
     {"rt": "pass"}),
    # sorted 10 20 30 40, rank 0.5 * 5 = 2.5: 20 + 0.5 * (30 - 20) = 25; 25 <= 25
    ("p90 clamps to the largest", slo(REL, comparison=several(5, function="p90")),
     {"rt": 56}, [prev("pass", rt=v) for v in (10, 20, 30, 40, 50)], "fail", 0.0,
     {"rt": "fail"}),
    # rank 0.9 * 6 = 5.4 >= 5: the largest, 50; target 55; 56 <= 55 fails
    ("p95 of three", slo({"sli": "rt", "pass": [["<=+1"]]},
                         comparison=several(3, function="p95")),
     {"rt": 4}, [prev("pass", rt=v) for v in (3, 1, 2)], "pass", 100.0, {"rt": "pass"}),
    # rank 0.95 * 4 = 3.8 >= 3: the largest, 3; target 3 + 1 = 4; 4 <= 4
    ("the example SLO", parse_slo((EXAMPLES / "slo.yaml").read_text(), "slo.yaml"),
     {"response_time_p95": 540, "error_rate": 2.5, "throughput": 41.3},
     [prev("pass", response_time_p95=480, error_rate=0.5),
      prev("fail", response_time_p95=900), prev("warning", response_time_p95=500)],
     "fail", 50.0, {"response_time_p95": "warning", "error_rate": "warning",
                    "throughput": "info"}),
    # pass_or_warn, newest 3: 480 and 500 (the fail is left out), avg 490, target 539:
    # 540 fails <=+10%, holds <=800: 2 / 2 = 1; error_rate 2.5 > 1, <= 5: 1 / 2 = 0.5;
    # throughput informative: (1 + 0.5) / 3 = 50% < 75%
]


@pytest.mark.parametrize(("name", "the_slo", "values", "previous", "verdict", "score",
                          "statuses"), CASES, ids=[c[0] for c in CASES])
def test_evaluation_table(name, the_slo, values, previous, verdict, score, statuses):
    ev = evaluate(the_slo, values, previous)
    assert (ev.result, ev.score) == (verdict, pytest.approx(score))
    assert {r.sli: r.status for r in ev.indicator_results if r.sli in statuses} == statuses


def test_the_table_has_at_least_30_cases():
    assert len(CASES) >= 30


def test_targets_report_every_criterion_tried():
    the_slo = slo({"sli": "rt", "pass": [["<=+10%", "<600"], ["<100"]],
                   "warning": [["<=800"]]}, comparison=SINGLE)
    ev = evaluation_to_json(evaluate(the_slo, {"rt": 580}, [prev("pass", rt=500)]))
    (rt,) = ev["indicatorResults"]
    assert rt["value"] == {"metric": "rt", "value": 580.0, "success": True, "message": ""}
    assert rt["passTargets"] == [
        {"criteria": "<=+10%", "targetValue": 550.0, "violated": True},
        {"criteria": "<600", "targetValue": 600.0, "violated": False},
        {"criteria": "<100", "targetValue": 100.0, "violated": True}]
    assert rt["warningTargets"] == [{"criteria": "<=800", "targetValue": 800.0,
                                     "violated": False}]
    assert (rt["status"], rt["score"], rt["comparedValue"]) == ("warning", 0.5, 500.0)
    assert ev["comparedEvaluations"] == [""]
    # a passed objective does not try its warning criteria, as in Keptn
    passed = evaluation_to_json(evaluate(the_slo, {"rt": 50}, []))["indicatorResults"][0]
    assert passed["warningTargets"] == []
    # without earlier results a relative target has no value and is not violated
    assert passed["passTargets"][0] == {"criteria": "<=+10%", "targetValue": None,
                                        "violated": False}


def test_a_missing_value_is_reported():
    ev = evaluation_to_json(evaluate(slo(RT), {}, []))
    assert ev["indicatorResults"][0]["value"] == {
        "metric": "rt", "value": None, "success": False,
        "message": "no value received from SLI provider"}


def test_the_evaluations_compared_are_named():
    ev = evaluate(slo(REL, comparison=several(2, "pass")), {"rt": 1},
                  [PreviousResult(r, None, {"rt": 1}, str(i))
                   for i, r in enumerate(["pass", "pass", "fail", "pass"])])
    assert ev.compared == ("1", "3")


# ---------------------------------------------------------------------------------------
# Criteria and files


@pytest.mark.parametrize(("text", "criterion"), [
    ("<=800", Criterion("<=", 800.0)),
    ("<+10%", Criterion("<", 10.0, relative=True, percent=True)),
    (">=-5", Criterion(">=", -5.0, relative=True)),
    ("=0", Criterion("=", 0.0)),
    (" > 0.5 ", Criterion(">", 0.5)),
    ("<=-2.5%", Criterion("<=", -2.5, relative=True, percent=True)),
])
def test_criteria_strings(text, criterion):
    assert parse_criterion(text) == criterion
    assert parse_criterion(criterion.text) == criterion


@pytest.mark.parametrize(("text", "message"), [
    ("800", "is not a criterion"), ("<", "is not a criterion"), ("=>5", "is not a criterion"),
    ("<<5", "is not a criterion"), ("<5ms", "is not a criterion"), ("<=+", "is not a criterion"),
    ("<10%", "needs its sign"), ("", "is not a criterion"), (5, "is a string"),
])
def test_bad_criteria_strings(text, message):
    with pytest.raises(ValueError, match=message):
        parse_criterion(text)


GOOD = """\
spec_version: "1.0"
objectives:
  - sli: rt
    pass:
      - criteria: ["<600"]
total_score:
  pass: "90%"
"""


@pytest.mark.parametrize(("text", "error"), [
    ("spec_version: [1\n", "slo.yaml:2:1: not valid YAML: expected ',' or ']'"),
    (GOOD.replace('"<600"', '"<600", "<6OO"'),
     "slo.yaml:5:28: objectives[0].pass[0].criteria[1]: '<6OO' is not a criterion"),
    (GOOD.replace("  pass: \"90%\"", "  pass: lots"),
     "slo.yaml:7:9: total_score.pass: a percentage such as \"90%\", not 'lots'"),
    (GOOD.replace("    pass:", "    weight: 0\n    pass:"),
     "slo.yaml:4:13: objectives[0].weight: a whole number of at least 1, not 0"),
    (GOOD.replace("    pass:", "    key_sli: yes please\n    pass:"),
     "objectives[0].key_sli: true or false"),
    (GOOD.replace("    pass:", "    passs:"),
     "slo.yaml:4:5: objectives[0].passs: unknown field"),
    (GOOD.replace("total_score:\n  pass: \"90%\"\n", ""), "slo.yaml:1:1: total_score is required"),
    (GOOD + "comparison:\n  compare_with: all_results\n",
     "slo.yaml:9:17: comparison.compare_with: one of single_result, several_results"),
    (GOOD + "comparison:\n  number_of_comparison_results: 0\n",
     "comparison.number_of_comparison_results: a whole number of at least 1"),
    (GOOD + "comparison:\n  aggregate_function: p99\n",
     "comparison.aggregate_function: one of avg, p50, p90, p95"),
    (GOOD + "comparison:\n  include_result_with_score: warn\n",
     "comparison.include_result_with_score: one of all, pass, pass_or_warn"),
    (GOOD.replace('["<600"]', "[]"), "objectives[0].pass[0].criteria: a list of at least one"),
    (GOOD.replace("total_score:", "  - sli: rt\ntotal_score:"),
     "slo.yaml:6:10: objectives[1].sli: SLI 'rt' has an objective already"),
    (GOOD.replace("total_score:\n", "spec_version: 2\ntotal_score:\n"),
     "slo.yaml:6:1: spec_version: given twice"),
    (GOOD.replace('  pass: "90%"', '  pass: "90%"\n  warning: "95%"'),
     "total_score.warning: 95% is above the pass percentage 90%"),
    ("- just a list\n", "slo.yaml:1:1: a mapping of keys to values, not a list"),
    ("", "slo.yaml: a mapping of keys to values, not nothing"),
])
def test_slo_file_errors(text, error):
    with pytest.raises(SLOError) as info:
        parse_slo(text, "slo.yaml")
    assert error in str(info.value)


def test_slo_defaults_are_keptns():
    s = parse_slo(GOOD, "slo.yaml")
    assert s.comparison == Comparison("single_result", 1, "all", "avg")
    assert (s.objectives[0].weight, s.objectives[0].key_sli) == (1, False)
    assert s.total_score.warning_pct is None
    block = parse_slo(GOOD + "comparison:\n  compare_with: several_results\n", "slo.yaml")
    assert block.comparison.count == 3  # lighthouse's default for a block without a number


def test_slo_json_both_ways():
    example = parse_slo((EXAMPLES / "slo.yaml").read_text(), "slo.yaml")
    data = slo_to_json(example)
    assert data["objectives"][0]["pass"] == [{"criteria": ["<=+10%", "<600"]}]
    assert data["total_score"] == {"pass": "90%", "warning": "75%"}
    assert slo_from_json(json.loads(json.dumps(data))) == example
    with pytest.raises(SLOError, match="<slo>: objectives: a list of at least one"):
        slo_from_json({**data, "objectives": []})


def test_sli_files():
    indicators = parse_sli((EXAMPLES / "sli.yaml").read_text(), "sli.yaml")
    assert set(indicators) == {"response_time_p95", "error_rate", "throughput"}
    assert "$DURATION_SECONDS" in indicators["throughput"]
    with pytest.raises(SLOError, match=r"sli.yaml:3:7: indicators.rt: a query string"):
        parse_sli('spec_version: "1.0"\nindicators:\n  rt: 5\n', "sli.yaml")
    with pytest.raises(SLOError, match="sli.yaml:1:1: indicators is required"):
        parse_sli('spec_version: "1.0"\n', "sli.yaml")


def test_values_and_earlier_results_from_json():
    assert values_from_json({"a": 1, "b": None, "c": 2.5}) == {"a": 1.0, "b": None, "c": 2.5}
    with pytest.raises(EvaluationError, match="SLI 'a' is true, not a number"):
        values_from_json({"a": True})
    with pytest.raises(EvaluationError, match="an object of SLI name to number"):
        values_from_json([1])
    assert previous_from_json({"result": "pass", "values": {"rt": 5}}) == prev("pass", rt=5.0)
    kept = evaluation_to_json(evaluate(slo(RT, {"sli": "err", "pass": [["<1"]]}),
                                       {"rt": 500}, []))
    assert previous_from_json(kept, "7") == PreviousResult("fail", 50.0,
                                                           {"rt": 500.0, "err": None}, "7")
    with pytest.raises(EvaluationError, match="result is pass, warning or fail"):
        previous_from_json({"result": "ok", "values": {}})


# ---------------------------------------------------------------------------------------
# Results kept in the store (both stores)


KEY = evaluations.Key("shop", "dev", "carts")


def _ev(result: str, rt: float) -> dict:
    return {"result": result, "score": 100.0 if result == "pass" else 0.0,
            "indicatorResults": [{"value": {"metric": "rt", "value": rt, "success": True,
                                            "message": ""}}]}


def test_kept_results_compare_later(store):
    assert evaluations.history(store, KEY) == []
    first = evaluations.keep(store, KEY, _ev("pass", 100))
    second = evaluations.keep(store, KEY, _ev("fail", 900))
    third = evaluations.keep(store, KEY, _ev("pass", 300))
    assert evaluations.keep(store, ("shop", "prod", "carts"), _ev("pass", 1)) == "1"
    kept = evaluations.history(store, KEY)
    assert [(k.id, k.invalidated, k.evaluation["result"]) for k in kept] == [
        (first, False, "pass"), (second, False, "fail"), (third, False, "pass")]
    every = Comparison("several_results", 5)
    assert [p.values["rt"] for p in evaluations.previous_results(store, KEY, every)] == [
        100, 900, 300]
    evaluations.invalidate(store, KEY, third)
    assert evaluations.history(store, KEY)[-1].invalidated
    # an invalidated result never counts: single_result now takes the fail before it
    (newest,) = evaluations.previous_results(store, KEY, Comparison())
    assert (newest.id, newest.result, newest.values) == (second, "fail", {"rt": 900.0})
    passed = evaluations.previous_results(store, KEY, Comparison("several_results", 5, "pass"))
    assert [p.id for p in passed] == [first]
    the_slo = slo(REL, comparison=several(5, "pass"))
    assert evaluate(the_slo, {"rt": 111}, passed).result == "fail"  # target 110
    with pytest.raises(evaluations.EvaluationStoreError, match="has no kept evaluation 99"):
        evaluations.invalidate(store, KEY, "99")


def test_the_history_is_bounded(store):
    for i in range(evaluations.KEEP + 5):
        evaluations.keep(store, KEY, _ev("pass", i))
    kept = evaluations.history(store, KEY)
    assert len(kept) == evaluations.KEEP
    assert (kept[0].id, kept[-1].id) == ("6", str(evaluations.KEEP + 5))


def test_results_kept_at_once_all_stay(store):
    def keep_some(n: int) -> None:
        for i in range(10):
            evaluations.keep(store, KEY, _ev("pass", n * 100 + i))

    threads = [threading.Thread(target=keep_some, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    kept = evaluations.history(store, KEY)
    assert sorted(int(k.id) for k in kept) == list(range(1, 41))
    assert len({k.evaluation["indicatorResults"][0]["value"]["value"] for k in kept}) == 40


def test_an_unreadable_record_is_an_error(store):
    store.set_setting(evaluations._setting(KEY), "{not json")
    with pytest.raises(evaluations.EvaluationStoreError, match="shop/dev/carts cannot be read"):
        evaluations.history(store, KEY)
    with pytest.raises(evaluations.EvaluationStoreError):
        evaluations.keep(store, KEY, _ev("pass", 1))
    assert store.setting(evaluations._setting(KEY)) == "{not json"  # nothing lost


# ---------------------------------------------------------------------------------------
# flowmetal evaluate


def evaluate_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowmetal", "evaluate", *args], env=env(),
                          cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def test_the_command_prints_the_evaluation(tmp_path):
    (tmp_path / "values.json").write_text(json.dumps(
        {"response_time_p95": 540, "error_rate": 2.5, "throughput": 41.3}))
    (tmp_path / "previous.json").write_text(json.dumps([
        {"result": "pass", "values": {"response_time_p95": 480, "error_rate": 0.5}},
        {"result": "fail", "values": {"response_time_p95": 900}},
        {"result": "warning", "values": {"response_time_p95": 500}}]))
    r = evaluate_cli(str(EXAMPLES / "slo.yaml"), "--values", "values.json", "--previous",
                     "previous.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["result"], out["score"]) == ("fail", 50.0)
    assert out["comparedEvaluations"] == ["0", "2"]
    rt = out["indicatorResults"][0]
    assert (rt["status"], rt["passTargets"][0]["targetValue"]) == ("warning", 539.0)
    r = evaluate_cli(str(EXAMPLES / "slo.yaml"), "--values", "values.json", cwd=tmp_path)
    out = json.loads(r.stdout)
    # no earlier results: rt passes (2), error_rate warns (0.5): 2.5/3 = 83.3%
    assert (out["result"], out["score"]) == ("warning", pytest.approx(250 / 3))


@pytest.mark.parametrize(("files", "args", "status", "message"), [
    ({}, ["--values", "v.json"], 1, "flowmetal evaluate: slo.yaml: No such file"),
    ({"slo.yaml": "spec_version: 1\nobjectives: x\ntotal_score: {pass: 90}\n",
      "v.json": "{}"}, ["--values", "v.json"], 1,
     "slo.yaml:2:13: objectives: a list of at least one objective"),
    ({"v.json": "{\"rt\": "}, ["--values", "v.json"], 1, "v.json:1:8: not JSON"),
    ({"v.json": "{\"rt\": \"fast\"}"}, ["--values", "v.json"], 1,
     "the value of SLI 'rt' is 'fast', not a number"),
    ({"v.json": "{}", "p.json": "{}"}, ["--values", "v.json", "--previous", "p.json"], 1,
     "earlier evaluations are a JSON array"),
    ({"v.json": "{}", "p.json": "[{\"result\": \"good\", \"values\": {}}]"},
     ["--values", "v.json", "--previous", "p.json"], 1, "result is pass, warning or fail"),
    ({}, [], 2, "one of the arguments --values --prometheus is required"),
    ({}, ["--prometheus", "http://127.0.0.1:1"], 2, "--prometheus needs --sli"),
    ({}, ["--values", "v.json", "--start", "1"], 2, "go with --prometheus"),
    ({"sli.yaml": "spec_version: 1\nindicators: {rt: up}\n"},
     ["--prometheus", "http://127.0.0.1:1", "--sli", "sli.yaml"], 1,
     "SLI rt: Prometheus at http://127.0.0.1:1/api/v1/query cannot be reached"),
    ({"sli.yaml": "spec_version: 1\nindicators: {rt: up}\n"},
     ["--prometheus", "http://127.0.0.1:1", "--sli", "sli.yaml", "--end", "soon"], 1,
     "--end 'soon': not an ISO 8601 time or Unix seconds"),
])
def test_the_command_errors(tmp_path, files, args, status, message):
    if "slo.yaml" not in files and args and "No such file" not in message:
        files = {"slo.yaml": GOOD, **files}
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    r = evaluate_cli("slo.yaml", *args, cwd=tmp_path)
    assert r.returncode == status, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
