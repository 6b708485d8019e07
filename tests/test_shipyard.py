"""Shipyards: Keptn's file read from YAML, JSON and Flowmetal data into records, every
kind of error at its line, column and field, round trips, which sequences a finished
event starts, versions kept in both stores (concurrent applies included, from threads,
from processes and through a server), the command line, and the HTTP endpoints."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from flowmetal.reader import read_one
from flowmetal.sequences import shipyards
from flowmetal.sequences.shipyard import (
    Sequence,
    Shipyard,
    ShipyardError,
    Stage,
    TaskSpec,
    Trigger,
    go_duration_text,
    parse_go_duration,
    parse_shipyard,
    shipyard_from_json,
    shipyard_from_value,
    shipyard_to_json,
    shipyard_yaml,
)
from flowmetal.store.remote import RemoteStore

from .cli_helpers import TIMEOUT, env
from .served import Served
from .test_store import KINDS, make_store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "shipyard.yaml"

BASE = """\
apiVersion: spec.keptn.sh/0.2.3
kind: Shipyard
metadata:
  name: shop
spec:
  stages:
    - name: dev
      sequences:
        - name: delivery
          tasks:
            - name: deployment
              properties:
                strategy: direct
            - name: test
              triggeredAfter: 10m
    - name: production
      concurrency: 2
      sequences:
        - name: delivery
          triggeredOn:
            - event: dev.delivery.finished
              selector:
                match:
                  evaluation.result: pass
          tasks:
            - name: release
              startTimeout: 5m
              finishTimeout: 1h
