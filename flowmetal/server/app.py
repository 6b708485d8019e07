"""The control plane's HTTP server (aiohttp): JSON for every task operation, and the
callback URLs tasks make.

Every ``/api/v1`` request needs ``Authorization: Bearer <token>`` (``flowmetal token
create``): 401 without a token the store knows, 403 for a revoked one or a ``read``
token asking to change something.  ``/healthz``, ``/openapi.json`` and the callback URLs
need none (a callback's token is its capability).  Errors are problem+json.  Store
operations run on one thread of their own, so the event loop never waits on the store.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from ..runtime.records import TaskError
from ..source import strip_shebang
from ..store.base import StoreError, StoreUnavailable
from ..store.engine import KeyReused
from ..store.tables import TaskFilter
from ..values import FlowmetalError
from .openapi import LIMIT_MAX
from .problems import Problem, problems

API = "/api/v1"
BODY_LIMIT = 1 << 20           # bytes of a request body to the API
CALLBACK_LIMIT = 16 << 20      # bytes read of a request to a callback (each has its own)
WAIT_MAX = 300.0               # seconds a long poll may ask to wait
PAGE_MAX = 1000                # tasks a listing returns at most
PUBLIC = ("/healthz", "/openapi.json", "/callbacks/")
STATUSES = ("runnable", "waiting", "done", "failed", "cancelled", "moved")
STORE = web.AppKey("store", object)
LOG = web.AppKey("log", object)
POOL = web.AppKey("pool", ThreadPoolExecutor)


def make_app(store: Any, log: Callable[[str], None] | None = None) -> web.Application:
    """The server's application over ``store``."""
    app = web.Application(middlewares=[problems, authenticate],
                          client_max_size=CALLBACK_LIMIT)
    app[STORE] = store
    app[LOG] = log or (lambda text: print(text, file=sys.stderr, flush=True))
    app[POOL] = ThreadPoolExecutor(1, thread_name_prefix="flowmetal-store")
    app.on_cleanup.append(_close_pool)
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/openapi.json", openapi)
    r.add_post("/callbacks/{token}", callback)
    r.add_post(f"{API}/programs", deploy_program)
    r.add_post(f"{API}/tasks", start_task)
    r.add_get(f"{API}/tasks", list_tasks)
    r.add_get(f"{API}/tasks/{{id}}", show_task)
    r.add_get(f"{API}/tasks/{{id}}/log", task_log)
    r.add_get(f"{API}/tasks/{{id}}/output", task_output)
    r.add_get(f"{API}/tasks/{{id}}/frames", task_frames)
    r.add_get(f"{API}/tasks/{{id}}/result", task_result)
    r.add_post(f"{API}/tasks/{{id}}/export", export_task)  # (it changes the task)
    r.add_post(f"{API}/tasks/{{id}}/messages", send_message)
    r.add_post(f"{API}/tasks/{{id}}/cancel", cancel_task)
    from . import store_ops

    r.add_post(f"{API}/store/{{op}}", store_ops.handle)
    from . import sequences, shipyards

    sequences.add_routes(app)
    shipyards.add_routes(app)
    from .. import ui

    ui.add_routes(app)
    return app


async def _close_pool(app: web.Application) -> None:
    app[POOL].shutdown(wait=True)


async def call(request: web.Request, fn: Callable, *args: Any) -> Any:
    """``fn(*args)`` on the store's thread; store faults become 503, task errors 4xx."""
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(request.app[POOL], lambda: fn(*args))
    except StoreUnavailable as exc:
        raise Problem(503, f"the store cannot be used now: {exc}",
                      {"Retry-After": "1"}) from None
    except StoreError as exc:
        raise Problem(503, f"store error: {exc}") from None
    except KeyReused as exc:  # (the IETF idempotency-key draft's status for it)
        raise Problem(422, str(exc)) from None
    except TaskError as exc:
        text = str(exc)
        raise Problem(404 if text.startswith("no ") else 409, text) from None
    except FlowmetalError as exc:
        raise Problem(400, str(exc)) from None


# -- authentication -------------------------------------------------------------------

