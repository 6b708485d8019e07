"""A real HTTP service on 127.0.0.1 for the connector tests: slow, failing, flaky and
connection-dropping endpoints, and a record of every request it received.

Endpoints:
    /ok            200, JSON: the method, query, headers' Idempotency-Key, body
    /status/N      status N, a short text body
    /flaky/N       503 for the first N requests under one Idempotency-Key, then 200
    /slow/S        200 after S seconds
    /drop          closes the connection without an answer
    /big/N         200 with N bytes of body (a HEAD: no body, and Content-Length N)
    /raw-json      200, application/json holding a lone surrogate escape
    /later         429 with an HTTP-date Retry-After two seconds ahead for the first
                   request under one Idempotency-Key, then 200
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

from .threaded_app import ThreadedApp


@dataclass
class Seen:
    """A request the service received."""

    method: str
    path: str
    key: str | None
    body: bytes
    headers: dict = field(default_factory=dict)


class HttpService(ThreadedApp):
    """The service; ``url(path)`` addresses it once started."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._flaky: Counter = Counter()
        app = web.Application()
        app.router.add_route("*", "/ok", self._ok)
        app.router.add_get("/status/{n}", self._status)
        app.router.add_get("/flaky/{n}", self._flaky_endpoint)
        app.router.add_get("/slow/{s}", self._slow)
        app.router.add_get("/drop", self._drop)
        app.router.add_get("/big/{n}", self._big)
        app.router.add_get("/raw-json", self._raw_json)
        app.router.add_get("/later", self._later)
        super().__init__(app, "the test HTTP service")

    def keys(self, path_prefix: str = "") -> Counter:
        """How many requests arrived under each Idempotency-Key (of paths so prefixed)."""
        with self._lock:
            return Counter(s.key for s in self.seen if s.path.startswith(path_prefix))

    def count(self, path_prefix: str = "") -> int:
        """How many requests arrived (at paths so prefixed)."""
        with self._lock:
            return sum(1 for s in self.seen if s.path.startswith(path_prefix))

    # -- serving ----------------------------------------------------------------------

    async def _record(self, request: web.Request) -> Seen:
        body = await request.read()
        seen = Seen(request.method, request.path, request.headers.get("Idempotency-Key"),
                    body, dict(request.headers))
        with self._lock:
            self.seen.append(seen)
        return seen

    async def _ok(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        query = {k: ",".join(request.query.getall(k)) for k in request.query}
        return web.json_response({"method": seen.method, "query": query,
                                  "key": seen.key, "body": seen.body.decode(),
                                  "type": request.headers.get("Content-Type")})

    async def _status(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(status=int(request.match_info["n"]), text="status")

    async def _flaky_endpoint(self, request: web.Request) -> web.Response:
        seen = await self._record(request)
        with self._lock:
            self._flaky[seen.key] += 1
            count = self._flaky[seen.key]
        if count <= int(request.match_info["n"]):
            return web.Response(status=503, text="busy")
        return web.Response(text=f"ok after {count}")

    async def _slow(self, request: web.Request) -> web.Response:
        await self._record(request)
        await asyncio.sleep(float(request.match_info["s"]))
        return web.Response(text="slow")

    async def _drop(self, request: web.Request) -> web.Response:
        await self._record(request)
        assert request.transport is not None
        request.transport.close()
        return web.Response(text="never sent")

    async def _big(self, request: web.Request) -> web.StreamResponse:
        await self._record(request)
        size = int(request.match_info["n"])
        if request.method == "HEAD":
            head = web.StreamResponse()
            head.content_length = size
            await head.prepare(request)
            return head
        return web.Response(body=b"x" * size)

    async def _raw_json(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.Response(body=b'{"x": "\\ud800"}', content_type="application/json")

    async def _later(self, request: web.Request) -> web.Response:
        from email.utils import formatdate

        seen = await self._record(request)
        with self._lock:
            self._flaky[seen.key] += 1
            first = self._flaky[seen.key] == 1
        if first:
            return web.Response(status=429, text="later", headers={
                "Retry-After": formatdate(time.time() + 2, usegmt=True)})
        return web.Response(text="now")