"""


def base() -> Shipyard:
    return parse_shipyard(BASE, "shipyard.yaml")


# -- reading ----------------------------------------------------------------------------

def test_a_shipyard_is_read_into_records():
    assert base() == Shipyard("shop", "spec.keptn.sh/0.2.3", (
        Stage("dev", (Sequence("delivery", (
            TaskSpec("deployment", properties={"strategy": "direct"}),
            TaskSpec("test", triggered_after=600.0))),)),
        Stage("production", (Sequence(
            "delivery", (TaskSpec("release", start_timeout=300.0, finish_timeout=3600.0),),
            (Trigger("dev.delivery.finished", {"evaluation.result": "pass"}),)),),
            concurrency=2)))


def test_the_example_has_the_sequences_of_the_original_design():
    sy = parse_shipyard(EXAMPLE.read_text(), str(EXAMPLE))
    assert [t.name for t in sy.sequence("dev", "check").tasks] == ["checknumber"]
    assert [t.name for t in sy.sequence("dev", "enrich").tasks] == [
        "extract-metadata", "geolookup", "author-search", "evaluate"]
    assert sy.followers("dev", "enrich", {"result": "pass"}) == [("production", "delivery")]
    assert sy.followers("dev", "enrich", {"result": "fail"}) == []
    assert sy.followers("production", "delivery", {"result": "fail"}) == [
        ("production", "rollback")]


def test_defaults_and_what_keptn_allows():
    text = BASE.replace("spec.keptn.sh/0.2.3", "spec.keptn.sh/0.2.10").replace(
        "    - name: production\n", "    - name: empty\n    - name: production\n").replace(
        "event: dev.delivery.finished", "event: sh.keptn.event.dev.delivery.finished")
    sy = parse_shipyard(text, "s.yaml")
    assert sy.api_version == "spec.keptn.sh/0.2.10"
    assert sy.stage("empty") == Stage("empty")
    assert sy.stage("dev").concurrency == 1
    assert sy.sequence("dev", "delivery").task("deployment").triggered_after is None
    assert sy.sequence("production", "delivery").triggered_on[0].event == \
        "dev.delivery.finished"
    assert sy.stage("nowhere") is None and sy.sequence("dev", "nothing") is None
    assert sy.sequence("nowhere", "delivery") is None


def test_json_text_is_read_too_with_positions():
    data = shipyard_to_json(base())
    assert parse_shipyard(json.dumps(data), "s.json") == base()
    data["spec"]["stages"][1]["name"] = "Production"
    with pytest.raises(ShipyardError) as err:
        parse_shipyard(json.dumps(data, indent=2, ensure_ascii=False), "s.json")
    text = json.dumps(data, indent=2)
    line = text[:text.index('"Production"')].count("\n") + 1
    assert str(err.value).startswith(f"s.json:{line}:17: spec.stages[1].name: "
                                     "'Production' is not a valid stage name")


def test_json_numbers_and_escapes_read_as_json_reads_them():
    data = shipyard_to_json(base())
    props = {"small": 1e-05, "big": -2.5E+30, "emoji": "\U0001f600", "tab": "a\tb",
             "slash": "a/b", "\U0001f600": [True, None]}
    data["spec"]["stages"][0]["sequences"][0]["tasks"][0]["properties"] = props
    for text in (json.dumps(data), json.dumps(data, indent="\t"),
                 json.dumps(data, ensure_ascii=False).replace("/", "\\/")):
        sy = parse_shipyard(text, "s.json")
        assert sy.sequence("dev", "delivery").task("deployment").properties == props


@pytest.mark.parametrize("old, new, where, message", [
    ("  stages:\n    - name: dev\n      sequences:\n        - name: delivery\n          tasks:",
     "  stages:\n    - name: dev\n      sequences:\n        - name: delivery\n          taks:",
     "10:11: spec.stages[0].sequences[0].taks", "unknown field 'taks' (did you mean 'tasks'?)"),
    ("                match:", "                matches:",
     "23:17: spec.stages[1].sequences[0].triggeredOn[0].selector.matches",
     "unknown field 'matches' (did you mean 'match'?)"),
    ("  name: shop\n", "  name: shop\n  labels: x\n", "5:3: metadata.labels",
     "unknown field 'labels' (known: name)"),
    ("spec.keptn.sh/0.2.3", "spec.keptn.sh/0.1.7", "1:13: apiVersion",
     "'spec.keptn.sh/0.1.7' is not a shipyard version read here: spec.keptn.sh/0.2.x"),
    ("kind: Shipyard", "kind: Shipyards", "2:7: kind", "must be 'Shipyard', not 'Shipyards'"),
    ("metadata:\n  name: shop\n", "metadata: {}\n", "3:11: metadata.name", "is required"),
    ("metadata:\n  name: shop\n", "metadata:\n  name:\n", "4:3: metadata.name",
     "is required (it is null)"),
    ("    - name: dev\n", "    - name: Dev\n", "7:13: spec.stages[0].name",
     "'Dev' is not a valid stage name: a lower-case letter"),
    ("name: shop", "name: shop-", "4:9: metadata.name", "'shop-' is not a valid project name"),
    ("name: production", "name: dev", "16:13: spec.stages[1].name",
     "a second stage named 'dev' in the shipyard (stage names are unique; the first is "
     "spec.stages[0])"),
    ("            - name: test\n", "            - name: deployment\n",
     "14:21: spec.stages[0].sequences[0].tasks[1].name",
     "a second task named 'deployment' in sequence 'delivery'"),
    ("        - name: delivery\n          triggeredOn:",
     "        - name: delivery\n          tasks: []\n        - name: delivery\n"
     "          triggeredOn:", "21:17: spec.stages[1].sequences[1].name",
     "a second sequence named 'delivery' in stage 'production'"),
    ("name: release", "name: re.lease", "26:21: spec.stages[1].sequences[0].tasks[0].name",
     "'re.lease' is not a valid task name"),
    ("triggeredAfter: 10m", "triggeredAfter: 10 minutes",
     "15:31: spec.stages[0].sequences[0].tasks[1].triggeredAfter",
     "'10 minutes' is not a duration such as 90s, 10m or 1h30m"),
    ("triggeredAfter: 10m", "triggeredAfter: -5m",
     "15:31: spec.stages[0].sequences[0].tasks[1].triggeredAfter", "'-5m' must be at least 0"),
    ("triggeredAfter: 10m", "triggeredAfter: 600",
     "15:31: spec.stages[0].sequences[0].tasks[1].triggeredAfter",
     "must be a string, not a number"),
    ("startTimeout: 5m", "startTimeout: 0s",
     "27:29: spec.stages[1].sequences[0].tasks[0].startTimeout", "'0s' must be more than 0"),
    ("              properties:\n                strategy: direct",
     "              properties: [direct]",
     "12:27: spec.stages[0].sequences[0].tasks[0].properties",
     "must be a mapping, not a list"),
    ("strategy: direct", "on: direct", "13:17: spec.stages[0].sequences[0].tasks[0].properties",
     "a key must be a string, not 'on' (quote it)"),
    ("event: dev.delivery.finished", "event: dev.delivry.finished",
     "21:22: spec.stages[1].sequences[0].triggeredOn[0].event",
     "'dev.delivry.finished' names no sequence of this shipyard (stage 'dev', sequence "
     "'delivry')"),
    ("event: dev.delivery.finished", "event: dev.delivery.started",
     "21:22: spec.stages[1].sequences[0].triggeredOn[0].event",
     "'dev.delivery.started' must name a finished sequence: <stage>.<sequence>.finished"),
    ("evaluation.result: pass", "evaluation.result: [pass]",
     "24:38: spec.stages[1].sequences[0].triggeredOn[0].selector.match['evaluation.result']",
     "must be a string, number or boolean, not a list"),
    ("evaluation.result: pass", "evaluation..result: pass",
     "24:19: spec.stages[1].sequences[0].triggeredOn[0].selector.match['evaluation..result']",
     "'evaluation..result' is not a field path such as result or evaluation.result"),
    ("concurrency: 2", "concurrency: 0", "17:20: spec.stages[1].concurrency",
     "must be a whole number from 1 to 10000, not 0"),
    ("concurrency: 2", "concurrency: true", "17:20: spec.stages[1].concurrency",
     "must be a whole number from 1 to 10000, not True"),
    ("kind: Shipyard\n", "kind: Shipyard\nkind: Shipyard\n", "3:1: kind",
     "the key 'kind' appears twice (first at line 2)"),
    ("strategy: direct", "strategy: !!binary aGVsbG8=",
     "13:27: spec.stages[0].sequences[0].tasks[0].properties.strategy",
     "the YAML tag tag:yaml.org,2002:binary is not supported here"),
    ("strategy: direct", "strategy: .inf",
     "13:27: spec.stages[0].sequences[0].tasks[0].properties.strategy",
     "'.inf' is not a finite number"),
    ("strategy: direct", "<<: {a: 1}", "13:17: spec.stages[0].sequences[0].tasks[0].properties",
     "merge keys (<<) are not supported"),
    ("strategy: direct", "strategy: &x [*x]",
     "13:27: spec.stages[0].sequences[0].tasks[0].properties.strategy[0]",
     "an alias of a collection inside itself"),
])
def test_each_error_names_its_line_column_and_field(old, new, where, message):
    assert BASE.count(old) >= 1, old
    with pytest.raises(ShipyardError) as err:
        parse_shipyard(BASE.replace(old, new, 1), "shipyard.yaml")
    assert str(err.value) == f"shipyard.yaml:{where}: {message}" or \
        str(err.value).startswith(f"shipyard.yaml:{where}: {message}"), str(err.value)
    line, col = where.split(":")[:2]
    assert (err.value.line, err.value.col) == (int(line), int(col))


@pytest.mark.parametrize("text, expected", [
    ("", "s.yaml:1:1: the file holds no shipyard (it is empty)"),
    ("# nothing\n", "s.yaml:1:1: the file holds no shipyard (it is empty)"),
    ("- a\n", "s.yaml:1:1: must be a mapping with apiVersion, kind, metadata, spec, not a list"),
    ("a: b\n  c: d\n", "s.yaml:2:4: not valid YAML: mapping values are not allowed"),
    ("kind: [x\nb: c\n", "s.yaml:2:2: not valid YAML: while parsing a flow sequence at line 1"),
    ("a: 1\n---\nb: 2\n", "s.yaml:2:1: not valid YAML:"),
    (BASE.split("  stages:")[0] + "  stages: []\n",
     "s.yaml:6:11: spec.stages: a shipyard needs at least one stage"),
    (BASE.split("  stages:")[0] + "  stages: {dev: 1}\n",
     "s.yaml:6:11: spec.stages: must be a list of stages, not a mapping"),
])
def test_files_that_hold_no_shipyard(text, expected):
    with pytest.raises(ShipyardError) as err:
        parse_shipyard(text, "s.yaml")
    assert str(err.value).startswith(expected), str(err.value)


def test_errors_of_plain_data_name_the_field():
    data = shipyard_to_json(base())
    data["spec"]["stages"][0]["sequences"][0]["tasks"][0]["properties"] = ["x"]
    with pytest.raises(ShipyardError) as err:
        shipyard_from_json(data)
    assert str(err.value) == ("spec.stages[0].sequences[0].tasks[0].properties: must be a "
                              "mapping, not a list")
    data["spec"]["stages"][0]["sequences"][0]["tasks"][0]["properties"] = {"x": {1, 2}}
    with pytest.raises(ShipyardError, match=r"properties\.x: set is not JSON data"):
        shipyard_from_json(data)
    data["spec"]["stages"][0]["sequences"][0]["tasks"][0]["properties"] = {"x": "\ud800"}
    with pytest.raises(ShipyardError, match="lone surrogate at character 1"):
        shipyard_from_json(data)
    with pytest.raises(ShipyardError, match="^must be a mapping with apiVersion"):
        shipyard_from_json("shipyard")


def test_flowmetal_data_is_a_shipyard_too():
    value = read_one('{:apiVersion "spec.keptn.sh/0.2.3" :kind "Shipyard" :metadata '
                     '{:name "shop"} :spec {:stages [{:name "dev" :sequences [{:name "s" '
                     ':tasks [{:name "t" :triggeredAfter "1h30m" :properties {:n 1 '
                     ':ok true}}]}]}]}}', "<test>")
    sy = shipyard_from_value(value)
    assert sy.sequence("dev", "s").tasks == (
        TaskSpec("t", 5400.0, {"n": 1, "ok": True}),)
    bad = read_one('{:apiVersion "spec.keptn.sh/0.2.3" :kind "Shipyard" :metadata '
                   '{:name "shop"} :spec {:stages [{:name "dev" :sequences [{:name "s" '
                   ':tasks [{:name "t" :properties {:re #"x+"}}]}]}]}}', "<test>")
    with pytest.raises(ShipyardError, match="^not shipyard data: .* has no JSON form"):
        shipyard_from_value(bad)
    with pytest.raises(ShipyardError, match=r"spec\.stages\[0\]\.name: is required"):
        shipyard_from_value(read_one(
            '{:apiVersion "spec.keptn.sh/0.2.3" :kind "Shipyard" :metadata {:name "shop"} '
            ':spec {:stages [{:sequences []}]}}', "<test>"))


# -- round trips --------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("0", 0.0), ("90s", 90.0), ("10m", 600.0), ("1h30m", 5400.0), ("1.5h", 5400.0),
    ("300ms", 0.3), ("2h45m10.5s", 9910.5), ("1us", 1e-6), ("1µs", 1e-6), ("+5s", 5.0),
    ("-5s", -5.0), ("1.h", 3600.0), (".5s", 0.5)])
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("text", ["", "5", "s", "1d", "5m3", "1 h", ".s", "1e3s", "1h-5m",
                                  "9999999999h"])
def test_what_is_no_go_duration(text):
    with pytest.raises(ValueError):
        parse_go_duration(text)


@given(st.floats(0, 1e9, allow_nan=False) | st.integers(0, 10 ** 9).map(float))
def test_duration_text_reads_back_exactly(seconds):
    assert parse_go_duration(go_duration_text(seconds)) == seconds


NAMES = st.from_regex(r"[a-z]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
SCALARS = st.none() | st.booleans() | st.integers(-2 ** 60, 2 ** 60) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) |
                    st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
DURATIONS = st.none() | st.floats(0, 1e7, allow_nan=False)
POSITIVE = st.none() | st.floats(0.001, 1e7)


@st.composite
def shipyards_(draw) -> Shipyard:
    tasks = st.builds(TaskSpec, NAMES, DURATIONS,
                      st.dictionaries(st.text(max_size=5), JSON, max_size=3),
                      POSITIVE, POSITIVE)
    sequences = st.builds(Sequence, NAMES, st.lists(tasks, max_size=3, unique_by=lambda t:
                                                    t.name).map(tuple))
    stages = draw(st.lists(st.builds(Stage, NAMES, st.lists(
        sequences, max_size=3, unique_by=lambda s: s.name).map(tuple),
        st.integers(1, 10_000)), min_size=1, max_size=3, unique_by=lambda s: s.name))
    finished = [f"{st_.name}.{seq.name}.finished" for st_ in stages for seq in st_.sequences]
    if finished:
        triggers = st.builds(Trigger, st.sampled_from(finished), st.dictionaries(
            st.lists(NAMES, min_size=1, max_size=3).map(".".join), st.text(max_size=5),
            max_size=2))
        stages = [Stage(s.name, tuple(Sequence(q.name, q.tasks, tuple(
            draw(st.lists(triggers, max_size=2)))) for q in s.sequences), s.concurrency)
            for s in stages]
    return Shipyard(draw(NAMES), f"spec.keptn.sh/0.2.{draw(st.integers(0, 99))}",
                    tuple(stages))


@settings(max_examples=150, deadline=None)
@given(shipyards_())
def test_json_yaml_and_json_text_round_trips(sy):
    data = shipyard_to_json(sy)
    assert shipyard_from_json(data) == sy
    assert shipyard_from_json(json.loads(json.dumps(data))) == sy
    assert parse_shipyard(shipyard_yaml(sy), "s.yaml") == sy
    assert parse_shipyard(json.dumps(data), "s.json") == sy


def test_show_prints_keptns_shape_with_defaults_left_out():
    assert yaml.safe_load(shipyard_yaml(base())) == {
        "apiVersion": "spec.keptn.sh/0.2.3", "kind": "Shipyard", "metadata": {"name": "shop"},
        "spec": {"stages": [
            {"name": "dev", "sequences": [{"name": "delivery", "tasks": [
                {"name": "deployment", "properties": {"strategy": "direct"}},
                {"name": "test", "triggeredAfter": "10m"}]}]},
            {"name": "production", "concurrency": 2, "sequences": [{
                "name": "delivery",
                "triggeredOn": [{"event": "dev.delivery.finished",
                                 "selector": {"match": {"evaluation.result": "pass"}}}],
                "tasks": [{"name": "release", "startTimeout": "5m",
                           "finishTimeout": "1h"}]}]}]}}


# -- which sequences a finished event starts ---------------------------------------------

FOLLOWERS = """\
apiVersion: spec.keptn.sh/0.2.3
kind: Shipyard
metadata: {name: shop}
spec:
  stages:
    - name: dev
      sequences:
        - {name: delivery, tasks: [{name: deployment}]}
    - name: staging
      sequences:
        - name: delivery
          triggeredOn: [{event: dev.delivery.finished}]
          tasks: [{name: deployment}]
        - name: rollback
          triggeredOn:
            - {event: dev.delivery.finished, selector: {match: {result: fail}}}
            - {event: staging.delivery.finished, selector: {match: {result: fail}}}
          tasks: [{name: rollback}]
        - name: strict
          triggeredOn:
            - event: dev.delivery.finished
              selector:
                match: {evaluation.result: pass, evaluation.score: 100, approved: true}
          tasks: [{name: release}]