@web.middleware
async def authenticate(request: web.Request, handler) -> web.StreamResponse:
    """Let public paths through; check the bearer token of every other request (or the
    token of the web UI's session cookie, see ``ui/session.py``)."""
    path = request.path
    if path in PUBLIC[:2] or path.startswith(PUBLIC[2]) or not path.startswith(API):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    if not header:
        from ..ui.session import api_token

        session_token = await api_token(request)  # the web UI's session cookie
        header = "" if session_token is None else f"Bearer {session_token}"
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "an Authorization: Bearer token is required (flowmetal token "
                      "create)", {"WWW-Authenticate": 'Bearer realm="flowmetal"'})
    rec = await call(request, request.app[STORE].token_check, token.strip())
    if rec is None:
        raise Problem(401, "unknown token", {"WWW-Authenticate": 'Bearer realm="flowmetal"'})
    if rec.revoked is not None:
        raise Problem(403, f"token {rec.id} was revoked")
    if rec.scope != "write" and request.method not in ("GET", "HEAD") and \
            not _reads_the_store(path):
        raise Problem(403, f"token {rec.id} may only read")
    return await handler(request)


def _reads_the_store(path: str) -> bool:
    """Whether the path is a store operation that only reads (``store_ops``)."""
    from .store_ops import READ_OPS

    prefix = f"{API}/store/"
    return path.startswith(prefix) and path[len(prefix):] in READ_OPS


# -- request bodies and parameters ----------------------------------------------------

async def read_body(request: web.Request, limit: int) -> bytes:
    """The request's body (413 past ``limit`` bytes, read no further)."""
    if request.content_length is not None and request.content_length > limit:
        raise Problem(413, f"the request body exceeds {limit} bytes")
    chunks, size = [], 0
    while True:
        try:
            chunk = await request.content.read(min(1 << 16, limit + 1 - size))
        except web.RequestPayloadError as exc:  # (say, a Content-Encoding it is not in)
            raise Problem(400, f"the request body cannot be read: {exc}") from None
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            raise Problem(413, f"the request body exceeds {limit} bytes")
        chunks.append(chunk)


async def json_body(request: web.Request) -> dict:
    """The request's JSON object (400 if it is not one, 413 if too large)."""
    data = await read_body(request, BODY_LIMIT)
    if not data:
        return {}
    from .. import json_values

    try:
        body = json_values.parse(data)
    except ValueError as exc:
        raise Problem(400, f"the request body is not JSON: {exc}") from None
    except RecursionError:
        raise Problem(400, "the request body is not JSON: nested too deep") from None
    if type(body) is not dict:
        raise Problem(400, "the request body must be a JSON object")
    return body


def field(body: dict, name: str, kind: type | tuple, required: bool = False) -> Any:
    """A field of a JSON body, checked for its type."""
    value = body.get(name)
    if value is None:
        if required:
            raise Problem(400, f"the field {name!r} is required")
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if type(value) not in kinds or (bool in kinds) != (type(value) is bool):
        raise Problem(400, f"the field {name!r} must be {_kind_name(kinds)}")
    return value


