"""Shipyards: Keptn's ``spec.keptn.sh/0.2.x`` file of stages, their sequences and the
sequences' tasks, read from YAML, JSON or Flowmetal data into typed records.

One validator checks plain data (what ``json.loads`` gives).  YAML is first composed into
nodes (PyYAML), turned into plain data and the position of every value and key kept, so
an error names ``file:line:col`` and the field (``spec.stages[0].sequences[1].name``).
Every field Keptn defines is checked, and a field it does not define is an error naming
it: a typo must not pass unnoticed.  Flowmetal adds ``concurrency`` to a stage and
``startTimeout`` / ``finishTimeout`` to a task (NOTES.md, "Shipyards").
"""

from __future__ import annotations

import difflib
import json
import math
import re
from contextlib import suppress
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import yaml

API_VERSION = re.compile(r"spec\.keptn\.sh/0\.2\.(0|[1-9][0-9]*)")
DEFAULT_API_VERSION = "spec.keptn.sh/0.2.3"
KIND = "Shipyard"
EVENT_PREFIX = "sh.keptn.event."
# Keptn's rule for project, stage and service names (a Kubernetes label); sequences and
# tasks follow it too, so that an event type's dots separate names unambiguously.
NAME = re.compile(r"[a-z](?:[a-z0-9-]*[a-z0-9])?")
NAME_MAX = 63
NAME_RULE = ("a lower-case letter, then lower-case letters, digits and hyphens, not "
             f"ending in a hyphen, at most {NAME_MAX} characters")
CONCURRENCY_MAX = 10_000
MAX_NODES = 100_000  # YAML nodes one file may hold (aliases count each time)
MAX_DEPTH = 100

Path = tuple[str | int, ...]


class ShipyardError(ValueError):
    """A shipyard that cannot be used: ``file:line:col: field: message`` (the position
    when the shipyard came from a file)."""

    def __init__(self, message: str, field: str = "", file: str | None = None,
                 line: int | None = None, col: int | None = None):
        self.message, self.field = message, field
        self.file, self.line, self.col = file, line, col
        where = "" if file is None else f"{file}:{line}:{col}: " if line is not None else \
            f"{file}: "
        super().__init__(f"{where}{field}: {message}" if field else f"{where}{message}")


# ---------------------------------------------------------------------------------------
# The records


@dataclass(frozen=True)
class TaskSpec:
    """A task of a sequence; durations in seconds, None where the file gives none."""

    name: str
    triggered_after: float | None = None
    properties: dict = field(default_factory=dict)
    start_timeout: float | None = None
    finish_timeout: float | None = None


@dataclass(frozen=True)
class Trigger:
    """A sequence starts when ``event`` (``<stage>.<sequence>.finished``) comes with data
    whose values at the dotted paths of ``match`` are these."""

    event: str
    match: dict[str, str] = field(default_factory=dict)

    @property
    def stage(self) -> str:
        """The stage of the finished sequence."""
        return self.event.split(".")[0]

    @property
    def sequence(self) -> str:
        """The finished sequence."""
        return self.event.split(".")[1]

    def matches(self, data: dict) -> bool:
        """Whether a finished event's data is selected."""
        return all(_text(_lookup(data, key)) == want for key, want in self.match.items())


@dataclass(frozen=True)
class Sequence:
    """Tasks run in order, started by a trigger of its own or by ``triggered_on``."""

    name: str
    tasks: tuple[TaskSpec, ...] = ()
    triggered_on: tuple[Trigger, ...] = ()

    def task(self, name: str) -> TaskSpec | None:
        """The task of that name, or None."""
        return next((t for t in self.tasks if t.name == name), None)


@dataclass(frozen=True)
class Stage:
    """A stage's sequences; ``concurrency`` runs of one service at once (Flowmetal)."""

    name: str
    sequences: tuple[Sequence, ...] = ()
    concurrency: int = 1


