"""Signing in to the web UI: the session cookie, CSRF tokens, same-site checks and the
one-time sign-in codes of ``flowmetal serve --open``.

A session is the control-plane token itself, kept in an HttpOnly, SameSite=Strict
cookie and signed with a key of the store's (the setting ``ui:session-key``, made on
first use), so that it expires after ``SESSION_SECONDS`` whatever the token does and so
that a server restart keeps it.  Each request with the cookie checks the token with the
store again: a revoked token ends its sessions at once.  The CSRF token of a session is
an HMAC of its token under the same key, so it needs no state either.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web

from ..server.app import STORE, call
from ..server.problems import Problem

COOKIE = "flowmetal_session"
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
KEY_SETTING = "ui:session-key"
SESSION_SECONDS = 12 * 3600
CODE_SECONDS = 300             # a one-time sign-in code lasts five minutes
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
KEY = web.AppKey("ui-session-key", dict)  # {"key": bytes} once read from the store
CODES = web.AppKey("ui-sign-in-codes", dict)
# The request key of a UI request's ``SignedIn`` (aiohttp 3.12 has typed request keys).
WHO: Any = web.RequestKey("ui-who", object) if hasattr(web, "RequestKey") else "ui-who"


@dataclass(frozen=True)
class SignedIn:
    """Who a UI request comes from: the token, its record, and the session's CSRF token."""

    token: str
    record: Any   # records.TokenRecord
    csrf: str

    @property
    def may_write(self) -> bool:
        """Whether the token may change things (its scope is ``write``)."""
        return self.record.scope == "write"


def setup(app: web.Application) -> None:
    """Prepare the app for sessions (the table of one-time codes)."""
    app[CODES] = {}
    app[KEY] = {}


async def signing_key(request: web.Request) -> bytes:
    """The store's key for session cookies (made the first time)."""
    box = request.app[KEY]
    if "key" not in box:
        store = request.app[STORE]
        text = await call(request, store.update_setting, KEY_SETTING,
                          lambda old: old or secrets.token_hex(32))
        box["key"] = bytes.fromhex(text)
    return box["key"]


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def cookie_value(key: bytes, token: str, now: float) -> str:
    """The signed cookie of a session for ``token`` made at ``now``."""
    body = f"v1.{int(now) + SESSION_SECONDS}.{token}"
    return f"{body}.{_mac(key, body)}"


def cookie_token(key: bytes, value: str, now: float) -> str | None:
    """The token of a cookie whose signature holds and which has not expired."""
    body, _, mac = value.rpartition(".")
    version, _, rest = body.partition(".")
    expires, _, token = rest.partition(".")
    if version != "v1" or not expires.isdigit() or not token:
        return None
    if not hmac.compare_digest(mac, _mac(key, body)) or int(expires) < now:
        return None
    return token


def csrf_token(key: bytes, token: str) -> str:
    """The CSRF token of the session of ``token``."""
    return _mac(key, "csrf." + token)[:32]


def check_same_site(request: web.Request) -> None:
    """Refuse (403) a request a browser says comes from another site or origin."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        raise Problem(403, f"a cross-site request ({fetch_site}) may not change anything")
    origin = request.headers.get("Origin")
    if origin is not None and origin != own_origin(request):
        raise Problem(403, f"a request from another origin ({origin[:100]}) may not change "
                      "anything")


def own_origin(request: web.Request) -> str:
    """This server's origin as the browser sees it."""
    return f"{request.scheme}://{request.host}"


