"""The UI's HTTP handlers: each reads what its page shows (``data.py``, on the store's
thread), renders it (``pages.py``) and answers HTML; the actions (send, cancel, export)
are the control plane's own operations.  A bad request or an unknown task is an HTML
page with the status the API would give."""

from __future__ import annotations

import calendar
import time
from collections.abc import Awaitable, Callable
from contextlib import suppress
from typing import Any

from aiohttp import web

from ..server.app import STORE, call, task_filter
from ..server.problems import Problem
from ..store.tables import TaskFilter
from ..values import FlowmetalError
from . import data, events, pages, session
from .html import Html, url

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
FILTER_PARAMS = ("status", "program", "parent", "id", "since", "until")


def html_response(body: Html, status: int = 200) -> web.Response:
    """An HTML page."""
    return web.Response(text=body, status=status, content_type="text/html", charset="utf-8")


def ui_page(handler: Handler) -> Handler:
    """A UI handler that needs a session (``session.page``) and shows its errors (a
    ``Problem``) as an HTML page."""
    guarded = session.page(handler)

    async def run(request: web.Request) -> web.StreamResponse:
        try:
            return await guarded(request)
        except Problem as exc:
            return html_response(pages.error_page(exc.status, exc.detail,
                                                  request.get(session.WHO)), exc.status)
    run.__doc__ = handler.__doc__
    return run


def who(request: web.Request) -> session.SignedIn:
    """The request's ``SignedIn`` (set by ``ui_page``)."""
    return request[session.WHO]


def may_write(request: web.Request) -> None:
    """Refuse (403) a change asked with a read-only token."""
    if not who(request).may_write:
        raise Problem(403, f"token {who(request).record.id} may only read")


# -- the task list ----------------------------------------------------------------------

def _time_text(text: str) -> str:
    """A time given in the list's form (seconds since the epoch, or an ISO date and time
    in UTC) as seconds since the epoch."""
    text = text.strip().rstrip("Zz")
    with suppress(ValueError):
        return repr(float(text))
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                "%Y-%m-%d"):
        try:
            return repr(float(calendar.timegm(time.strptime(text, fmt))))
        except ValueError:
            continue
    raise Problem(400, f"{text[:40]!r} is not a time: give YYYY-MM-DDTHH:MM (UTC) or "
                  "seconds since the epoch")


def list_params(request: web.Request) -> dict[str, str]:
    """The list's query parameters that are set (filters and ``after``)."""
    return {k: request.query[k].strip() for k in (*FILTER_PARAMS, "after")
            if request.query.get(k, "").strip()}


def list_filter(request: web.Request, params: dict[str, str]):
    """The API's task filter of the list's parameters (times in either form)."""
    api_params = {k: v for k, v in params.items() if k != "after"}
    for name in ("since", "until"):
        if name in api_params:
            api_params[name] = _time_text(api_params[name])
    return task_filter(request.clone(rel_url=request.rel_url.with_query(api_params)))


@ui_page
async def task_list(request: web.Request) -> web.Response:
    """The task list."""
    params = list_params(request)
    store = request.app[STORE]
    error = None
    try:
        where = list_filter(request, params)
    except Problem as exc:
        error, where, params = exc.detail, TaskFilter(), {}
    page = await call(request, data.task_list, store, where, params.get("after", ""))
    counts = request.app[events.COUNTS].cached(where)
    stream = None
    if error is None:
        stream = url("/events/tasks", **{k: v for k, v in params.items() if k != "after"},
                     ids=",".join(s["id"] for s in page["tasks"]),
                     newest=None if params.get("after") else
                     (page["tasks"][0]["id"] if page["tasks"] else "0"))
    return html_response(pages.list_page(page, counts, params, who(request), error, stream),
                         400 if error else 200)


@ui_page
async def list_events(request: web.Request) -> web.StreamResponse:
    """The list page's event stream."""
    params = {k: v for k, v in list_params(request).items() if k != "after"}
    where = list_filter(request, params)
    ids = [i for i in request.query.get("ids", "").split(",") if i][:data.PAGE_SIZE]
    return await events.list_stream(request, where, ids, request.query.get("newest") or None,
                                    params)


# -- one task ---------------------------------------------------------------------------

def _step(request: web.Request) -> int | None:
    text = request.query.get("step")
    if text is None or text == "":
        return None
    if not text.isdigit():
        raise Problem(400, "the parameter 'step' is a step's number, from 1")
    return int(text)


async def _task_page(request: web.Request, message_text: str = "",
                     message_error: str | None = None, status: int = 200) -> web.Response:
    tid = request.match_info["id"]
    found = await call(request, data.task_page, request.app[STORE], tid, _step(request))
    d = found["detail"]
    stream = url(f"/events/tasks/{tid}", log=found["events"][-1]["seq"] if found["events"]
                 else 0, output=found["output"][-1][0] if found["output"] else 0,
                 updated=repr(d["updated"]), frames=0 if found.get("step") else 1)
    return html_response(pages.task_page(found, who(request), stream, message_text,
                                         message_error), status)


@ui_page
async def task_page(request: web.Request) -> web.Response:
    """One task's page."""
    return await _task_page(request)


