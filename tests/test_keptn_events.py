"""Keptn's CloudEvents 1.0 envelopes: reading, writing, making new ones, the event types of
sequences and tasks, and the errors of what is not one."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowmetal.sequences.events import (
    EventError,
    EventType,
    KeptnEvent,
    Phase,
    event_to_json,
    new_event,
    parse_event,
    parse_type,
    sequence_type,
    task_type,
)

FINISHED = {
    "specversion": "1.0", "id": "c4d3a1b2-0000-4000-8000-000000000001",
    "source": "geolookup-worker", "type": "sh.keptn.event.geolookup.finished",
    "time": "2024-05-01T12:00:00.000Z", "shkeptncontext": "ctx-1",
    "triggeredid": "c4d3a1b2-0000-4000-8000-000000000000",
    "datacontenttype": "application/json", "shkeptnspecversion": "0.2.4",
    "data": {"project": "numbers", "stage": "dev", "service": "api", "labels": {"a": "b"},
             "result": "pass", "status": "succeeded", "message": "found",
             "geolookup": {"city": "Graz"}},
}


def test_an_envelope_is_read_with_its_other_attributes_kept():
    ev = parse_event(FINISHED)
    assert ev == KeptnEvent(
        "sh.keptn.event.geolookup.finished", FINISHED["id"], "geolookup-worker", "1.0",
        "2024-05-01T12:00:00.000Z", "ctx-1", FINISHED["triggeredid"], FINISHED["data"],
        {"datacontenttype": "application/json", "shkeptnspecversion": "0.2.4"})
    assert ev.event_type == EventType(Phase.FINISHED, task="geolookup")
    assert event_to_json(ev) == FINISHED


def test_optional_attributes_may_be_absent():
    ev = parse_event({"specversion": "1.0", "id": "1", "source": "s",
                      "type": "sh.keptn.event.dev.delivery.triggered", "time": None})
    assert (ev.time, ev.shkeptncontext, ev.triggeredid, ev.data, ev.extra) == (
        None, None, None, {}, {})
    assert event_to_json(ev) == {"specversion": "1.0", "id": "1", "source": "s",
                                 "type": "sh.keptn.event.dev.delivery.triggered", "data": {}}


@pytest.mark.parametrize("change, message", [
    ({"id": None}, "id: is required"),
    ({"source": None}, "source: is required"),
    ({"type": None}, "type: is required"),
    ({"specversion": None}, "specversion: is required"),
    ({"id": ""}, "id: must be a non-empty string, not ''"),
    ({"id": 7}, "id: must be a non-empty string, not 7"),
    ({"source": ["x"]}, "source: must be a non-empty string, not ['x']"),
    ({"id": "x" * 5000}, "id: longer than 4096 characters"),
    ({"specversion": "0.3"}, "specversion: must be '1.0', not '0.3'"),
    ({"type": "com.example.finished"},
     "type: 'com.example.finished' is not a Keptn event type (sh.keptn.event....)"),
    ({"type": "sh.keptn.event.geolookup.done"},
     "type: 'sh.keptn.event.geolookup.done' ends in 'done', not a phase"),
    ({"time": "yesterday"}, "time: 'yesterday' is not an RFC 3339 time"),
    ({"time": "2024-02-30T12:00:00Z"}, "time: '2024-02-30T12:00:00Z' is not an RFC 3339"),
    ({"time": "2024-05-01T12:00:00"}, "time: '2024-05-01T12:00:00' is not an RFC 3339"),
    ({"shkeptncontext": 12}, "shkeptncontext: must be a non-empty string, not 12"),
    ({"triggeredid": False}, "triggeredid: must be a non-empty string, not False"),
    ({"data": [1]}, "data: must be a JSON object, not list"),
    ({"data": "text"}, "data: must be a JSON object, not str"),
    ({"Subject": "x"}, "'Subject': not a CloudEvents attribute name (lower-case letters"),
    ({"my-ext": "x"}, "'my-ext': not a CloudEvents attribute name"),
    ({"ext": {"a": 1}}, "ext: an attribute is a string, number or boolean"),
])
def test_what_is_not_an_event_is_an_error_naming_the_field(change, message):
    obj = {**FINISHED, **change}
    with pytest.raises(EventError) as err:
        parse_event(obj)
    assert str(err.value).startswith(message), str(err.value)


@pytest.mark.parametrize("value", [None, [], "event", 3])
def test_an_event_is_an_object(value):
    with pytest.raises(EventError, match="^an event is a JSON object"):
        parse_event(value)


@pytest.mark.parametrize("text, expected", [
    ("sh.keptn.event.dev.delivery.triggered",
     EventType(Phase.TRIGGERED, stage="dev", sequence="delivery")),
    ("sh.keptn.event.production.rollback.finished",
     EventType(Phase.FINISHED, stage="production", sequence="rollback")),
    ("sh.keptn.event.dev.delivery.started",
     EventType(Phase.STARTED, stage="dev", sequence="delivery")),
    ("sh.keptn.event.deployment.triggered", EventType(Phase.TRIGGERED, task="deployment")),
    ("sh.keptn.event.deployment.started", EventType(Phase.STARTED, task="deployment")),
    ("sh.keptn.event.deployment.finished", EventType(Phase.FINISHED, task="deployment")),
    # three parts either way: the phase decides
    ("sh.keptn.event.deployment.status.changed",
     EventType(Phase.STATUS_CHANGED, task="deployment")),
    ("sh.keptn.event.status.triggered", EventType(Phase.TRIGGERED, task="status")),
    ("sh.keptn.event.dev.status.finished",
     EventType(Phase.FINISHED, stage="dev", sequence="status")),
])
def test_event_types(text, expected):
    parsed = parse_type(text)
    assert parsed == expected
    assert str(parsed) == text
    assert parsed.is_sequence == (expected.task is None)


@pytest.mark.parametrize("text, message", [
    ("sh.keptn.event.a.b.c.finished", "must be sh.keptn.event.<task>.<phase> or"),
    ("sh.keptn.event.dev.delivery.status.changed", "must be sh.keptn.event.<task>.<phase>"),
    ("sh.keptn.event.finished", "names no task or sequence before its phase"),
    ("sh.keptn.event.a..finished", "names no task or sequence before its phase"),
    ("sh.keptn.event..triggered", "names no task or sequence before its phase"),
    ("sh.keptn.event.x.y", "ends in 'y', not a phase (triggered, started, status.changed"),
    ("sh.keptn.event.", "ends in '', not a phase"),
    ("keptn.deployment.triggered", "is not a Keptn event type"),
])
def test_what_is_no_event_type(text, message):
    with pytest.raises(EventError, match=re.escape(message)):
        parse_type(text)


def test_types_are_made_from_their_parts():
    assert task_type("geolookup", Phase.STATUS_CHANGED) == \
        "sh.keptn.event.geolookup.status.changed"
    assert task_type("geolookup", "triggered") == "sh.keptn.event.geolookup.triggered"
    assert sequence_type("dev", "enrich", Phase.FINISHED) == "sh.keptn.event.dev.enrich.finished"
    with pytest.raises(ValueError):
        task_type("geolookup", "done")


def test_new_events():
    before = datetime.now(UTC)
    ev = new_event("sh.keptn.event.dev.enrich.triggered", {"project": "numbers"})
    assert uuid.UUID(ev.id).version == 4
    assert uuid.UUID(ev.shkeptncontext).version == 4
    assert (ev.source, ev.specversion, ev.triggeredid) == ("flowmetal", "1.0", None)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ev.time)
    at = datetime.fromisoformat(ev.time)
    assert before - timedelta(seconds=1) <= at <= datetime.now(UTC) + timedelta(seconds=1)
    other = new_event("sh.keptn.event.dev.enrich.triggered", {})
    assert other.id != ev.id and other.shkeptncontext != ev.shkeptncontext
    answer = new_event("sh.keptn.event.geolookup.started", {"status": "succeeded"},
                       shkeptncontext=ev.shkeptncontext, triggeredid=ev.id,
                       source="worker-1")
    assert (answer.shkeptncontext, answer.triggeredid, answer.source) == (
        ev.shkeptncontext, ev.id, "worker-1")
    assert parse_event(json.loads(json.dumps(event_to_json(answer)))) == answer
    with pytest.raises(EventError, match="is not a Keptn event type"):
        new_event("dev.enrich.triggered", {})
    with pytest.raises(EventError, match="data: must be a JSON object, not list"):
        new_event("sh.keptn.event.dev.enrich.triggered", [])


NAMES = st.from_regex(r"[a-z][a-z0-9-]{0,10}", fullmatch=True)
TEXT = st.text(min_size=1, max_size=30)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner,
                                                                 max_size=3), max_leaves=10)
TYPES = st.one_of(
    st.builds(task_type, NAMES, st.sampled_from(list(Phase))),
    st.builds(sequence_type, NAMES, NAMES,
              st.sampled_from([Phase.TRIGGERED, Phase.STARTED, Phase.FINISHED])))
TIMES = st.datetimes(timezones=st.just(UTC)).map(
    lambda t: t.isoformat(timespec="milliseconds").replace("+00:00", "Z"))
EXTRAS = st.dictionaries(st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True).filter(
    lambda n: n not in ("type", "id", "source", "specversion", "time", "shkeptncontext",
                        "triggeredid", "data")),
    st.text() | st.integers() | st.booleans(), max_size=3)


@given(st.builds(KeptnEvent, TYPES, TEXT, TEXT, st.just("1.0"), st.none() | TIMES,
                 st.none() | TEXT, st.none() | TEXT, st.dictionaries(st.text(), JSON,
                                                                   max_size=4), EXTRAS))
def test_events_round_trip_through_json(ev):
    data = event_to_json(ev)
    assert parse_event(data) == ev
    assert parse_event(json.loads(json.dumps(data))) == ev
