"""SLO and SLI files in Keptn's format, read into typed records.

An SLO file (``slo.yaml``) says how SLI values are judged: ``objectives`` with ``pass``
and ``warning`` criteria, the ``comparison`` that chooses the earlier results relative
criteria are measured against, and the ``total_score`` percentages a verdict needs.  An
SLI file (``sli.yaml``) names the query of each SLI.  Both are read with PyYAML; an
error names ``file:line:col: field: message``.  The same SLO as JSON data (the file's
keys, e.g. from a Flowmetal map) goes through the same checks with ``slo_from_json``.

A criterion is ``OP NUMBER`` with OP one of ``< <= = >= >``.  A number with a sign
(``<=+10%``, ``>=-5``) is relative to the aggregate of earlier results: ``+10%`` is 110%
of it, ``-5`` is 5 below it; an unsigned number (``<800``) is absolute.  As Keptn's
specification says, a relative value needs its sign: ``<10%`` is refused, since it reads
as an absolute 10 percent but Keptn's service would take it as +10%.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

COMPARE_WITH = ("single_result", "several_results")
INCLUDE_RESULT_WITH_SCORE = ("all", "pass", "pass_or_warn")
AGGREGATE_FUNCTIONS = ("avg", "p50", "p90", "p95")
OPERATORS = ("<=", ">=", "<", ">", "=")
# Keptn's lighthouse compares with 3 earlier results when a comparison block names no
# number, and with 1 when there is no comparison block at all.
SEVERAL_RESULTS_DEFAULT = 3

_CRITERION = re.compile(r"\s*(<=|>=|<|>|=)\s*([+-])?\s*((?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
                        r"\s*(%)?\s*")
_PERCENT = re.compile(r"\s*((?:\d+(?:\.\d*)?|\.\d+))\s*%?\s*")


class SLOError(ValueError):
    """An SLO or SLI file (or its JSON form) that is not valid; the message names the
    file, line and column when known, and the field."""


@dataclass(frozen=True)
class Criterion:
    """One criterion: ``value`` is signed when ``relative`` (a change from the aggregate of
    earlier results, in percent of it when ``percent``)."""

    op: str
    value: float
    relative: bool = False
    percent: bool = False

    @property
    def text(self) -> str:
        """The criterion as a criteria string (``<=+10%``, ``<800``)."""
        sign = ("+" if self.value >= 0 else "-") if self.relative else ""
        return f"{self.op}{sign}{_number_text(abs(self.value))}{'%' if self.percent else ''}"


@dataclass(frozen=True)
class Comparison:
    """Which earlier evaluations relative criteria are measured against, and how their
    values are aggregated."""

    compare_with: str = "single_result"
    number_of_comparison_results: int = 1
    include_result_with_score: str = "all"
    aggregate_function: str = "avg"

    @property
    def count(self) -> int:
        """How many earlier evaluations are compared with (1 for ``single_result``)."""
        return 1 if self.compare_with == "single_result" else self.number_of_comparison_results


@dataclass(frozen=True)
class Objective:
    """One SLI's objective: ``pass_criteria`` and ``warning_criteria`` are lists of
    criteria lists (the criteria of one list are ANDed, the lists ORed); without pass
    criteria the objective is informative only."""

    sli: str
    display_name: str = ""
    pass_criteria: tuple[tuple[Criterion, ...], ...] = ()
    warning_criteria: tuple[tuple[Criterion, ...], ...] = ()
    weight: int = 1
    key_sli: bool = False

    @property
    def informative(self) -> bool:
        """True when the objective has no pass criteria (it never changes the verdict)."""
        return not self.pass_criteria


@dataclass(frozen=True)
class TotalScore:
    """The percentages of the maximum score that pass, and warn (None: no warning)."""

    pass_pct: float
    warning_pct: float | None = None


@dataclass(frozen=True)
class SLO:
    """An SLO file."""

    spec_version: str
    comparison: Comparison
    filter: dict[str, str]
    objectives: tuple[Objective, ...]
    total_score: TotalScore


# ---------------------------------------------------------------------------------------
# Criteria


def parse_criterion(text: Any) -> Criterion:
    """A criteria string as a ``Criterion`` (ValueError naming it if it is not one)."""
    if not isinstance(text, str):
        raise ValueError(f"a criterion is a string such as \"<=800\" or \"<=+10%\", not "
                         f"{shown(text)}")
    m = _CRITERION.fullmatch(text)
    if m is None:
        raise ValueError(f"{text!r} is not a criterion: write an operator (< <= = >= >) and "
                         "a number, signed for a change from earlier results (\"<=800\", "
                         "\"<=+10%\", \">=-5\")")
    op, sign, number, percent = m.groups()
    value = float(number)
    if not math.isfinite(value):
        raise ValueError(f"{text!r}: the number is out of range")
    if percent and not sign:
        raise ValueError(f"{text!r}: a relative value needs its sign (\"{op}+{number}%\" for "
                         f"a change from earlier results); an absolute value has no %")
    return Criterion(op, -value if sign == "-" else value, relative=sign is not None,
                     percent=percent is not None)


def _number_text(x: float) -> str:
    return str(int(x)) if x == int(x) and abs(x) < 1e15 else repr(x)


# ---------------------------------------------------------------------------------------
# Reading YAML with positions


class _Tree:
    """Plain data read from YAML, with the position of each value by its path."""

    def __init__(self, filename: str):
        self.filename = filename
        self.marks: dict[tuple, tuple[int, int]] = {}
        self.key_marks: dict[tuple, tuple[int, int]] = {}

    def fail(self, path: tuple, message: str, at_key: bool = False) -> SLOError:
        """The error at ``path`` (the nearest position known at or above it; with
        ``at_key``, that of the key naming it)."""
        where = self.filename
        for n in range(len(path), -1, -1):
            mark = (at_key and n == len(path) and self.key_marks.get(path)) or \
                self.marks.get(path[:n])
            if mark is not None:
                where = f"{self.filename}:{mark[0]}:{mark[1]}"
                break
        name = _path_text(path)
        return SLOError(f"{where}: {name + ': ' if name else ''}{message}")


def _path_text(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def _load_yaml(text: str, filename: str) -> tuple[Any, _Tree]:
    """The document as plain data, and its positions (SLOError for YAML errors)."""
    tree = _Tree(filename)
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = None if node is None else _plain(node, (), loader, tree)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{filename}:{mark.line + 1}:{mark.column + 1}" if mark else filename
        raise SLOError(f"{where}: not valid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise SLOError(f"{filename}: not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    return data, tree


def _plain(node: yaml.Node, path: tuple, loader: yaml.SafeLoader, tree: _Tree) -> Any:
    tree.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        out: dict = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            at = path + (str(key),)
            tree.key_marks[at] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if not isinstance(key, str):
                raise tree.fail(at, "a key must be a string", at_key=True)
            if key in out:
                raise tree.fail(at, "given twice", at_key=True)
            out[key] = _plain(value_node, at, loader, tree)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, path + (i,), loader, tree) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)


# ---------------------------------------------------------------------------------------
# Checking the structure


def parse_slo(text: str, filename: str = "<slo>") -> SLO:
    """An SLO file's text as an ``SLO`` (SLOError naming file:line:col and the field)."""
    data, tree = _load_yaml(text, filename)
    return _slo(data, tree)


