"""Errors of the control plane as ``application/problem+json`` (RFC 9457)."""

from __future__ import annotations

import json
from http import HTTPStatus

from aiohttp import web

from ..store.remote import NO_SUCH_PATH

PROBLEM_TYPE = "application/problem+json"


class Problem(Exception):
    """A request the server answers with an error: its status and what to tell the
    client."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None,
                 members: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.members = members or {}  # extension members of the problem (RFC 9457 3.2)


def response(status: int, detail: str, headers: dict[str, str] | None = None,
             members: dict | None = None) -> web.Response:
    """The problem+json response of an error."""
    body = {**(members or {}), "type": "about:blank", "title": HTTPStatus(status).phrase,
            "status": status, "detail": detail}
    return web.Response(status=status, text=json.dumps(body), content_type=PROBLEM_TYPE,
                        headers=headers)


@web.middleware
async def problems(request: web.Request, handler) -> web.StreamResponse:
    """Turn every error into problem+json: a ``Problem``, aiohttp's own HTTP errors (404
    for an unknown path, 405, 413 ...), and, as a 500 without internals, anything else."""
    try:
        return await handler(request)
    except Problem as exc:
        return response(exc.status, exc.detail, exc.headers, exc.members)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else \
            HTTPStatus(exc.status).description
        if type(exc) is web.HTTPNotFound:  # (the router's: no route has this path)
            detail = f"{NO_SUCH_PATH} {request.path[:200]}"
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow",)}
        return response(exc.status, detail, headers)
    except Exception as exc:  # noqa: BLE001  (the client gets a 500, the log the cause)
        from .app import LOG

        request.app[LOG](f"flowmetal serve: {request.method} {request.path}: "
                           f"{type(exc).__name__}: {exc}")
        return response(500, "internal error: the server's log says more")