"""


@pytest.mark.parametrize("stage, sequence, data, expected", [
    ("dev", "delivery", {"result": "pass"}, [("staging", "delivery")]),
    ("dev", "delivery", {"result": "fail"}, [("staging", "delivery"), ("staging", "rollback")]),
    ("dev", "delivery", {}, [("staging", "delivery")]),
    ("staging", "delivery", {"result": "fail"}, [("staging", "rollback")]),
    ("staging", "delivery", {"result": "pass"}, []),
    ("staging", "rollback", {"result": "fail"}, []),
    ("dev", "delivery", {"evaluation": {"result": "pass", "score": 100}, "approved": True},
     [("staging", "delivery"), ("staging", "strict")]),
    ("dev", "delivery", {"evaluation": {"result": "pass", "score": 99}, "approved": True},
     [("staging", "delivery")]),
    ("dev", "delivery", {"evaluation.result": "pass", "evaluation.score": "100",
                         "approved": "true"}, [("staging", "delivery"), ("staging", "strict")]),
    ("dev", "delivery", {"evaluation": "pass", "approved": True}, [("staging", "delivery")]),
    ("nowhere", "delivery", {"result": "fail"}, []),
])
def test_followers_are_the_sequences_whose_trigger_matches(stage, sequence, data, expected):
    sy = parse_shipyard(FOLLOWERS, "f.yaml")
    assert sy.followers(stage, sequence, data) == expected


# -- versions in a store --------------------------------------------------------------------

def changed(sy: Shipyard, n: int) -> Shipyard:
    """``sy`` with its first task's properties saying ``n``."""
    stage = sy.stages[0]
    seq = stage.sequences[0]
    task = TaskSpec(seq.tasks[0].name, properties={"n": n})
    return Shipyard(sy.name, sy.api_version, (
        Stage(stage.name, (Sequence(seq.name, (task, *seq.tasks[1:]), seq.triggered_on),
                           *stage.sequences[1:]), stage.concurrency), *sy.stages[1:]))