def slo_from_json(obj: Any, filename: str = "<slo>") -> SLO:
    """An SLO given as JSON data (the file's keys) as an ``SLO``."""
    return _slo(obj, _Tree(filename))


def _slo(data: Any, tree: _Tree) -> SLO:
    top = _mapping(data, (), tree, required=("spec_version", "objectives", "total_score"),
                   allowed=("spec_version", "comparison", "filter", "objectives",
                            "total_score"))
    spec_version = _scalar_text(top["spec_version"], ("spec_version",), tree)
    comparison = _comparison(top.get("comparison"), tree)
    filters = {}
    if top.get("filter") is not None:
        for key, value in _mapping(top["filter"], ("filter",), tree).items():
            filters[key] = _scalar_text(value, ("filter", key), tree)
    items = top["objectives"]
    if not isinstance(items, list) or not items:
        raise tree.fail(("objectives",), "a list of at least one objective")
    objectives = []
    seen: set[str] = set()
    for i, item in enumerate(items):
        objective = _objective(item, ("objectives", i), tree)
        if objective.sli in seen:
            raise tree.fail(("objectives", i, "sli"), f"SLI {objective.sli!r} has an "
                            "objective already")
        seen.add(objective.sli)
        objectives.append(objective)
    return SLO(spec_version, comparison, filters, tuple(objectives),
               _total_score(top["total_score"], tree))