def _kind_name(kinds: tuple) -> str:
    names = {str: "a string", int: "an integer", float: "a number", list: "an array",
             dict: "an object", bool: "a boolean"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def number_param(request: web.Request, name: str, default: float, low: float, high: float
                 ) -> float:
    """A numeric query parameter within [low, high]."""
    text = request.query.get(name)
    if text is None:
        return default
    try:
        value = float(text)
    except ValueError:
        raise Problem(400, f"the parameter {name!r} must be a number") from None
    if not low <= value <= high:
        raise Problem(400, f"the parameter {name!r} must be between {low:g} and {high:g}")
    return value


def task_id(request: web.Request) -> str:
    """The task id of the path (no id is that long: 404, not repeated in full)."""
    tid = request.match_info["id"]
    if len(tid) > ID_MAX:
        raise Problem(404, f"no task {tid[:ID_MAX]}... (an id of {len(tid)} characters)")
    return tid


# -- handlers -------------------------------------------------------------------------

async def healthz(request: web.Request) -> web.Response:
    """Whether the server can read its store."""
    store = request.app[STORE]

    def check() -> float:
        with store.view() as view:
            return view.clock()
    await call(request, check)
    return web.json_response({"ok": True})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document of this server."""
    from .openapi import document

    return web.json_response(document())


async def deploy_program(request: web.Request) -> web.Response:
    """Store a program under a name."""
    from ..runtime import api

    body = await json_body(request)
    name = field(body, "name", str, True)
    if not 0 < len(name) <= 200 or "\0" in name:
        raise Problem(400, "a program's name has 1 to 200 characters (no NUL)")
    source = strip_shebang(field(body, "source", str, True))
    file = field(body, "file", str) or f"{name}.fm"
    digest = await call(request, api.deploy, request.app[STORE], source, file, name)
    return web.json_response({"name": name, "program": digest}, status=201)


async def start_task(request: web.Request) -> web.Response:
    """Start a task: a stored program (by name or hash) or a program's source."""
    from ..runtime import api

    body = await json_body(request)
    program = field(body, "program", str)
    source = field(body, "source", str)
    if (program is None) == (source is None):
        raise Problem(400, "give either 'program' (a deployed name or a hash) or 'source'")
    if program is not None and not 0 < len(program) <= 200:
        raise Problem(400, "a program's name or hash has 1 to 200 characters")
    args = field(body, "args", list) or []
    if any(type(a) is not str for a in args):
        raise Problem(400, "the field 'args' must be an array of strings")
    limits = _limits(field(body, "limits", dict) or {})
    key = request.headers.get("Idempotency-Key") or field(body, "idempotency_key", str)
    if key is not None and not 0 < len(key) <= 255:
        raise Problem(400, "an idempotency key has 1 to 255 characters")
    store = request.app[STORE]
    earlier = None if key is None else await call(request, store.start_key, key)
    # What this start asks for, so that a key reused for another start is refused.
    asked = None if key is None else hashlib.sha256(json.dumps(
        {k: v for k, v in body.items() if k != "idempotency_key"}, sort_keys=True,
        separators=(",", ":")).encode()).hexdigest()
    if source is not None:
        source = strip_shebang(source)
        file = field(body, "file", str) or "api.fm"
        new_id = await call(request, api.start, store, source, file, args, limits, False,
                            api.SAME, None, key, asked)
    else:
        new_id = await call(request, api.start_stored, store, program, args, limits, key,
                            asked)
    detail = await call(request, _summary, store, new_id)
    return web.json_response(detail, status=201 if earlier is None else 200,
                             headers={"Location": f"{API}/tasks/{new_id}"})


ID_MAX = 64  # characters of the longest task id a path may name (ids have 21)
HEARTBEAT = 15.0  # seconds without output after which an event stream sends a comment
LIMIT_FIELDS = {"fuel": int, "depth": int, "state": int, "deadline": (int, float),
                "wait": (int, float), "response_body": int}


def _limits(given: dict) -> dict:
    out = {}
    for name, value in given.items():
        kinds = LIMIT_FIELDS.get(name)
        if kinds is None:
            raise Problem(400, f"unknown limit {name!r} (known: {', '.join(LIMIT_FIELDS)})")
        kinds = kinds if isinstance(kinds, tuple) else (kinds,)
        if type(value) not in kinds or not 0 < value <= LIMIT_MAX:
            raise Problem(400, f"the limit {name!r} must be a positive number, at most "
                               f"{LIMIT_MAX:.0e}")
        out[name] = value
    return out


def _summary(store: Any, tid: str) -> dict:
    from ..runtime.inspect import task_summary

    with store.view() as view:
        rec = view.task(tid)
        if rec is None:
            raise TaskError(f"no task {tid}")
        return task_summary(rec, view.clock())


async def list_tasks(request: web.Request) -> web.Response:
    """Tasks matching the filters, in id order (``order=desc``: newest first), a page at
    a time (``next`` is the ``after`` of the next page); with ``counts=true``, how many
    match, by status."""
    q = request.query
    limit = number_param(request, "limit", 100, 1, PAGE_MAX)
    if limit != int(limit):
        raise Problem(400, "the parameter 'limit' must be a whole number")
    order = q.get("order", "asc")
    if order not in ("asc", "desc"):
        raise Problem(400, "the parameter 'order' is asc or desc")
    counts = q.get("counts", "false")
    if counts not in ("true", "false"):
        raise Problem(400, "the parameter 'counts' is true or false")
    return web.json_response(await call(
        request, tasks_page, request.app[STORE], task_filter(request), q.get("after", ""),
        int(limit), counts == "true", order == "desc"))


def task_filter(request: web.Request) -> TaskFilter:
    """The task filter of a listing's query parameters (status, program, name, parent,
    id prefix, since, until)."""
    q = request.query
    status = tuple(q.getall("status", ()))
    if any(s not in STATUSES for s in status):
        raise Problem(400, f"the parameter 'status' is one of {', '.join(STATUSES)} (given "
                           "more than once: any of them)")
    return TaskFilter(status=status, program=q.get("program") or None,
                      name=q.get("name") or None, parent=q.get("parent") or None,
                      id_prefix=q.get("id") or None,
                      created_after=_time_param(request, "since"),
                      created_before=_time_param(request, "until"))


def tasks_page(store: Any, where: TaskFilter, after: str, limit: int, counts: bool = False,
               descending: bool = False) -> dict:
    """A page of the listing: ``{"tasks": [task_summary...], "next", "counts"?}``."""
    from ..runtime.inspect import task_summary

    with store.view() as view:
        now = view.clock()
        recs = view.tasks(where, after=after, limit=limit + 1, descending=descending)
        rows = [task_summary(r, now) for r in recs[:limit]]
        page = {"tasks": rows, "next": rows[-1]["id"] if len(recs) > limit else None}
        if counts:
            page["counts"] = view.count(where)
        return page


def _time_param(request: web.Request, name: str) -> float | None:
    text = request.query.get(name)
    if text is None:
        return None
    return number_param(request, name, 0.0, 0.0, 1e11)


async def show_task(request: web.Request) -> web.Response:
    """One task: its status, result or error, what it waits on, its frames."""
    from ..runtime.inspect import task_detail

    return web.json_response(await call(request, task_detail, request.app[STORE],
                                        task_id(request)))


async def task_log(request: web.Request) -> web.Response:
    """The task's event log (entries numbered above ``after``)."""
    after = int(number_param(request, "after", 0, 0, 2**62))
    return web.json_response(await call(request, log_events, request.app[STORE],
                                        task_id(request), after))


def log_events(store: Any, tid: str, after: int = 0) -> dict:
    """The task's log above ``after``: ``{"events": [log_entry...]}``."""
    from ..runtime.inspect import log_entry

    with store.view() as view:
        if view.task(tid) is None:
            raise TaskError(f"no task {tid}")
        return {"events": [log_entry(seq, e) for seq, e in view.log(tid, after)]}


async def task_output(request: web.Request) -> web.StreamResponse:
    """The task's output above ``after``; with ``wait`` seconds, a long poll for more;
    with ``Accept: text/event-stream``, server-sent events until the task ends."""
    store = request.app[STORE]
    tid = task_id(request)
    after = int(number_param(request, "after", 0, 0, 2**62))

    def read(after: int) -> tuple[list[tuple[int, str]], bool]:
        return output_after(store, tid, after)
    if "text/event-stream" in request.headers.get("Accept", ""):
        # An EventSource that reconnects says the last event it saw.
        last = request.headers.get("Last-Event-ID", "")
        if last.isascii() and last.isdigit() and len(last) < 19:
            after = max(after, int(last))
        return await _output_events(request, read, after)
    wait = number_param(request, "wait", 0.0, 0.0, WAIT_MAX)
    end = time.monotonic() + wait
    while True:
        items, finished = await call(request, read, after)
        if items or finished or time.monotonic() >= end:
            break
        await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
    return web.json_response({"output": [{"seq": s, "text": t} for s, t in items],
                              "finished": finished})


def output_after(store: Any, tid: str, after: int = 0) -> tuple[list[tuple[int, str]], bool]:
    """The task's output above ``after`` as (seq, text) pairs, and whether it ended."""
    with store.view() as view:
        rec = view.task(tid)
        if rec is None:
            raise TaskError(f"no task {tid}")
        return list(view.output(tid, after)), rec.finished


async def _output_events(request: web.Request, read: Callable, after: int
                         ) -> web.StreamResponse:
    # The first read comes before the response starts: an unknown task (or a store
    # error) is still a problem+json answer of its own.
    items, finished = await call(request, read, after)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache"})
    await resp.prepare(request)
    quiet_since = time.monotonic()
    try:
        while True:
            for seq, text in items:
                await resp.write(f"id: {seq}\nevent: output\ndata: {json.dumps(text)}\n\n"
                                 .encode())
                after = seq
            if finished and not items:
                await resp.write(b"event: end\ndata: {}\n\n")
                break
            if items:
                quiet_since = time.monotonic()
            else:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return resp  # the client went away: stop reading for it
                if time.monotonic() - quiet_since > HEARTBEAT:
                    await resp.write(b": still here\n\n")  # (a comment: clients skip it)
                    quiet_since = time.monotonic()
                await asyncio.sleep(0.05)
            items, finished = await call(request, read, after)
    except ConnectionError:
        return resp  # the client went away while it was written to
    await resp.write_eof()
    return resp


async def task_frames(request: web.Request) -> web.Response:
    """The frames of the task's continuation, innermost first, with their locals."""
    from ..runtime.inspect import task_detail

    detail = await call(request, task_detail, request.app[STORE], task_id(request))
    return web.json_response({"frames": detail["frames"], "error": detail["frames_error"]})


async def task_result(request: web.Request) -> web.Response:
    """The task's result or error once it ends; with ``wait`` seconds, a long poll
    (202 if it has not ended by then)."""
    from ..runtime.inspect import task_detail

    store = request.app[STORE]
    tid = task_id(request)
    end = time.monotonic() + number_param(request, "wait", 0.0, 0.0, WAIT_MAX)
    while True:
        summary = await call(request, _summary, store, tid)
        if summary["status"] in ("done", "failed", "cancelled", "moved"):
            break
        if time.monotonic() >= end:
            return web.json_response(summary, status=202)
        await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))
    detail = await call(request, task_detail, store, tid)
    return web.json_response({k: detail[k] for k in (
        "id", "status", "result", "error", "error_text")})