@dataclass(frozen=True)
class Shipyard:
    """A project's stages (``name`` is ``metadata.name``)."""

    name: str
    api_version: str
    stages: tuple[Stage, ...]

    def stage(self, name: str) -> Stage | None:
        """The stage of that name, or None."""
        return next((s for s in self.stages if s.name == name), None)

    def sequence(self, stage: str, name: str) -> Sequence | None:
        """The sequence ``name`` of ``stage``, or None."""
        found = self.stage(stage)
        return None if found is None else next(
            (s for s in found.sequences if s.name == name), None)

    def followers(self, stage: str, sequence: str, finished_data: dict
                  ) -> list[tuple[str, str]]:
        """The (stage, sequence) pairs a ``<stage>.<sequence>.finished`` event with this
        data starts, in the shipyard's order."""
        event = f"{stage}.{sequence}.finished"
        return [(st.name, seq.name) for st in self.stages for seq in st.sequences
                if any(t.event == event and t.matches(finished_data)
                       for t in seq.triggered_on)]


def _lookup(data: Any, key: str) -> Any:
    """The value at a dotted path (``evaluation.result``), or at the key itself."""
    value = data
    for part in key.split("."):
        if not isinstance(value, dict) or part not in value:
            return data.get(key) if isinstance(data, dict) else None
        value = value[part]
    return value


def _text(value: Any) -> str | None:
    """A scalar as the text a selector compares (YAML's and JSON's spelling)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


# ---------------------------------------------------------------------------------------
# Go durations (time.ParseDuration), which Keptn's triggeredAfter is

_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
             "m": 60.0, "h": 3600.0}
_GO_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
GO_DURATION_MAX = (2 ** 63 - 1) / 1e9  # Go's largest duration, in seconds


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration: ``90s``, ``10m``, ``1h30m``, ``1.5h``, ``300ms``
    (ValueError if it is not one)."""
    body = text[1:] if text[:1] in "+-" else text
    if body == "0":
        return 0.0
    total, pos = 0.0, 0
    while pos < len(body) or pos == 0:
        part = _GO_PART.match(body, pos)
        if part is None or part.group(1) in ("", "."):
            raise ValueError(f"{text!r} is not a duration such as 90s, 10m or 1h30m")
        total += float(part.group(1)) * _GO_UNITS[part.group(2)]
        pos = part.end()
    if total > GO_DURATION_MAX:
        raise ValueError(f"{text!r} is longer than the longest duration (about 292 years)")
    return -total if text.startswith("-") else total