async def session_token(request: web.Request) -> str | None:
    """The token of the request's session cookie, if it is valid."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    return cookie_token(await signing_key(request), value, time.time())


async def api_token(request: web.Request) -> str | None:
    """For the API called from the UI: the session's token, once a request that changes
    something has shown it is same-site and carries the session's CSRF token (403
    otherwise); None without a session cookie."""
    token = await session_token(request)
    if token is None:
        return None
    if request.method not in SAFE_METHODS:
        check_same_site(request)
        given = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(given, csrf_token(await signing_key(request), token)):
            raise Problem(403, f"a request made with the UI's session needs its "
                          f"{CSRF_HEADER} header")
    return token


async def signed_in(request: web.Request) -> SignedIn | None:
    """Who the request's session is, or None (no cookie, a bad one, or a token that is
    unknown or revoked now)."""
    token = await session_token(request)
    if token is None:
        return None
    rec = await call(request, request.app[STORE].token_check, token)
    if rec is None or rec.revoked is not None:
        return None
    return SignedIn(token, rec, csrf_token(await signing_key(request), token))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def page(handler: Handler) -> Handler:
    """A UI handler that needs a session: without one, a GET is sent to the sign-in
    page and anything else refused (401); a POST must be same-site and carry the
    session's CSRF token in its form (403)."""
    async def run(request: web.Request) -> web.StreamResponse:
        who = await signed_in(request)
        if who is None:
            if request.method in SAFE_METHODS:
                raise web.HTTPSeeOther("/signin?next=" + quote(request.path_qs, safe=""))
            raise Problem(401, "sign in first (/signin)")
        if request.method not in SAFE_METHODS:
            check_same_site(request)
            form = await request.post()
            given = form.get(CSRF_FIELD)
            if type(given) is not str or not hmac.compare_digest(given, who.csrf):
                raise Problem(403, "the form's CSRF token is missing or wrong: reload the "
                              "page and try again")
        request[WHO] = who
        return await handler(request)
    run.__doc__ = handler.__doc__
    run.__name__ = handler.__name__
    return run


def set_session(response: web.StreamResponse, request: web.Request, key: bytes,
                token: str) -> None:
    """Give the response the session cookie of ``token``."""
    response.set_cookie(COOKIE, cookie_value(key, token, time.time()),
                        max_age=SESSION_SECONDS, path="/", httponly=True, samesite="Strict",
                        secure=request.scheme == "https")


def end_session(response: web.StreamResponse) -> None:
    """Remove the session cookie."""
    response.del_cookie(COOKIE, path="/")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path of this server only (never another site)."""
    if not target or not target.startswith("/") or target.startswith("//") or \
            "\\" in target:
        return "/"
    return target


# -- one-time sign-in codes ---------------------------------------------------------------

def issue_code(app: web.Application, token: str, now: float | None = None) -> str:
    """A single-use code that signs in with ``token`` within ``CODE_SECONDS``."""
    now = time.monotonic() if now is None else now
    codes = app[CODES]
    for digest, (_, until) in list(codes.items()):
        if until < now:
            del codes[digest]
    code = secrets.token_urlsafe(24)
    codes[hashlib.sha256(code.encode()).hexdigest()] = (token, now + CODE_SECONDS)
    return code


def redeem_code(app: web.Application, code: str, now: float | None = None) -> str | None:
    """The token of a code not used yet and not expired (the code is used up)."""
    now = time.monotonic() if now is None else now
    found = app[CODES].pop(hashlib.sha256(code.encode()).hexdigest(), None)
    if found is None or found[1] < now:
        return None
    return found[0]


def sign_in_url(base: str, code: str) -> str:
    """The one-time sign-in URL of ``code`` on the server at ``base``."""
    return f"{base.rstrip('/')}/signin/once?code={quote(code, safe='')}"


OPEN_TOKEN_NAME = "flowmetal serve --open"


def open_link(app: web.Application, store: Any, base: str) -> str:
    """For ``flowmetal serve --open``: a write token of its own (revoked when the app
    shuts down, so its sessions end with the server) and a one-time sign-in URL for it."""
    token, rec = store.token_create(OPEN_TOKEN_NAME, "write")

    async def revoke(app: web.Application) -> None:
        store.token_revoke(rec.id)
    app.on_cleanup.append(revoke)
    return sign_in_url(base, issue_code(app, token))
