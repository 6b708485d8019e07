"""Evaluation results kept in the store, per (project, stage, service), for the relative
criteria of later evaluations.

The results of one key are one store setting: a JSON object holding the next id and the
newest ``KEEP`` results, oldest first, each with its id, when it was kept, whether it was
invalidated, and the evaluation as ``evaluation_to_json`` gives it.  Appending is one
write transaction (``update_setting``), so evaluations kept at once all stay.  An
invalidated result stays in the history but never counts in a comparison.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from .evaluation import EvaluationError, PreviousResult, previous_from_json, select_previous
from .slo import Comparison

KEEP = 100  # results kept per key; older ones are dropped
SETTING = "evaluations:"


class EvaluationStoreError(Exception):
    """A kept result that is not there, or a record of results that cannot be read."""


class Key(NamedTuple):
    """Whose evaluations: a service in a stage of a project (a plain 3-tuple will do)."""

    project: str
    stage: str
    service: str


@dataclass(frozen=True)
class KeptEvaluation:
    """One kept result."""

    id: str
    at: float
    invalidated: bool
    evaluation: dict


def _setting(key: Key) -> str:
    project, stage, service = key
    return SETTING + json.dumps([project, stage, service], ensure_ascii=False)


def _read(key: Key, text: str | None) -> dict:
    if text is None:
        return {"next": 1, "items": []}
    try:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("items"), list) \
                or type(data.get("next")) is not int:
            raise ValueError("not a record of evaluations")
        return data
    except ValueError as exc:
        raise EvaluationStoreError(f"the kept evaluations of {_named(key)} cannot be read: "
                                   f"{exc}") from None


def _named(key: Key) -> str:
    return "/".join(key)


def keep(store: Any, key: Key, evaluation_json: dict) -> str:
    """Keep an evaluation's result (``evaluation_to_json``'s shape); its id."""
    previous_from_json(evaluation_json)  # refuse now what a later comparison could not read
    at = time.time()
    given: list[str] = []

    def append(text: str | None) -> str:
        data = _read(key, text)
        ident = str(data["next"])
        given[:] = [ident]
        items = data["items"] + [{"id": ident, "at": at, "invalidated": False,
                                  "evaluation": evaluation_json}]
        return json.dumps({"next": data["next"] + 1, "items": items[-KEEP:]},
                          ensure_ascii=False, separators=(",", ":"))

    store.update_setting(_setting(key), append)
    return given[0]


def history(store: Any, key: Key) -> list[KeptEvaluation]:
    """The kept results of ``key``, oldest first."""
    data = _read(key, store.setting(_setting(key)))
    try:
        return [KeptEvaluation(str(item["id"]), float(item["at"]), bool(item["invalidated"]),
                               item["evaluation"]) for item in data["items"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise EvaluationStoreError(f"the kept evaluations of {_named(key)} cannot be read: "
                                   f"{type(exc).__name__}: {exc}") from None


def invalidate(store: Any, key: Key, ident: str) -> None:
    """Mark a kept result invalid: later comparisons leave it out."""
    def mark(text: str | None) -> str:
        data = _read(key, text)
        for item in data["items"]:
            if isinstance(item, dict) and str(item.get("id")) == ident:
                item["invalidated"] = True
                return json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        raise EvaluationStoreError(f"{_named(key)} has no kept evaluation {ident}")

    store.update_setting(_setting(key), mark)


def previous_results(store: Any, key: Key, comparison: Comparison) -> list[PreviousResult]:
    """The kept results a new evaluation with ``comparison`` compares with, oldest first
    (never an invalidated one)."""
    out = []
    for kept in history(store, key):
        if kept.invalidated:
            continue
        try:
            out.append(previous_from_json(kept.evaluation, kept.id))
        except EvaluationError as exc:
            raise EvaluationStoreError(f"kept evaluation {kept.id} of {_named(key)}: "
                                       f"{exc}") from None
    return select_previous(comparison, out)
