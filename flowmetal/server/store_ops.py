"""The server's side of ``store.remote``: ``POST /api/v1/store/{op}`` runs one store
operation on the server's store, its arguments and result in CBOR."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cbor2
from aiohttp import web

from ..interpreter import STDLIB_FORMAT, chain_hash
from ..program import program_hash
from ..runtime.records import RecordError, TaskRecord, decode_data
from ..store.base import NewTask
from ..store.remote import CBOR, filter_of
from ..values import FlowmetalError
from .problems import Problem

READ_OPS = frozenset({"task", "tasks", "count", "continuation", "inbox", "log", "output",
                      "outbox", "program", "program_hashes", "resolve", "next_timer",
                      "has_work", "clock", "setting"})
MAX_PAGE = 10_000  # records a ``tasks`` call returns at most
SHARED_SETTINGS = ("shipyard",)  # the settings clients read and change: key prefixes


def _view(store: Any, fn: Callable[[Any], Any]) -> Callable[[], Any]:
    def run() -> Any:
        with store.view() as view:
            return fn(view)
    return run


def _task(view: Any, task: str) -> dict:
    rec = view.task(task)
    return {"record": None if rec is None else rec.to_bytes(),
            "unreadable": view.unreadable.get(task)}


def _tasks(view: Any, where: dict, after: str, limit: int, descending: bool) -> dict:
    records = view.tasks(filter_of(where), after, min(limit, MAX_PAGE), descending)
    return {"records": [r.to_bytes() for r in records], "skipped": view.skipped}


def _programs(records: dict) -> dict:
    """Program records a client sends, each checked to be what its hash says: a record
    stored under a hash is never rewritten, so one under the wrong hash would stand in
    the way of the real one for good (ValueError for the first that is not)."""
    out = {}
    for digest, record in records.items():
        if type(record) is bytes:
            try:
                record = cbor2.loads(record)
            except Exception:
                raise ValueError(f"the program record {digest!r:.80} is not CBOR") from None
        if type(record) is not dict or record.get("hash") != digest or \
                _record_hash(record) != digest:
            raise ValueError(f"the program record {digest!r:.80} does not match its hash")
        out[digest] = record
    return out


def _record_hash(record: dict) -> str | None:
    """The hash a program's record or a standard library's manifest makes of what it
    holds (None if it holds too little to make one)."""
    if record.get("format") == STDLIB_FORMAT:  # the chain of its programs' hashes
        prefix, hashes = record.get("root"), record.get("programs")
        if type(prefix) is not str or type(hashes) is not list:
            return None
        for h in hashes:
            if type(h) is not str:
                return None
            prefix = chain_hash(prefix, h)
        return prefix
    fields = [record.get(k) for k in ("file", "source", "base", "analyzer")]
    return program_hash(*fields) if all(type(f) is str for f in fields) else None


def _outbox(view: Any, task: str | None) -> list:
    return [[t, request, entry.to_bytes()] for t, request, entry in view.outbox(task)
            if not isinstance(entry, str)]


def operation(store: Any, op: str, args: dict) -> Callable[[], Any]:
    """The call that does ``op`` with ``args`` on ``store`` (Problem 400 if there is no
    such operation or the arguments do not fit it)."""
    a = args.get
    views: dict[str, Callable[[Any], Any]] = {
        "task": lambda v: _task(v, _text(a("task"))),
        "tasks": lambda v: _tasks(v, _dict(a("where")), _text(a("after") or ""),
                                  _int(a("limit")), bool(a("descending"))),
        "count": lambda v: v.count(filter_of(_dict(a("where")))),
        "continuation": lambda v: v.continuation(_text(a("task"))),
        "inbox": lambda v: [[seq, m.to_bytes()] for seq, m in v.inbox(_text(a("task")))],
        "log": lambda v: [[seq, e.to_bytes()] for seq, e in
                          v.log(_text(a("task")), _seq(a("after") or 0))],
        "output": lambda v: [[seq, text] for seq, text in
                             v.output(_text(a("task")), _seq(a("after") or 0))],
        "outbox": lambda v: _outbox(v, _text_or_none(a("task"))),
        "program": lambda v: v.program(_text(a("digest"))),
        "program_hashes": lambda v: v.program_hashes(),
        "resolve": lambda v: v.resolve(_text(a("name"))),
        "next_timer": lambda v: v.next_timer(),
        "has_work": lambda v: v.has_work(),
        "clock": lambda v: v.clock(),
    }
    if op in views:
        return _view(store, views[op])
    if op == "start":
        try:
            rec = TaskRecord.from_bytes(_bytes(a("task")))
        except RecordError as exc:
            raise Problem(400, f"start: {exc}") from None
        new = NewTask(rec, _bytes(a("state")), _dict(a("logged") or {}))
        return lambda: store.start(new, _dict(a("programs") or {}), _dict(a("names") or {}),
                                   a("key"), _text_or_none(a("fingerprint")))
    if op == "send":
        message = _bytes(a("message"))
        try:
            decode_data(message)
        except Exception:  # (whatever the bytes make the decoder raise)
            raise Problem(400, "send: the message is not an encoded value") from None
        return lambda: store.send(_text(a("task")), message, _text_or_none(a("sender")))
    if op == "cancel":
        return lambda: store.cancel(_text(a("task"))).to_bytes()
    if op == "setting":
        return lambda: store.setting(_shared(a("key")))
    if op == "set_setting":
        return lambda: store.set_setting(_shared(a("key")), _text_or_none(a("value")))
    if op == "swap_setting":
        return lambda: _swap(store, _shared(a("key")), _text_or_none(a("expected")),
                             _text_or_none(a("value")))
    if op == "put_programs":
        return lambda: store.put_programs(_programs(_dict(a("programs"))))
    if op == "deploy":
        return lambda: store.deploy(_text(a("name")), _text(a("digest")),
                                    _programs(_dict(a("programs") or {})))
    raise Problem(404, f"no store operation {op!r}")


async def handle(request: web.Request) -> web.Response:
    """``POST /api/v1/store/{op}``."""
    from .app import STORE, call, read_body

    if not request.headers.get("Content-Type", "").startswith(CBOR):
        raise Problem(415, f"store operations take {CBOR}")
    try:
        args = cbor2.loads(await read_body(request, 64 << 20))
    except Problem:
        raise
    except Exception:
        raise Problem(400, "the body is not CBOR") from None
    if type(args) is not dict:
        raise Problem(400, "the body must be a CBOR map of arguments")
    try:
        fn = operation(request.app[STORE], request.match_info["op"], args)
    except (TypeError, ValueError, KeyError) as exc:
        raise Problem(400, f"{request.match_info['op']}: {exc}") from None
    result = await call(request, _checked(fn))
    return web.Response(body=cbor2.dumps({"result": result}), content_type=CBOR)


def _shared(key: Any) -> str:
    """A setting's key, if clients may use it through the server (ValueError if not)."""
    if not _text(key).startswith(SHARED_SETTINGS):
        raise ValueError(f"the setting {key!r:.80} is not used through a server")
    return key


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _text(value)


def _swap(store: Any, key: str, expected: str | None, value: str | None) -> dict:
    """Set ``key`` to ``value`` if it is ``expected`` (one transaction): whether it was,
    and the setting's value now."""
    swapped = []

    def change(old: str | None) -> str | None:
        swapped[:] = [old == expected]
        return value if old == expected else old
    now = store.update_setting(key, change)
    return {"swapped": swapped[0], "value": now}


def _checked(fn: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        try:
            return fn()
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError) as exc:
            raise BadArguments(str(exc)) from None
    return run


class BadArguments(FlowmetalError):
    """Arguments of the wrong types for a store operation (a 400)."""


def _typed(kind: type, what: str) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"{what} argument is missing or not {what}")
        return value
    return check


def _seq(value: Any) -> int:
    """A sequence number of a log or an output (ValueError if it cannot be one)."""
    if not 0 <= _int(value) < 1 << 63:
        raise ValueError(f"a sequence number is from 0 to 2**63 - 1, not {str(value)[:40]}")
    return value


_text = _typed(str, "a string")
_int = _typed(int, "an integer")
_bytes = _typed(bytes, "a byte string")
_dict = _typed(dict, "a map")