def test_versions_are_kept_and_readable(store):
    sy = base()
    assert shipyards.projects(store) == []
    assert shipyards.current_shipyard(store, "shop") is None
    assert shipyards.apply_shipyard(store, sy) == 1
    assert shipyards.apply_shipyard(store, sy) == 1
    assert shipyards.apply_shipyard(store, changed(sy, 2)) == 2
    assert shipyards.apply_shipyard(store, sy) == 3  # back to the first: a new version
    assert shipyards.apply_shipyard(store, sy, project="other") == 1
    assert shipyards.current_shipyard(store, "shop") == (3, sy)
    assert shipyards.shipyard_version(store, "shop", 1) == sy
    assert shipyards.shipyard_version(store, "shop", 2) == changed(sy, 2)
    assert shipyards.shipyard_version(store, "shop", 4) is None
    assert shipyards.shipyard_version(store, "shop", 0) is None
    assert shipyards.shipyard_version(store, "nobody", 1) is None
    assert shipyards.versions(store, "shop") == 3
    assert shipyards.projects(store) == ["other", "shop"]
    with pytest.raises(ValueError, match="'Shop' is not a valid project name"):
        shipyards.apply_shipyard(store, sy, project="Shop")


def test_concurrent_applies_each_get_a_version(store):
    sy, count = base(), 12
    got: list[int] = []

    def apply(n: int) -> None:
        got.append(shipyards.apply_shipyard(store, changed(sy, n)))
    threads = [threading.Thread(target=apply, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, count + 1))
    assert applied_numbers(store, "shop", count) == set(range(count))


