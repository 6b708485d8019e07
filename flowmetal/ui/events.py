"""Server-sent events that keep the UI's open pages up to date: the task list (rows that
changed, new tasks, the counts per status) and one task (new log entries and output, and
its state, frames, inbox and outbox once it moves on).

Each stream polls the store on the store's thread (a read of a few records, cheap) every
``TASK_POLL`` or ``LIST_POLL`` seconds, so a committed step reaches an open page within
about that long; counting tasks runs on a thread of its own, never holding up the others.
Events carry JSON: the data (``task_summary``, ``log_entry``) and the HTML the page shows
for it, rendered by ``pages.py`` as the page itself is.
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

from aiohttp import web

from ..runtime import inspect
from ..server.app import STORE, call, log_events
from ..store.tables import TaskFilter
from . import data, pages

TASK_POLL = 0.1          # seconds between looks at a task an open page shows
LIST_POLL = 0.25         # seconds between looks at the tasks a list page shows
KEEPALIVE = 15.0         # seconds between comments on a quiet stream
STREAMS = web.AppKey("ui-streams", set)
COUNTS = web.AppKey("ui-counts", data.StatusCounts)
COUNT_POOL = web.AppKey("ui-count-pool", ThreadPoolExecutor)


def setup(app: web.Application) -> None:
    """Prepare the app for event streams (ended when the server shuts down)."""
    app[STREAMS] = set()
    app[COUNTS] = data.StatusCounts()
    app[COUNT_POOL] = ThreadPoolExecutor(1, thread_name_prefix="flowmetal-ui-counts")
    app.on_shutdown.append(_end_streams)
    app.on_cleanup.append(_close_count_pool)


async def _end_streams(app: web.Application) -> None:
    for task in list(app[STREAMS]):
        task.cancel()


async def _close_count_pool(app: web.Application) -> None:
    app[COUNT_POOL].shutdown(wait=True)


def message(event: str, payload: Any) -> bytes:
    """One server-sent event carrying JSON."""
    return f"event: {event}\ndata: {json.dumps(payload)}\n\n".encode()


async def counts(request: web.Request, where: TaskFilter) -> dict[str, int]:
    """The counts per status for a listing of ``where`` (made again when stale, on the
    counting thread)."""
    loop = asyncio.get_running_loop()
    app = request.app
    return await loop.run_in_executor(app[COUNT_POOL], app[COUNTS].fresh, app[STORE], where)


async def _open(request: web.Request) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                       "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    return resp


async def _stream(request: web.Request, body) -> web.StreamResponse:
    """Run ``body(resp)`` as the request's stream until it ends, the client goes or the
    server shuts down."""
    resp = await _open(request)
    me = asyncio.current_task()
    request.app[STREAMS].add(me)
    try:
        with suppress(ConnectionResetError, asyncio.CancelledError):
            await body(resp)
            await resp.write_eof()
    finally:
        request.app[STREAMS].discard(me)
    return resp


async def list_stream(request: web.Request, where: TaskFilter, ids: list[str],
                      newest: str | None, params: dict) -> web.StreamResponse:
    """Changes to a list page: ``row`` (a shown task changed: its id, summary and row),
    ``gone``, ``new`` (newer tasks matching the filter, newest first: rows, and ``more``
    when there are more than a page), ``counts`` (the counts bar)."""
    store = request.app[STORE]
    known: dict[str, float] = {}
    last_counts: Any = None

    async def body(resp: web.StreamResponse) -> None:
        nonlocal newest, last_counts
        quiet = time.monotonic()
        counting: asyncio.Future | None = None
        while True:
            if counting is None:
                counting = asyncio.ensure_future(counts(request, where))
            if counting.done():
                found = counting.result()
                counting = None
                if found != last_counts:
                    last_counts = found
                    await resp.write(message("counts", {
                        "counts": found, "html": pages.counts_bar(found, params)}))
            now = await call(request, data.tasks_now, store, ids, where, newest)
            sent = False
            for tid, summary in now["shown"].items():
                if summary is None:
                    if known.get(tid) != -1.0:
                        known[tid] = -1.0
                        await resp.write(message("gone", {"id": tid}))
                        sent = True
                elif known.setdefault(tid, summary["updated"]) != summary["updated"]:
                    known[tid] = summary["updated"]
                    await resp.write(message("row", {
                        "id": tid, "task": summary, "html": pages.task_row(summary, now["now"])}))
                    sent = True
            if now["new"]:
                newest = now["new"][0]["id"]
                for s in now["new"]:
                    ids.insert(0, s["id"])
                    known[s["id"]] = s["updated"]
                del ids[data.PAGE_SIZE:]
                await resp.write(message("new", {
                    "rows": [pages.task_row(s, now["now"]) for s in now["new"]],
                    "more": now["more"]}))
                sent = True
            if sent:
                quiet = time.monotonic()
            elif time.monotonic() - quiet > KEEPALIVE:
                await resp.write(b": quiet\n\n")
                quiet = time.monotonic()
            await asyncio.sleep(LIST_POLL)
    return await _stream(request, body)


def task_live(store: Any, tid: str) -> dict:
    """What ``pages.live_sections`` renders, for a task page following its task."""
    detail = inspect.task_detail(store, tid)
    with store.view() as view:
        rec = view.task(tid)
        program = {} if rec is None else view.program(rec.program) or {}
        return {"detail": detail, "inbox": data.inbox_items(view, tid),
                "outbox": data.outbox_items(view, tid), "file": program.get("file")}


async def task_stream(request: web.Request, tid: str, log_after: int, output_after: int,
                      updated: float, frames: bool) -> web.StreamResponse:
    """Changes to a task page: ``log`` (a timeline row), ``output`` (a line: its seq and
    text), ``live`` (the state, result, frames, inbox and outbox sections, by element id,
    when the task's record changed) and, once it has ended and all is sent, ``end``."""
    store = request.app[STORE]
    earlier = await call(request, log_events, store, tid)
    detail = await call(request, inspect.task_detail, store, tid)
    timeline = pages.Timeline(tid, detail["created"], detail["children"])
    for entry in earlier["events"]:
        if entry["seq"] <= log_after:
            timeline.row(entry)

    async def body(resp: web.StreamResponse) -> None:
        nonlocal log_after, output_after, updated
        quiet = time.monotonic()
        while True:
            changes = await call(request, data.task_changes, store, tid, log_after,
                                 output_after)
            for seq, text in changes["output"]:
                await resp.write(message("output", {"seq": seq, "text": text}))
                output_after = seq
            for entry in changes["events"]:
                await resp.write(message("log", {"entry": entry, "html": timeline.row(entry)}))
                log_after = entry["seq"]
            if changes["updated"] != updated:
                updated = changes["updated"]
                live = await call(request, task_live, store, tid)
                timeline.children = live["detail"]["children"]
                sections = pages.live_sections(live if frames else {**live, "step": 0})
                await resp.write(message("live", {"status": changes["status"],
                                                  "sections": sections}))
            if changes["output"] or changes["events"]:
                quiet = time.monotonic()
            elif changes["finished"]:
                await resp.write(message("end", {"status": changes["status"]}))
                return
            elif time.monotonic() - quiet > KEEPALIVE:
                await resp.write(b": quiet\n\n")
                quiet = time.monotonic()
            await asyncio.sleep(TASK_POLL)
    return await _stream(request, body)

