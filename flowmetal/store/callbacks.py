"""Callbacks: capability URLs a task makes and waits on.

``(callback)`` is answered at once, in the commit of its step, with a URL holding a fresh
token of 256 random bits; the store keeps the callback under the token's SHA-256 only,
bound to the task.  A request that arrives there (``deliver``) goes straight to the task
if it waits on that callback with ``(await cb)``, and otherwise waits in the callback's
record for the next ``await``.  A callback takes one request unless made with ``:multi
true``, and none after it expires or its task ends (410 from then on); its record goes
with its task (``flowmetal rm``, ``prune``).  The URL is the
store's ``public-url`` setting (``flowmetal serve --public-url``) with
``/callbacks/<token>`` after it.
"""

from __future__ import annotations

from enum import Enum

from ..hashing import sha256
from ..runtime.records import Answer, CallbackRecord, RecordError, Status, TaskRecord
from ..values import Map, kw
from .base import Request, StepCommit
from .engine import Unit, answer_value, deliver, event, fail_request, wait

PUBLIC_URL = "public-url"   # the setting callbacks' URLs start with
MAX_PENDING = 1000          # requests a multi-use callback keeps for its task


class Delivery(Enum):
    """What became of a request to a callback URL."""

    DELIVERED = 202
    UNKNOWN = 404
    GONE = 410               # used up, expired, or its task has ended
    TOO_LARGE = 413
    TOO_MANY = 429           # its task has not taken the requests waiting for it


def digest(token: str) -> str:
    """The key a callback is kept under: the SHA-256 of its token, in hex."""
    return sha256(token.encode()).hexdigest()


def callback_path(token: str) -> str:
    """The path of a callback's URL."""
    return f"/callbacks/{token}"


def handle_callback(unit: Unit, rec: TaskRecord, request_id: int, req: Request,
                    step: StepCommit, now: float) -> None:
    """Make a callback for the task (answered at once with ``{:url :token :id
    :expires}``), or raise a clear error when the store has no public URL."""
    base = unit.t.setting_get(PUBLIC_URL)
    if not base:
        fail_request(unit, rec, request_id, "callback-error",
                     "callback: this store has no public URL for callbacks; serve it with "
                     "`flowmetal serve --public-url URL`", now)
        return
    spec = req.spec or {}
    lifetime = spec.get("timeout")
    import secrets  # (here: it loads OpenSSL, see hashing)

    token = secrets.token_urlsafe(32)
    cb = CallbackRecord(rec.id, request_id, bool(spec.get("multi")),
                        now + (rec.limits.wait if lifetime is None else lifetime),
                        spec.get("secret"), max_body=rec.limits.response_body)
    unit.t.callback_put(digest(token), rec.id, cb.to_bytes())
    answer_value(unit, rec, request_id, True, Map({
        kw("url"): base.rstrip("/") + callback_path(token), kw("token"): token,
        kw("id"): request_id, kw("expires"): cb.expires}), now)


def handle_await(unit: Unit, rec: TaskRecord, request_id: int, req: Request,
                 step: StepCommit, now: float) -> None:
    """Take the next request that arrived at the callback, or wait for one (until the
    ``:timeout``, and never past the callback's expiry)."""
    key = (req.spec or {}).get("digest", "")
    cb = read_callback(unit, key)
    if cb is None or cb.task != rec.id:
        fail_request(unit, rec, request_id, "callback-error",
                     "await: no such callback of this task", now)
        return
    if cb.pending:
        value = cb.pending.pop(0)
        unit.t.callback_put(key, rec.id, cb.to_bytes())
        deliver(unit, rec, Answer(request_id, True, value), now)
        return
    if cb.used_up(now):
        used = now < cb.expires
        fail_request(unit, rec, request_id, "callback-error" if used else "timeout",
                     "await: the callback took its one request already" if used else
                     "await: the callback expired", now)
        return
    until = cb.expires if req.timeout is None else min(cb.expires, now + req.timeout)
    wait(unit, rec, request_id, "await", now, None, until=until, callback=key)


def read_callback(unit: Unit, key: str) -> CallbackRecord | None:
    """The callback kept under ``key`` (None if there is none, or it cannot be read)."""
    data = unit.t.callback_get(key)
    try:
        return None if data is None else CallbackRecord.from_bytes(data)
    except RecordError:
        return None


def deliver_request(unit: Unit, key: str, value: bytes, size: int) -> Delivery:
    """A request (its value as codec bytes, ``size`` bytes of body) arrived at the
    callback kept under ``key``."""
    now = unit.now
    cb = read_callback(unit, key)
    if cb is None:
        return Delivery.UNKNOWN
    rec = unit.get(cb.task)
    if rec is None or rec.finished or cb.used_up(now):
        return Delivery.GONE
    if size > cb.max_body:
        return Delivery.TOO_LARGE
    waiting = rec.waiting
    arm = None
    if rec.status == Status.WAITING and waiting is not None and waiting.op == "select":
        from .select import await_arm

        arm = await_arm(waiting, key)
    if rec.status == Status.WAITING and waiting is not None and waiting.op == "await" and \
            waiting.callback == key or arm is not None:
        cb.deliveries += 1
        deliver(unit, rec, Answer(waiting.request if arm is None else arm, True, value), now)
    elif len(cb.pending) >= MAX_PENDING:
        return Delivery.TOO_MANY
    else:
        cb.deliveries += 1
        cb.pending.append(value)
        event(unit, rec.id, "callback", now, callback=cb.id, value=value)
    unit.t.callback_put(key, rec.id, cb.to_bytes())
    return Delivery.DELIVERED


def secret_of(unit: Unit, key: str) -> tuple[bool, str | None]:
    """(whether the callback exists, its signing secret)."""
    cb = read_callback(unit, key)
    return (False, None) if cb is None else (True, cb.secret)