def _mapping(data: Any, path: tuple, tree: _Tree, required: tuple = (),
             allowed: tuple | None = None) -> dict:
    if not isinstance(data, dict):
        raise tree.fail(path, f"a mapping of keys to values, not {shown(data)}")
    for key in data:
        if allowed is not None and key not in allowed:
            raise tree.fail(path + (key,), f"unknown field (known: {', '.join(allowed)})",
                            at_key=True)
    for key in required:
        if key not in data or data[key] is None:
            raise tree.fail(path, f"{key} is required")
    return data


def _comparison(data: Any, tree: _Tree) -> Comparison:
    if data is None:
        return Comparison()
    path = ("comparison",)
    block = _mapping(data, path, tree, allowed=("compare_with", "number_of_comparison_results",
                                                "include_result_with_score",
                                                "aggregate_function"))
    compare_with = _choice(block.get("compare_with"), path + ("compare_with",), tree,
                           COMPARE_WITH, "single_result")
    number = block.get("number_of_comparison_results")
    if number is None:
        number = SEVERAL_RESULTS_DEFAULT if compare_with == "several_results" else 1
    elif type(number) is not int or number < 1:
        raise tree.fail(path + ("number_of_comparison_results",),
                        f"a whole number of at least 1, not {shown(number)}")
    return Comparison(
        compare_with, number,
        _choice(block.get("include_result_with_score"),
                path + ("include_result_with_score",), tree, INCLUDE_RESULT_WITH_SCORE, "all"),
        _choice(block.get("aggregate_function"), path + ("aggregate_function",), tree,
                AGGREGATE_FUNCTIONS, "avg"))


def _choice(value: Any, path: tuple, tree: _Tree, choices: tuple, default: str) -> str:
    if value is None:
        return default
    if value not in choices:
        raise tree.fail(path, f"one of {', '.join(choices)}, not {shown(value)}")
    return value


def _objective(data: Any, path: tuple, tree: _Tree) -> Objective:
    block = _mapping(data, path, tree, required=("sli",),
                     allowed=("sli", "displayName", "pass", "warning", "weight", "key_sli"))
    sli = block["sli"]
    if not isinstance(sli, str) or not sli:
        raise tree.fail(path + ("sli",), f"an SLI name, not {shown(sli)}")
    display_name = block.get("displayName")
    if display_name is None:
        display_name = ""
    elif not isinstance(display_name, str):
        raise tree.fail(path + ("displayName",), f"a string, not {shown(display_name)}")
    weight = block.get("weight", 1)
    if weight is None:
        weight = 1
    if type(weight) is not int or weight < 1:
        raise tree.fail(path + ("weight",), f"a whole number of at least 1, not "
                        f"{shown(weight)}")
    key_sli = block.get("key_sli", False)
    if key_sli is None:
        key_sli = False
    if type(key_sli) is not bool:
        raise tree.fail(path + ("key_sli",), f"true or false, not {shown(key_sli)}")
    return Objective(sli, display_name, _criteria_lists(block.get("pass"), path + ("pass",), tree),
                     _criteria_lists(block.get("warning"), path + ("warning",), tree),
                     weight, key_sli)