async def export_task(request: web.Request) -> web.Response:
    """Export the task (it is marked moved here): the export file's bytes (CBOR)."""
    from ..runtime.migrate import export_task as export

    chunks: list[bytes] = []
    await call(request, export, request.app[STORE], task_id(request), chunks.append)
    return web.Response(body=b"".join(chunks), content_type="application/cbor")


async def send_message(request: web.Request) -> web.Response:
    """Put a message in the task's inbox: ``{"form": "<Flowmetal data>"}`` (read, never
    evaluated) or ``{"json": value}``."""
    from .. import json_values
    from ..reader import read_one
    from ..runtime import api

    body = await json_body(request)
    if ("form" in body) == ("json" in body):
        raise Problem(400, "give either 'form' (Flowmetal data as text) or 'json'")
    if "form" in body:
        try:
            message = read_one(field(body, "form", str, True), "<message>")
        except FlowmetalError as exc:
            raise Problem(400, f"the form cannot be read: {exc}") from None
    else:
        message = json_values.from_plain(body["json"])
    store = request.app[STORE]
    tid = task_id(request)

    def send() -> dict:
        seq = api.send(store, tid, message)
        rec = api.get(store, tid)
        woke = rec.answer is not None and rec.answer.kind == "message" and \
            rec.answer.seq == seq
        return {"seq": seq, "delivered": woke, "status": str(rec.status)}
    return web.json_response(await call(request, send), status=201)