@ui_page
async def task_events(request: web.Request) -> web.StreamResponse:
    """A task page's event stream."""
    q = request.query
    try:
        log_after, output_after = int(q.get("log", "0")), int(q.get("output", "0"))
        updated = float(q.get("updated", "0"))
    except ValueError:
        raise Problem(400, "log and output are sequence numbers, updated a time") from None
    return await events.task_stream(request, request.match_info["id"], log_after,
                                    output_after, updated, q.get("frames") != "0")


@ui_page
async def send_message(request: web.Request) -> web.Response:
    """Send the form's message (read as Flowmetal data; a read error is shown with its
    line and column, and nothing is sent)."""
    from ..reader import read_one
    from ..runtime import api

    may_write(request)
    text = (await request.post()).get("form")
    if type(text) is not str or not text.strip():
        return await _task_page(request, "", "write a message: Flowmetal data, such as "
                                "{:go true}", 400)
    try:
        message = read_one(text, "<message>")
    except FlowmetalError as exc:
        return await _task_page(request, text, f"not sent: {exc}", 400)
    tid = request.match_info["id"]
    await call(request, api.send, request.app[STORE], tid, message)
    raise web.HTTPSeeOther(f"/tasks/{tid}")


@ui_page
async def cancel_task(request: web.Request) -> web.Response:
    """Ask the task to stop."""
    from ..runtime import api

    may_write(request)
    tid = request.match_info["id"]
    await call(request, api.cancel, request.app[STORE], tid)
    raise web.HTTPSeeOther(f"/tasks/{tid}")


@ui_page
async def export_task(request: web.Request) -> web.Response:
    """The task's export file, as a download (the task is marked moved here)."""
    from ..runtime.migrate import export_task as export

    may_write(request)
    tid = request.match_info["id"]
    chunks: list[bytes] = []
    await call(request, export, request.app[STORE], tid, chunks.append)
    return web.Response(body=b"".join(chunks), content_type="application/cbor", headers={
        "Content-Disposition": f'attachment; filename="task-{tid}.fmt"'})


# -- sequences --------------------------------------------------------------------------

@ui_page
async def sequences_page(request: web.Request) -> web.Response:
    """Stages, runs, task events and evaluations."""
    found = await call(request, data.sequences_page, request.app[STORE])
    return html_response(pages.sequences_page(found, who(request)))


# -- signing in -------------------------------------------------------------------------

async def signin_form(request: web.Request) -> web.Response:
    """The sign-in page."""
    return html_response(pages.signin_page(session.safe_next(request.query.get("next"))))


async def signin(request: web.Request) -> web.Response:
    """Sign in with a control-plane token: the session cookie, then the page asked for."""
    try:
        session.check_same_site(request)
    except Problem as exc:
        return html_response(pages.error_page(exc.status, exc.detail), exc.status)
    form = await request.post()
    token, target = form.get("token"), session.safe_next(form.get("next"))
    rec = None
    if type(token) is str and token.strip():
        token = token.strip()
        rec = await call(request, request.app[STORE].token_check, token)
    if rec is None or rec.revoked is not None:
        problem = "that token is not one of this store's" if rec is None else \
            f"token {rec.id} was revoked"
        return html_response(pages.signin_page(target, problem), 401)
    return await _signed_in(request, token, target)


def see_other(target: str) -> web.Response:
    """A 303 redirect to ``target`` (a path of this server)."""
    return web.Response(status=303, headers={"Location": target})


async def _signed_in(request: web.Request, token: str, target: str) -> web.Response:
    resp = see_other(target)
    session.set_session(resp, request, await session.signing_key(request), token)
    return resp


async def signin_once(request: web.Request) -> web.Response:
    """A one-time sign-in link (``flowmetal serve --open``): its code for the cookie."""
    token = session.redeem_code(request.app, request.query.get("code", ""))
    if token is None:
        return html_response(pages.signin_page("/", "that sign-in link was used already or "
                                               "has expired: sign in with a token"), 403)
    return await _signed_in(request, token, "/")


async def signout(request: web.Request) -> web.Response:
    """End the session (a same-site POST with the session's CSRF token)."""
    found = await session.signed_in(request)
    form = await request.post()
    try:
        session.check_same_site(request)
    except Problem as exc:
        return html_response(pages.error_page(exc.status, exc.detail), exc.status)
    if found is not None and form.get("csrf") != found.csrf:
        return html_response(pages.error_page(403, "the form's CSRF token is wrong"), 403)
    resp = see_other("/signin")
    session.end_session(resp)
    return resp


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """The headers every answer carries: a Content-Security-Policy allowing only this
    server's own scripts and styles (no inline script), no framing, no sniffing, and a
    referrer only to this server (a one-time sign-in URL never leaks; "no-referrer"
    would make browsers send ``Origin: null`` with the UI's own forms)."""
    headers: Any = response.headers
    headers.setdefault("Content-Security-Policy",
                       "default-src 'self'; script-src 'self'; style-src 'self'; "
                       "img-src 'self'; object-src 'none'; base-uri 'none'; "
                       "form-action 'self'; frame-ancestors 'none'")
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