def _criteria_lists(data: Any, path: tuple, tree: _Tree) -> tuple[tuple[Criterion, ...], ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise tree.fail(path, f"a list of {{criteria: [...]}} items, not {shown(data)}")
    out = []
    for i, item in enumerate(data):
        block = _mapping(item, path + (i,), tree, required=("criteria",),
                         allowed=("criteria",))
        items = block["criteria"]
        if not isinstance(items, list) or not items:
            raise tree.fail(path + (i, "criteria"), "a list of at least one criterion such "
                            "as \"<=800\"")
        group = []
        for j, text in enumerate(items):
            try:
                group.append(parse_criterion(text))
            except ValueError as exc:
                raise tree.fail(path + (i, "criteria", j), str(exc)) from None
        out.append(tuple(group))
    return tuple(out)


def _total_score(data: Any, tree: _Tree) -> TotalScore:
    path = ("total_score",)
    block = _mapping(data, path, tree, required=("pass",), allowed=("pass", "warning"))
    pass_pct = _percentage(block["pass"], path + ("pass",), tree)
    warning = block.get("warning")
    warning_pct = None if warning is None else _percentage(warning, path + ("warning",), tree)
    if warning_pct is not None and warning_pct > pass_pct:
        raise tree.fail(path + ("warning",), f"{_number_text(warning_pct)}% is above the pass "
                        f"percentage {_number_text(pass_pct)}%")
    return TotalScore(pass_pct, warning_pct)


def _percentage(value: Any, path: tuple, tree: _Tree) -> float:
    if type(value) in (int, float):
        pct = float(value)
    elif isinstance(value, str) and (m := _PERCENT.fullmatch(value)):
        pct = float(m.group(1))
    else:
        raise tree.fail(path, f"a percentage such as \"90%\", not {shown(value)}")
    if not 0 <= pct <= 100:
        raise tree.fail(path, f"a percentage from 0 to 100, not {shown(value)}")
    return pct


def _scalar_text(value: Any, path: tuple, tree: _Tree) -> str:
    if isinstance(value, str):
        return value
    if type(value) in (int, float):
        return str(value)
    raise tree.fail(path, f"a string, not {shown(value)}")


def shown(value: Any) -> str:
    """A short description of a value read from a file, for error messages."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 60 else text[:59] + "…"


# ---------------------------------------------------------------------------------------
# JSON form


def slo_to_json(slo: SLO) -> dict:
    """The SLO as JSON data in the file's shape, every default written out."""
    def lists(groups: tuple) -> list:
        return [{"criteria": [c.text for c in group]} for group in groups]

    c = slo.comparison
    total: dict[str, Any] = {"pass": f"{_number_text(slo.total_score.pass_pct)}%"}
    if slo.total_score.warning_pct is not None:
        total["warning"] = f"{_number_text(slo.total_score.warning_pct)}%"
    return {
        "spec_version": slo.spec_version,
        "comparison": {"compare_with": c.compare_with,
                       "number_of_comparison_results": c.number_of_comparison_results,
                       "include_result_with_score": c.include_result_with_score,
                       "aggregate_function": c.aggregate_function},
        "filter": dict(slo.filter),
        "objectives": [{"sli": o.sli, "displayName": o.display_name,
                        "pass": lists(o.pass_criteria), "warning": lists(o.warning_criteria),
                        "weight": o.weight, "key_sli": o.key_sli} for o in slo.objectives],
        "total_score": total,
    }


# ---------------------------------------------------------------------------------------
# SLI files


def parse_sli(text: str, filename: str = "<sli>") -> dict[str, str]:
    """An SLI file's text as ``{SLI name: query}`` (SLOError naming file:line:col)."""
    data, tree = _load_yaml(text, filename)
    top = _mapping(data, (), tree, required=("spec_version", "indicators"),
                   allowed=("spec_version", "indicators"))
    _scalar_text(top["spec_version"], ("spec_version",), tree)
    indicators = _mapping(top["indicators"], ("indicators",), tree)
    out = {}
    for name, query in indicators.items():
        if not isinstance(query, str) or not query.strip():
            raise tree.fail(("indicators", name), f"a query string, not {shown(query)}")
        out[name] = query
    if not out:
        raise tree.fail(("indicators",), "at least one indicator")
    return out