async def cancel_task(request: web.Request) -> web.Response:
    """Ask the task to stop (a ``{:type :cancelled}`` error is raised where it stands)."""
    from ..runtime import api

    rec = await call(request, api.cancel, request.app[STORE], task_id(request))
    return web.json_response({"id": rec.id, "status": str(rec.status),
                              "delivered": rec.cancel_delivered}, status=202)


# -- callbacks ------------------------------------------------------------------------

async def callback(request: web.Request) -> web.Response:
    """A request to a callback URL: delivered to its task (202), or 404, 410, 413, 401
    (a callback made with a secret, and no valid Standard Webhooks signature)."""
    from ..connectors.http_request import response_value
    from ..runtime.records import encode_data
    from ..store.callbacks import Delivery
    from ..values import Map, kw
    from .webhooks import SignatureError, verify

    store = request.app[STORE]
    token = request.match_info["token"]
    exists, secret = await call(request, store.callback_secret, token)
    if not exists:
        raise Problem(404, "no such callback")
    body = await read_body(request, CALLBACK_LIMIT)
    # Raw bytes as latin-1 (lossless, as the HTTP connector reads a response's), not
    # request.headers: aiohttp's surrogate escapes could not be stored.
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.raw_headers]
    if secret is not None:
        try:
            verify(secret, {k.lower(): v for k, v in headers}, body)
        except SignatureError as exc:
            raise Problem(401, f"the webhook signature does not verify: {exc}") from None
    value = response_value(0, headers, body)  # (:json only where the body decodes)
    value = Map({kw("method"): request.method, kw("query"): query_value(request),
                 **{k: v for k, v in value.items() if k.name != "status"}})
    outcome = await call(request, store.callback_deliver, token, encode_data(value),
                         len(body))
    if outcome is Delivery.DELIVERED:
        return web.json_response({"delivered": True}, status=202)
    detail = {Delivery.UNKNOWN: "no such callback",
              Delivery.GONE: "the callback was used up or expired, or its task ended",
              Delivery.TOO_LARGE: "the request body exceeds the callback's limit",
              Delivery.TOO_MANY: "too many requests wait for the task to take them"}
    raise Problem(outcome.value, detail[outcome])


def query_value(request: web.Request) -> Any:
    """A callback request's ``:query``: a parameter given once maps to its string, one
    given more than once to a vector of its strings in order."""
    from ..values import Map, Vector

    merged: dict[str, list[str]] = {}
    for k, v in request.query.items():
        merged.setdefault(k, []).append(v)
    return Map({k: v[0] if len(v) == 1 else Vector(v) for k, v in merged.items()})