def go_duration_text(seconds: float) -> str:
    """The Go duration text of a number of seconds (``1h30m``, ``1.5s``), which
    ``parse_go_duration`` reads back exactly."""
    hours = int(seconds // 3600)
    rest = seconds - hours * 3600 if hours else seconds
    minutes = int(rest // 60)
    rest = rest - minutes * 60 if minutes else rest
    out = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    if rest or not out:
        out += f"{Decimal(repr(rest)):f}s"
    plain = f"{Decimal(repr(float(seconds))):f}s"  # 3600.1s rather than 1h0.0999...s
    return plain if len(plain) < len(out) else out


# ---------------------------------------------------------------------------------------
# YAML to plain data, keeping positions


class _Located:
    """Where each value (and each mapping key) of a document was: path -> (line, col)."""

    def __init__(self, file: str | None):
        self.file = file
        self.values: dict[Path, tuple[int, int]] = {}
        self.keys: dict[Path, tuple[int, int]] = {}
        self.open: set[int] = set()  # the collections being converted (aliases can loop)

    def error(self, path: Path, message: str, at_key: bool = False) -> ShipyardError:
        """The error at ``path`` (at its key, if asked and known; else at the nearest
        enclosing value that has a position)."""
        where = self.keys.get(path) if at_key else None
        probe = path
        while where is None and probe:
            where = self.values.get(probe)
            probe = probe[:-1]
        where = where or self.values.get(())
        line, col = where if where else (None, None)
        return ShipyardError(message, field_name(path), self.file, line, col)


def field_name(path: Path) -> str:
    """``spec.stages[0].sequences[1].name`` for a path."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


_CONSTRUCT = yaml.constructor.SafeConstructor()
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's: the same, faster
_TAG = "tag:yaml.org,2002:"
_EXPONENT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")


def _plain(node: yaml.Node, path: Path, at: _Located, budget: list[int]) -> Any:
    """A YAML node as plain data (JSON's kinds), recording positions in ``at``."""
    budget[0] -= 1
    if budget[0] < 0:
        raise at.error(path, f"the document has more than {MAX_NODES} values")
    if len(path) > MAX_DEPTH:
        raise at.error(path, f"nested more than {MAX_DEPTH} deep")
    at.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.CollectionNode):
        if id(node) in at.open:
            raise at.error(path, "an alias of a collection inside itself")
        at.open.add(id(node))
        try:
            return _collection(node, path, at, budget)
        finally:
            at.open.discard(id(node))
    return _scalar(node, path, at)


def _collection(node: yaml.CollectionNode, path: Path, at: _Located, budget: list[int]
                ) -> Any:
    if isinstance(node, yaml.MappingNode):
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = _key(key_node, path, at)
            if key in out:
                first = at.keys[path + (key,)]
                raise ShipyardError(f"the key {key!r} appears twice (first at line "
                                    f"{first[0]})", field_name(path + (key,)), at.file,
                                    key_node.start_mark.line + 1,
                                    key_node.start_mark.column + 1)
            at.keys[path + (key,)] = (key_node.start_mark.line + 1,
                                      key_node.start_mark.column + 1)
            out[key] = _plain(value_node, path + (key,), at, budget)
        return out
    return [_plain(item, path + (i,), at, budget) for i, item in enumerate(node.value)]


def _key(node: yaml.Node, path: Path, at: _Located) -> str:
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    if node.tag == _TAG + "merge":
        raise ShipyardError("merge keys (<<) are not supported", field_name(path), at.file,
                            line, col)
    if not isinstance(node, yaml.ScalarNode) or node.tag != _TAG + "str":
        value = node.value if isinstance(node, yaml.ScalarNode) else "a collection"
        raise ShipyardError(f"a key must be a string, not {value!r} (quote it)",
                            field_name(path), at.file, line, col)
    return node.value


def _scalar(node: yaml.ScalarNode, path: Path, at: _Located) -> Any:
    tag = node.tag.removeprefix(_TAG)
    if tag == "str" and not node.style and _EXPONENT.fullmatch(node.value):  # plain
        return float(node.value)  # 1e-05 is a number in JSON and YAML 1.2, as in Go's YAML
    if tag in ("str", "timestamp"):  # a date stays the text it was written as
        return node.value
    if tag == "null":
        return None
    if tag == "bool":
        return _CONSTRUCT.construct_yaml_bool(node)
    if tag == "int":
        try:
            return _CONSTRUCT.construct_yaml_int(node)
        except ValueError:  # (more digits than Python reads)
            raise at.error(path, f"the number of {len(node.value)} characters is too "
                                 "long") from None
    if tag == "float":
        value = _CONSTRUCT.construct_yaml_float(node)
        if not math.isfinite(value):
            raise at.error(path, f"{node.value!r} is not a finite number")
        return value
    raise at.error(path, f"the YAML tag {node.tag} is not supported here")


def _compose(text: str, file: str, loader: type = _LOADER) -> yaml.Node:
    try:
        node = yaml.compose(text, Loader=loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        context = exc.context and exc.context_mark and \
            f"{exc.context} at line {exc.context_mark.line + 1}"
        message = ": ".join(p for p in (context, exc.problem) if p) or "not YAML"
        raise ShipyardError(f"not valid YAML: {message}", "", file,
                            mark.line + 1 if mark else 1,
                            mark.column + 1 if mark else 1) from None
    except yaml.YAMLError as exc:
        raise ShipyardError(f"not valid YAML: {exc}", "", file, 1, 1) from None
    if node is None:
        raise ShipyardError("the file holds no shipyard (it is empty)", "", file, 1, 1)
    return node


def parse_shipyard(text: str, filename: str) -> Shipyard:
    """The shipyard a YAML or JSON text holds (ShipyardError naming file, line, column
    and field if it is not a valid one)."""
    data = _json_document(text, filename)
    if data is not None:
        return _Validator(_json_positions(text, filename, data)).shipyard(data[0])
    node = _compose(text, filename)
    at = _Located(filename)
    return _Validator(at).shipyard(_plain(node, (), at, [MAX_NODES]))


def _json_document(text: str, filename: str) -> tuple[Any] | None:
    """(the data,) of a JSON object's text; None for text that is not JSON (YAML)."""
    if not text.lstrip().startswith("{"):
        return None

    def pairs(items: list[tuple[str, Any]]) -> dict:
        out = dict(items)
        if len(out) < len(items):
            raise ValueError("a key twice")  # YAML's reading says where
        return out
    try:
        return (json.loads(text, object_pairs_hook=pairs),)
    except (ValueError, RecursionError):  # YAML's flow style, or an error YAML places
        return None


def _json_positions(text: str, filename: str, data: tuple[Any]) -> _Located:
    """Where the values of a JSON text are: YAML's reading of it, when YAML reads it as
    JSON does; else no positions.  libyaml refuses surrogate-pair escapes (``\\ud83d``),
    which PyYAML's own reader takes as two characters, but refuses tabs between tokens."""
    for loader in (_LOADER, yaml.SafeLoader):
        at = _Located(filename)
        with suppress(ShipyardError):
            if _joined(_plain(_compose(text, filename, loader), (), at, [MAX_NODES])) \
                    == data[0]:
                return at
    return _Located(filename)


def _joined(value: Any) -> Any:
    """Plain data with each surrogate pair in its strings made the one character."""
    if isinstance(value, str):
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict):
        return {_joined(k): _joined(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_joined(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------
# Validation of plain data


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


class _Validator:
    """Plain data to records, every error at its path (positioned by ``at``)."""

    def __init__(self, at: _Located):
        self.at = at

    def fail(self, path: Path, message: str, at_key: bool = False) -> ShipyardError:
        return self.at.error(path, message, at_key)

    def mapping(self, value: Any, path: Path, known: tuple[str, ...],
                required: tuple[str, ...] = ()) -> dict:
        """A mapping with only ``known`` fields and every ``required`` one."""
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping with {', '.join(known)}, not "
                            f"{_kind(value)}")
        for key in value:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else \
                    f" (known: {', '.join(known)})"
                raise self.fail(path + (key,), f"unknown field {key!r}{hint}", at_key=True)
        for key in required:
            if value.get(key) is None:
                raise self.fail(path + (key,), "is required" if key not in value else
                                "is required (it is null)", at_key=True)
        return value

    def string(self, value: Any, path: Path) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, not {_kind(value)}")
        return self.unicode(value, path)

    def unicode(self, text: str, path: Path) -> str:
        """``text``, unless it holds a lone surrogate (which no UTF-8 text can)."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise self.fail(path, f"not Unicode text: a lone surrogate at character "
                            f"{exc.start + 1}") from None
        return text

    def name(self, value: Any, path: Path, what: str) -> str:
        text = self.string(value, path)
        if len(text) > NAME_MAX or not NAME.fullmatch(text):
            raise self.fail(path, f"{text!r} is not a valid {what} name: {NAME_RULE}")
        return text

    def items(self, value: Any, path: Path, what: str) -> list:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list of {what}, not {_kind(value)}")
        return value

    def unique(self, names: list[str], path: Path, what: str, where: str) -> None:
        seen: dict[str, int] = {}
        for i, text in enumerate(names):
            if text in seen:
                raise self.fail(path + (i, "name"), f"a second {what} named {text!r} "
                                f"{where} ({what} names are unique; the first is "
                                f"{field_name(path + (seen[text],))})")
            seen[text] = i

    def json_data(self, value: Any, path: Path) -> None:
        """Check that a value is JSON's: mappings with string keys, lists, scalars."""
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise self.fail(path, f"a key must be a string, not {key!r}")
                self.json_data(item, path + (self.unicode(key, path),))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                self.json_data(item, path + (i,))
        elif isinstance(value, float) and not math.isfinite(value):
            raise self.fail(path, f"{value!r} is not a finite number")
        elif isinstance(value, str):
            self.unicode(value, path)
        elif value is not None and not isinstance(value, (int, float)):
            raise self.fail(path, f"{_kind(value)} is not JSON data")

    def duration(self, value: Any, path: Path, positive: bool) -> float | None:
        if value is None:
            return None
        text = self.string(value, path)
        try:
            seconds = parse_go_duration(text)
        except ValueError as exc:
            raise self.fail(path, str(exc)) from None
        if seconds < 0 or (positive and seconds == 0):
            bound = "more than" if positive else "at least"
            raise self.fail(path, f"{text!r} must be {bound} 0")
        return seconds

    # the shipyard's parts ---------------------------------------------------------------

    def shipyard(self, data: Any) -> Shipyard:
        top = self.mapping(data, (), ("apiVersion", "kind", "metadata", "spec"),
                           ("apiVersion", "kind", "metadata", "spec"))
        version = self.string(top["apiVersion"], ("apiVersion",))
        if not API_VERSION.fullmatch(version):
            raise self.fail(("apiVersion",), f"{version!r} is not a shipyard version read "
                            "here: spec.keptn.sh/0.2.x (0.2.0, 0.2.1, ...)")
        if self.string(top["kind"], ("kind",)) != KIND:
            raise self.fail(("kind",), f"must be {KIND!r}, not {top['kind']!r}")
        meta = self.mapping(top["metadata"], ("metadata",), ("name",), ("name",))
        name = self.name(meta["name"], ("metadata", "name"), "project")
        spec = self.mapping(top["spec"], ("spec",), ("stages",), ("stages",))
        raw = self.items(spec["stages"], ("spec", "stages"), "stages")
        if not raw:
            raise self.fail(("spec", "stages"), "a shipyard needs at least one stage")
        stages = tuple(self.stage(s, ("spec", "stages", i)) for i, s in enumerate(raw))
        self.unique([s.name for s in stages], ("spec", "stages"), "stage",
                    "in the shipyard")
        self.check_triggers(stages)
        return Shipyard(name, version, stages)

    def stage(self, data: Any, path: Path) -> Stage:
        raw = self.mapping(data, path, ("name", "sequences", "concurrency"), ("name",))
        name = self.name(raw["name"], path + ("name",), "stage")
        items = self.items(raw.get("sequences"), path + ("sequences",), "sequences")
        sequences = tuple(self.sequence(s, path + ("sequences", i))
                          for i, s in enumerate(items))
        self.unique([s.name for s in sequences], path + ("sequences",), "sequence",
                    f"in stage {name!r}")
        concurrency = raw.get("concurrency", 1)
        if type(concurrency) is not int or not 1 <= concurrency <= CONCURRENCY_MAX:
            shown = concurrency if type(concurrency) is not int or \
                concurrency.bit_length() < 64 else "a number that long"
            raise self.fail(path + ("concurrency",), f"must be a whole number from 1 to "
                            f"{CONCURRENCY_MAX}, not {shown!r:.60}")
        return Stage(name, sequences, concurrency)

    def sequence(self, data: Any, path: Path) -> Sequence:
        raw = self.mapping(data, path, ("name", "triggeredOn", "tasks"), ("name",))
        name = self.name(raw["name"], path + ("name",), "sequence")
        if "tasks" not in raw:
            raise self.fail(path + ("tasks",), "is required (a list of tasks)")
        items = self.items(raw["tasks"], path + ("tasks",), "tasks")
        tasks = tuple(self.task(t, path + ("tasks", i)) for i, t in enumerate(items))
        self.unique([t.name for t in tasks], path + ("tasks",), "task",
                    f"in sequence {name!r}")
        triggers = tuple(self.trigger(t, path + ("triggeredOn", i)) for i, t in
                         enumerate(self.items(raw.get("triggeredOn"),
                                              path + ("triggeredOn",), "triggers")))
        return Sequence(name, tasks, triggers)

    def task(self, data: Any, path: Path) -> TaskSpec:
        raw = self.mapping(data, path, ("name", "triggeredAfter", "properties",
                                        "startTimeout", "finishTimeout"), ("name",))
        name = self.name(raw["name"], path + ("name",), "task")
        properties = raw.get("properties")
        if properties is None:
            properties = {}
        elif not isinstance(properties, dict):
            raise self.fail(path + ("properties",), f"must be a mapping, not "
                            f"{_kind(properties)}")
        else:
            self.json_data(properties, path + ("properties",))
        return TaskSpec(name, self.duration(raw.get("triggeredAfter"),
                                            path + ("triggeredAfter",), False),
                        properties,
                        self.duration(raw.get("startTimeout"), path + ("startTimeout",),
                                      True),
                        self.duration(raw.get("finishTimeout"), path + ("finishTimeout",),
                                      True))

    def trigger(self, data: Any, path: Path) -> Trigger:
        raw = self.mapping(data, path, ("event", "selector"), ("event",))
        event = self.string(raw["event"], path + ("event",)).removeprefix(EVENT_PREFIX)
        parts = event.split(".")
        if len(parts) != 3 or parts[2] != "finished" or not all(parts):
            raise self.fail(path + ("event",), f"{raw['event']!r} must name a finished "
                            "sequence: <stage>.<sequence>.finished")
        match: dict[str, str] = {}
        if raw.get("selector") is not None:
            selector = self.mapping(raw["selector"], path + ("selector",), ("match",))
            given = selector.get("match")
            if given is not None and not isinstance(given, dict):
                raise self.fail(path + ("selector", "match"), "must be a mapping of "
                                f"fields to values, not {_kind(given)}")
            for key, value in (given or {}).items():
                where = path + ("selector", "match", key)
                if not key or not all(key.split(".")):
                    raise self.fail(where, f"{key!r} is not a field path such as result "
                                    "or evaluation.result", at_key=True)
                if _text(value) is None:
                    raise self.fail(where, f"must be a string, number or boolean, not "
                                    f"{_kind(value)}")
                match[self.unicode(key, where)] = self.unicode(_text(value), where)
        return Trigger(event, match)

    def check_triggers(self, stages: tuple[Stage, ...]) -> None:
        """Every trigger names a sequence of this shipyard."""
        known = {(st.name, seq.name) for st in stages for seq in st.sequences}
        for i, st in enumerate(stages):
            for j, seq in enumerate(st.sequences):
                for k, trigger in enumerate(seq.triggered_on):
                    if (trigger.stage, trigger.sequence) not in known:
                        raise self.fail(
                            ("spec", "stages", i, "sequences", j, "triggeredOn", k, "event"),
                            f"{trigger.event!r} names no sequence of this shipyard (stage "
                            f"{trigger.stage!r}, sequence {trigger.sequence!r})")


# ---------------------------------------------------------------------------------------
# Plain data and Flowmetal data


def shipyard_from_json(obj: Any) -> Shipyard:
    """The shipyard of plain JSON data (ShipyardError naming the field if invalid)."""
    return _Validator(_Located(None)).shipyard(obj)


def shipyard_to_json(shipyard: Shipyard) -> dict:
    """The shipyard as plain JSON data of Keptn's shape (defaults left out), which
    ``shipyard_from_json`` reads back as an equal shipyard."""
    return {"apiVersion": shipyard.api_version, "kind": KIND,
            "metadata": {"name": shipyard.name},
            "spec": {"stages": [_stage_json(s) for s in shipyard.stages]}}


def _stage_json(stage: Stage) -> dict:
    out: dict[str, Any] = {"name": stage.name}
    if stage.concurrency != 1:
        out["concurrency"] = stage.concurrency
    if stage.sequences:
        out["sequences"] = [_sequence_json(s) for s in stage.sequences]
    return out


def _sequence_json(seq: Sequence) -> dict:
    out: dict[str, Any] = {"name": seq.name}
    if seq.triggered_on:
        out["triggeredOn"] = [{"event": t.event, **({"selector": {"match": dict(t.match)}}
                                                     if t.match else {})}
                              for t in seq.triggered_on]
    out["tasks"] = [_task_json(t) for t in seq.tasks]
    return out


def _task_json(task: TaskSpec) -> dict:
    out: dict[str, Any] = {"name": task.name}
    for key, seconds in (("triggeredAfter", task.triggered_after),
                         ("startTimeout", task.start_timeout),
                         ("finishTimeout", task.finish_timeout)):
        if seconds is not None:
            out[key] = go_duration_text(seconds)
    if task.properties:
        out["properties"] = task.properties
    return out


def shipyard_from_value(value: Any) -> Shipyard:
    """The shipyard of Flowmetal data: maps with keyword (or string) keys, vectors
    (``{:apiVersion "spec.keptn.sh/0.2.3" :kind "Shipyard" ...}``)."""
    from ..json_values import to_plain
    from ..values import FlowmetalError

    try:
        plain = to_plain(value)
    except FlowmetalError as exc:
        raise ShipyardError(f"not shipyard data: {exc.message.removeprefix('json-encode: ')}"
                            ) from None
    return shipyard_from_json(plain)


def shipyard_yaml(shipyard: Shipyard) -> str:
    """The shipyard as YAML text in Keptn's shape (characters beyond ASCII as they are,
    unless one would not read back so: PyYAML writes a NEL, U+0085, unescaped)."""
    data = shipyard_to_json(shipyard)
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True,
                     default_flow_style=False)
    if text.isascii() or yaml.load(text, Loader=_LOADER) == data:
        return text
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False)


class _Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper, quoting the strings this module reads as numbers when plain
    (``1e5``: YAML 1.2's floats, which PyYAML's YAML 1.1 writes unquoted)."""


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = '"' if _EXPONENT.fullmatch(value) else None
    return dumper.represent_scalar(_TAG + "str", value, style=style)


_Dumper.add_representer(str, _represent_str)
