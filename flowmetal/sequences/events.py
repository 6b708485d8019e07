"""Keptn's events: CloudEvents 1.0 envelopes (JSON) whose type is
``sh.keptn.event.<stage>.<sequence>.<phase>`` for a sequence or
``sh.keptn.event.<task>.<phase>`` for a task.

The envelope's ``shkeptncontext`` groups the events of one sequence run, ``triggeredid``
names the ``.triggered`` event an event answers, and ``data`` holds Keptn's fields
(``project``, ``stage``, ``service``, ``labels``, ``result``, ``status``, ``message``,
and a task's output under its name).  Other CloudEvents attributes (``datacontenttype``,
``subject``, ``shkeptnspecversion`` ...) are kept as they came, in ``extra``.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

PREFIX = "sh.keptn.event."
SPEC_VERSION = "1.0"
SOURCE = "flowmetal"
ENVELOPE = ("type", "id", "source", "specversion", "time", "shkeptncontext",
            "triggeredid", "data")
# CloudEvents: attribute names are lower-case ASCII letters and digits.
ATTRIBUTE = re.compile(r"[a-z0-9]{1,64}")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
FIELD_MAX = 4096  # characters of an id, a source, a context


class EventError(ValueError):
    """Data that is not a Keptn event; the message names the field and what it must be."""


class Phase(StrEnum):
    """Where a sequence or a task is: the last part(s) of an event's type."""

    TRIGGERED = "triggered"
    STARTED = "started"
    STATUS_CHANGED = "status.changed"
    FINISHED = "finished"


@dataclass(frozen=True)
class EventType:
    """A parsed event type: a sequence's (``stage`` and ``sequence``) or a task's."""

    phase: Phase
    task: str | None = None
    stage: str | None = None
    sequence: str | None = None

    @property
    def is_sequence(self) -> bool:
        """Whether it is a sequence's event (else a task's)."""
        return self.task is None

    def __str__(self) -> str:
        names = self.task if self.task is not None else f"{self.stage}.{self.sequence}"
        return f"{PREFIX}{names}.{self.phase}"


def parse_type(text: str) -> EventType:
    """The parts of an event type (EventError if it is not a Keptn sequence or task
    event).  ``a.b.triggered`` is stage ``a``'s sequence ``b``; ``a.triggered`` is task
    ``a``; ``a.status.changed`` is task ``a`` (``status.changed`` is one phase)."""
    if not isinstance(text, str) or not text.startswith(PREFIX):
        raise EventError(f"type: {text!r} is not a Keptn event type ({PREFIX}...)")
    rest = text[len(PREFIX):]
    suffix = "." + Phase.STATUS_CHANGED
    if rest.endswith(suffix):
        names, phase = rest[:-len(suffix)], Phase.STATUS_CHANGED
    else:
        names, _, last = rest.rpartition(".")
        try:
            phase = Phase(last)
        except ValueError:
            raise EventError(f"type: {text!r} ends in {last!r}, not a phase (triggered, "
                             "started, status.changed, finished)") from None
    parts = names.split(".")
    if not all(parts):
        raise EventError(f"type: {text!r} names no task or sequence before its phase")
    if len(parts) == 1:
        return EventType(phase, task=parts[0])
    if len(parts) == 2 and phase != Phase.STATUS_CHANGED:
        return EventType(phase, stage=parts[0], sequence=parts[1])
    raise EventError(f"type: {text!r} must be {PREFIX}<task>.<phase> or "
                     f"{PREFIX}<stage>.<sequence>.<phase>")


def task_type(task: str, phase: Phase | str) -> str:
    """``sh.keptn.event.<task>.<phase>``."""
    return str(EventType(Phase(phase), task=task))


def sequence_type(stage: str, sequence: str, phase: Phase | str) -> str:
    """``sh.keptn.event.<stage>.<sequence>.<phase>``."""
    return str(EventType(Phase(phase), stage=stage, sequence=sequence))


@dataclass(frozen=True)
class KeptnEvent:
    """A Keptn CloudEvent (``extra``: its other attributes, as they came)."""

    type: str
    id: str
    source: str
    specversion: str
    time: str | None
    shkeptncontext: str | None
    triggeredid: str | None
    data: dict
    extra: dict = field(default_factory=dict)

    @property
    def event_type(self) -> EventType:
        """The parts of ``type``."""
        return parse_type(self.type)


def _text(obj: dict, name: str, required: bool) -> str | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise EventError(f"{name}: is required")
        return None
    if not isinstance(value, str) or not value:
        raise EventError(f"{name}: must be a non-empty string, not {value!r:.80}")
    if len(value) > FIELD_MAX:
        raise EventError(f"{name}: longer than {FIELD_MAX} characters")
    return value


def parse_event(obj: Any) -> KeptnEvent:
    """The Keptn event of a CloudEvent's JSON object (EventError naming the field that
    is missing or wrong)."""
    if not isinstance(obj, dict):
        raise EventError(f"an event is a JSON object, not {type(obj).__name__}")
    specversion = _text(obj, "specversion", True)
    if specversion != SPEC_VERSION:
        raise EventError(f"specversion: must be {SPEC_VERSION!r}, not {specversion!r}")
    type_ = _text(obj, "type", True)
    parse_type(type_)
    time = _text(obj, "time", False)
    if time is not None and not _is_time(time):
        raise EventError(f"time: {time!r} is not an RFC 3339 time "
                         "(2024-05-01T12:00:00.000Z)")
    data = obj.get("data")
    if data is None:
        data = {}
    elif not isinstance(data, dict):
        raise EventError(f"data: must be a JSON object, not {type(data).__name__}")
    extra = {}
    for name, value in obj.items():
        if name in ENVELOPE or value is None:
            continue
        if not isinstance(name, str) or not ATTRIBUTE.fullmatch(name):
            raise EventError(f"{name!r:.80}: not a CloudEvents attribute name (lower-case "
                             "letters and digits)")
        if isinstance(value, (dict, list)):
            raise EventError(f"{name}: an attribute is a string, number or boolean")
        extra[name] = value
    return KeptnEvent(type_, _text(obj, "id", True), _text(obj, "source", True),
                      specversion, time, _text(obj, "shkeptncontext", False),
                      _text(obj, "triggeredid", False), data, extra)


def _is_time(text: str) -> bool:
    if not RFC3339.fullmatch(text):
        return False
    try:
        datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    except ValueError:
        return False
    return True


def event_to_json(ev: KeptnEvent) -> dict:
    """The event as a CloudEvent's JSON object (absent attributes left out)."""
    out: dict[str, Any] = {"specversion": ev.specversion, "id": ev.id,
                           "source": ev.source, "type": ev.type}
    for name in ("time", "shkeptncontext", "triggeredid"):
        value = getattr(ev, name)
        if value is not None:
            out[name] = value
    out.update(ev.extra)
    out["data"] = ev.data
    return out


def now_text() -> str:
    """The current time in RFC 3339, UTC, to the millisecond."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def new_event(type: str, data: dict, *, shkeptncontext: str | None = None,
              triggeredid: str | None = None, source: str = SOURCE) -> KeptnEvent:
    """A new event: a fresh id, the time now, a fresh context unless given one."""
    parse_type(type)
    if not isinstance(data, dict):
        raise EventError(f"data: must be a JSON object, not {data.__class__.__name__}")
    return KeptnEvent(type, str(uuid.uuid4()), source, SPEC_VERSION, now_text(),
                      shkeptncontext or str(uuid.uuid4()), triggeredid, data,
                      {"datacontenttype": "application/json"})