def applied_numbers(store, project: str, count: int) -> set[int]:
    """The numbers ``changed`` gave the project's versions 1 to ``count``."""
    return {shipyards.shipyard_version(store, project, v).sequence("dev", "delivery")
            .tasks[0].properties["n"] for v in range(1, count + 1)}


def fm(location: str, *args: str, **kw) -> subprocess.CompletedProcess:
    """``python -m flowmetal --store LOCATION ARGS``."""
    return subprocess.run([sys.executable, "-m", "flowmetal", "--store", location, *args],
                          env={**env(), **kw.pop("extra_env", {})}, capture_output=True,
                          text=True, timeout=TIMEOUT, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_applies_from_processes(kind, tmp_path):
    store, drop = make_store(kind, tmp_path)
    try:
        files = []
        for n in range(5):
            path = tmp_path / f"s{n}.yaml"
            path.write_text(shipyard_yaml(changed(base(), n)))
            files.append(path)
        procs = [subprocess.Popen([sys.executable, "-m", "flowmetal", "--store",
                                   store.location, "shipyard", "apply", str(f)], env=env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for f in files]
        outs = [p.communicate(timeout=TIMEOUT) for p in procs]
        assert all(p.returncode == 0 for p in procs), outs
        versions = sorted(int(out.split("version ")[1].split()[0]) for out, _ in outs)
        assert versions == [1, 2, 3, 4, 5]
        assert applied_numbers(store, "shop", 5) == set(range(5))
    finally:
        drop()


# -- the command line -------------------------------------------------------------------

def test_the_command_line(tmp_path):
    where = str(tmp_path / "store")
    good = tmp_path / "shipyard.yaml"
    good.write_text(BASE)
    r = fm(where, "shipyard", "apply", str(good))
    assert (r.returncode, r.stdout, r.stderr) == (0, "project shop: shipyard version 1\n", "")
    assert fm(where, "shipyard", "apply", str(good)).stdout == \
        "project shop: shipyard version 1 (unchanged)\n"
    second = tmp_path / "second.yaml"
    second.write_text(shipyard_yaml(changed(base(), 7)))
    assert fm(where, "shipyard", "apply", str(second)).stdout == \
        "project shop: shipyard version 2\n"
    assert fm(where, "shipyard", "apply", str(good), "--project", "other").stdout == \
        "project other: shipyard version 1\n"
    r = fm(where, "shipyard", "list")
    assert r.stdout == ("PROJECT  VERSION  STAGES\n"
                        "other    1        dev, production\n"
                        "shop     2        dev, production\n")
    shown = fm(where, "shipyard", "show", "--project", "shop", "--version", "1")
    assert parse_shipyard(shown.stdout, "shown") == base()
    latest = fm(where, "shipyard", "show", "--project", "shop")
    assert parse_shipyard(latest.stdout, "shown") == changed(base(), 7)
    r = fm(where, "shipyard", "show")
    assert r.returncode == 2 and "give --project (the store has other, shop)" in r.stderr
    r = fm(where, "shipyard", "show", "--project", "shop", "--version", "9")
    assert (r.returncode, r.stderr) == (
        2, "flowmetal: project shop has no version 9 of its shipyard (versions 1 to 2)\n")
    r = fm(where, "shipyard", "show", "--project", "nobody")
    assert r.returncode == 2 and "project nobody has no shipyard" in r.stderr


def test_the_command_line_reports_bad_files_without_tracebacks(tmp_path):
    where = str(tmp_path / "store")
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("name: release", "name: Release"))
    r = fm(where, "shipyard", "apply", str(bad))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == (f"{bad}:26:21: spec.stages[1].sequences[0].tasks[0].name: "
                        "'Release' is not a valid task name: a lower-case letter, then "
                        "lower-case letters, digits and hyphens, not ending in a hyphen, at "
                        "most 63 characters\n")
    bad.write_bytes(BASE.encode().replace(b"shop", b"sh\xffop"))
    r = fm(where, "shipyard", "apply", str(bad))
    assert (r.returncode, r.stderr) == (1, f"{bad}:4:11: not UTF-8 text (byte 0xff)\n")
    r = fm(where, "shipyard", "apply", str(tmp_path / "missing.yaml"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    good = tmp_path / "good.yaml"
    good.write_text(BASE)
    r = fm(where, "shipyard", "apply", str(good), "--project", "Bad_Name")
    assert r.returncode == 2 and "'Bad_Name' is not a valid project name" in r.stderr
    assert "Traceback" not in r.stderr
    fm(where, "store", "init")
    assert fm(where, "shipyard", "list").stdout == \
        "no shipyards (flowmetal shipyard apply FILE)\n"


# -- the HTTP endpoints -----------------------------------------------------------------

@pytest.fixture(scope="module", params=KINDS)
def plane(request, tmp_path_factory):
    """(server, write token, read token) over a fresh store of each kind."""
    store, drop = make_store(request.param, tmp_path_factory.mktemp("shipyards"))
    served = Served(store).start()
    write, _ = store.token_create("tests", "write")
    read, _ = store.token_create("reader", "read")
    yield served, write, read
    served.stop()
    drop()


def call(served, token, method, path, **kw) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}", **kw.pop("headers", {})}
    return requests.request(method, served.url(path), headers=headers, timeout=30, **kw)


def test_put_and_get_a_shipyard(plane):
    served, write, read = plane
    path = "/api/v1/project/web/shipyard"
    r = call(served, write, "PUT", path, data=BASE, headers={"Content-Type":
                                                              "application/yaml"})
    assert (r.status_code, r.json()) == (200, {"project": "web", "version": 1})
    r = call(served, write, "PUT", path, json=shipyard_to_json(base()))
    assert r.json() == {"project": "web", "version": 1}  # the same shipyard, as JSON
    r = call(served, write, "PUT", path, json=shipyard_to_json(changed(base(), 3)))
    assert r.json() == {"project": "web", "version": 2}
    got = call(served, read, "GET", path)
    assert got.status_code == 200
    body = got.json()
    assert (body["project"], body["version"], body["versions"]) == ("web", 2, 2)
    assert shipyard_from_json(body["shipyard"]) == changed(base(), 3)
    first = call(served, read, "GET", path, params={"version": 1},
                 headers={"Accept": "application/yaml"})
    assert first.headers["Content-Type"].startswith("application/yaml")
    assert parse_shipyard(first.text, "got") == base()
    assert shipyards.current_shipyard(served.store, "web") == (2, changed(base(), 3))


def test_bad_shipyards_and_requests_are_problems(plane):
    served, write, read = plane
    path = "/api/v1/project/errors/shipyard"
    r = call(served, write, "PUT", path, data=BASE.replace("10m", "ten minutes"))
    assert r.status_code == 400
    assert r.headers["Content-Type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["detail"] == ("<request>:15:31: spec.stages[0].sequences[0].tasks[1]."
                                 "triggeredAfter: 'ten minutes' is not a duration such as "
                                 "90s, 10m or 1h30m")
    assert (problem["line"], problem["column"], problem["field"]) == (
        15, 31, "spec.stages[0].sequences[0].tasks[1].triggeredAfter")
    r = call(served, write, "PUT", path, data=b"\xff\xfe")
    assert r.status_code == 400 and "not UTF-8" in r.json()["detail"]
    r = call(served, write, "PUT", "/api/v1/project/Bad_Name/shipyard", data=BASE)
    assert r.status_code == 400 and "not a valid project name" in r.json()["detail"]
    assert call(served, read, "PUT", path, data=BASE).status_code == 403
    assert requests.put(served.url(path), data=BASE, timeout=30).status_code == 401
    r = call(served, read, "GET", path)
    assert (r.status_code, r.json()["detail"]) == (404, "project errors has no shipyard")
    call(served, write, "PUT", path, data=BASE)
    r = call(served, read, "GET", path, params={"version": 5})
    assert (r.status_code, r.json()["detail"]) == (
        404, "project errors has no version 5 of its shipyard (versions 1 to 1)")
    for bad in ("0", "-1", "x", "²"):
        assert call(served, read, "GET", path, params={"version": bad}).status_code == 400


def test_the_command_line_through_a_server(plane, tmp_path):
    served, write, read = plane
    good = tmp_path / "s.yaml"
    good.write_text(shipyard_yaml(changed(base(), 11)))
    r = fm(served.url(), "shipyard", "apply", str(good), "--project", "remote",
           extra_env={"FLOWMETAL_TOKEN": write})
    assert (r.returncode, r.stdout) == (0, "project remote: shipyard version 1\n"), r.stderr
    r = fm(served.url(), "shipyard", "show", "--project", "remote",
           extra_env={"FLOWMETAL_TOKEN": read})
    assert parse_shipyard(r.stdout, "shown") == changed(base(), 11)
    r = fm(served.url(), "shipyard", "apply", str(good), "--project", "remote",
           extra_env={"FLOWMETAL_TOKEN": read})
    assert r.returncode == 2 and "refused the token" in r.stderr


def test_concurrent_applies_through_a_server(plane):
    served, write, _ = plane
    remote = RemoteStore(served.url(), write)
    got: list[int] = []

    def apply(n: int) -> None:
        got.append(shipyards.apply_shipyard(remote, changed(base(), n), "many"))
    threads = [threading.Thread(target=apply, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 9))
    assert applied_numbers(served.store, "many", 8) == set(range(8))


def test_a_server_shares_only_the_shipyards_settings(plane):
    served, write, _ = plane
    remote = RemoteStore(served.url(), write)
    for key in ("public-url", "start-key:x", ""):
        with pytest.raises(Exception, match="is not used through a server"):
            remote.setting(key)
        with pytest.raises(Exception, match="is not used through a server"):
            remote.set_setting(key, "http://elsewhere")


def test_a_selector_value_that_looks_like_an_exponent_stays_text_in_yaml():
    # Plain 0E0 reads as a number (YAML 1.2), so the YAML written must quote it.
    sy = parse_shipyard(json.dumps({
        "apiVersion": "spec.keptn.sh/0.2.0", "kind": "Shipyard", "metadata": {"name": "a"},
        "spec": {"stages": [{"name": "a", "sequences": [
            {"name": "a", "tasks": []},
            {"name": "b", "tasks": [], "triggeredOn": [
                {"event": "a.a.finished", "selector": {"match": {"a": "0E0"}}}]}]}]}}),
        "s.json")
    again = parse_shipyard(shipyard_yaml(sy), "s.yaml")
    assert again == sy
    assert again.stages[0].sequences[1].triggered_on[0].match == {"a": "0E0"}
