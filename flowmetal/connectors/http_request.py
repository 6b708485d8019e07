"""What an ``(http req ...)`` call asks for, as plain data, and what its answer looks like.

The request map: ``:method`` (default GET), ``:url`` (http or https), ``:headers`` (a map
of names to strings), ``:query`` (a map of names to values; a vector of values repeats
the name, once per value), and a body: ``:body`` (a
string) or ``:json`` (any value with a JSON form, sent as ``application/json``).  The
call's options: ``:timeout`` (seconds for the whole request, retries included; default
``DEFAULT_TIMEOUT``), ``:connect-timeout`` and ``:read-timeout`` (per attempt), and
``:retry``, a map with the well-known fields of a retry policy (``RetryPolicy``).

The answer is ``{:status :headers :body}`` with ``:json`` too when the response is JSON.
A timeout raises ``{:type :timeout}``; a request that fails for good (a retryable status
or a connection error after the last attempt, a status named non-retryable, a body over
the task's limit) raises ``{:type :http-error :data {...}}``.  Any other status is an
answer: a 404 is a response, not an error.
"""

from __future__ import annotations

import math
import re
from typing import Any
from urllib.parse import urlsplit

from .. import json_values
from ..printer import bounded_string
from ..structs import dataclass, field, fields
from ..values import FlowmetalError, Keyword, Map, Vector, kw, truthy

DEFAULT_TIMEOUT = 60.0          # seconds for the whole request, retries included
DEFAULT_CONNECT_TIMEOUT = 10.0  # per attempt
DEFAULT_READ_TIMEOUT = 30.0     # per attempt, between bytes read
DEFAULT_MAX_BODY = 1 << 20      # bytes of a response body a task accepts
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)

K_STATUS, K_HEADERS, K_BODY, K_JSON = kw("status"), kw("headers"), kw("body"), kw("json")
_REQUEST_KEYS = ("method", "url", "headers", "query", "body", "json")
_OPTION_KEYS = ("timeout", "connect-timeout", "read-timeout", "retry")
_RETRY_KEYS = ("initial-interval", "backoff-coefficient", "maximum-interval",
               "maximum-attempts", "retry-statuses", "non-retryable-statuses",
               "retry-connection-errors")


@dataclass(slots=True)
class RetryPolicy:
    """When an attempt that failed is made again (the fields of Temporal's retry policy,
    for HTTP): the n-th retry waits ``initial_interval * backoff_coefficient ** (n - 1)``
    seconds, at most ``maximum_interval``; ``maximum_attempts`` counts the first attempt
    too (0: no limit but the request's timeout)."""

    initial_interval: float = 1.0
    backoff_coefficient: float = 2.0
    maximum_interval: float = 100.0
    maximum_attempts: int = 5
    retry_statuses: list[int] = field(default_factory=lambda: list(RETRY_STATUSES))
    non_retryable_statuses: list[int] = field(default_factory=list)
    retry_connection_errors: bool = True

    def delay(self, attempts: int) -> float:
        """Seconds to wait after ``attempts`` failed attempts."""
        return min(self.maximum_interval,
                   self.initial_interval * self.backoff_coefficient ** max(0, attempts - 1))

    def more(self, attempts: int) -> bool:
        """Whether another attempt may follow ``attempts`` made."""
        return self.maximum_attempts == 0 or attempts < self.maximum_attempts


@dataclass(slots=True)
class HttpSpec:
    """One HTTP request as plain data (stored in its outbox entry)."""

    method: str
    url: str
    headers: list[tuple[str, str]]
    query: list[tuple[str, str]]
    body: bytes | None
    timeout: float
    connect_timeout: float
    read_timeout: float
    retry: RetryPolicy
    max_body: int = DEFAULT_MAX_BODY

    def as_dict(self, max_body: int | None = None) -> dict:
        """The spec as plain data (CBOR-able): the method, the URL and the fields that
        differ from their defaults (an outbox entry is encoded and decoded a few times
        per request, at a cost per item; ``from_dict`` fills the rest in); with
        ``max_body``, the body limit of the task that asks in place of its own."""
        out: dict[str, Any] = {"method": self.method, "url": self.url}
        if self.headers:
            out["headers"] = [list(h) for h in self.headers]
        if self.query:
            out["query"] = [list(q) for q in self.query]
        if self.body is not None:
            out["body"] = self.body
        for name, default in _SPEC_DEFAULTS:
            value = getattr(self, name)
            if name == "max_body" and max_body is not None:
                value = max_body
            if value != default:
                out[name] = value
        retry = self.retry
        changed = {name: getattr(retry, name) for name, default in _RETRY_DEFAULTS
                   if getattr(retry, name) != default}
        for name in ("retry_statuses", "non_retryable_statuses"):
            if name in changed:
                changed[name] = list(changed[name])
        if changed:
            out["retry"] = changed
        return out

    @classmethod
    def from_dict(cls, data: dict) -> HttpSpec:
        """The spec ``as_dict`` made (also one with every field, as stored before)."""
        get = data.get
        retry = get("retry")
        return cls(data["method"], data["url"], [tuple(h) for h in get("headers", ())],
                   [tuple(q) for q in get("query", ())], get("body"),
                   get("timeout", DEFAULT_TIMEOUT),
                   get("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
                   get("read_timeout", DEFAULT_READ_TIMEOUT),
                   _DEFAULT_RETRY if retry is None else RetryPolicy(**retry),
                   get("max_body", DEFAULT_MAX_BODY))


_SPEC_DEFAULTS = (("timeout", DEFAULT_TIMEOUT), ("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
                  ("read_timeout", DEFAULT_READ_TIMEOUT), ("max_body", DEFAULT_MAX_BODY))
_RETRY_DEFAULTS = tuple((name, getattr(RetryPolicy(), name))
                        for name in (f.name for f in fields(RetryPolicy)))
_DEFAULT_RETRY = RetryPolicy()  # the policy of a spec without one (only ever read)


_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # (a tab is allowed in a value)


def _fail(message: str) -> FlowmetalError:
    return FlowmetalError(f"http: {message}", "type-error")


def _map(value: Any, what: str) -> Map:
    if value is None:
        return Map()
    if type(value) is not Map:
        raise _fail(f"{what} must be a map, got {bounded_string(value, 80)}")
    return value


def _name(key: Any, what: str) -> str:
    if type(key) is Keyword:
        return key.name
    if type(key) is str and key:
        return key
    raise _fail(f"{what} names must be keywords or strings, got {bounded_string(key, 80)}")


def _keys(value: Map, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    out = {}
    for key, item in value.items():
        if type(key) is not Keyword or key.name not in allowed:
            raise _fail(f"unknown {what} key {bounded_string(key, 80)} (known: "
                        f"{', '.join(':' + k for k in allowed)})")
        out[key.name] = item
    return out


def _seconds(value: Any, what: str, default: float) -> float:
    if value is None:
        return default
    if type(value) not in (int, float) or not 0 < value < math.inf:
        raise _fail(f"{what} must be a finite number of seconds > 0, got "
                    f"{bounded_string(value, 80)}")
    return float(value)


def _header(key: Any, value: Any) -> tuple[str, str]:
    """A header as sent: a token for its name (RFC 9110), and a value on one line."""
    name, text = _name(key, "header"), _text(value)
    if not _TOKEN.fullmatch(name):
        raise _fail(f"the header name {bounded_string(name, 80)} is not a token (letters, "
                    "digits and !#$%&'*+-.^_`|~)")
    if _CONTROL.search(text):
        raise _fail(f"the value of header {name} holds a line break or another control "
                    "character")
    return name, text


def _query(key: Any, value: Any) -> list[tuple[str, str]]:
    """A query parameter; a vector of values repeats it, once per value, in order."""
    name = _name(key, "query")
    values = value if type(value) is Vector else (value,)
    return [(name, _text(v, f"the query parameter {name}")) for v in values]


def _url(url: Any) -> str:
    if type(url) is not str:
        raise _fail("the request needs a :url string")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (a port that is not a number, or out of range, raises)
    except ValueError as exc:
        raise _fail(f"the :url {bounded_string(url, 200)} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(f"the :url must be an http or https URL, got {bounded_string(url, 200)}")
    if _CONTROL.search(url):
        raise _fail(f"the :url {bounded_string(url, 200)} holds a control character")
    return url


def _text(value: Any, what: str = "") -> str:
    if type(value) is str:
        return value
    if type(value) is Keyword:
        return value.name
    if type(value) in (int, float):
        return str(value)
    raise _fail(f"{what + ': ' if what else ''}expected a string, got "
                f"{bounded_string(value, 80)}")


def _statuses(value: Any, what: str) -> list[int]:
    if type(value) is not Vector or any(type(v) is not int for v in value):
        raise _fail(f":{what} must be a vector of status codes")
    return list(value)


def retry_policy(value: Any) -> RetryPolicy:
    """The policy of a ``:retry`` map (nil: the default one)."""
    given = _keys(_map(value, ":retry"), _RETRY_KEYS, ":retry")
    policy = RetryPolicy()
    if "initial-interval" in given:
        policy.initial_interval = _seconds(given["initial-interval"], ":initial-interval", 1.0)
        policy.maximum_interval = 100 * policy.initial_interval
    if "backoff-coefficient" in given:
        c = given["backoff-coefficient"]
        if type(c) not in (int, float) or not c >= 1:
            raise _fail(":backoff-coefficient must be a number >= 1")
        policy.backoff_coefficient = float(c)
    if "maximum-interval" in given:
        policy.maximum_interval = _seconds(given["maximum-interval"], ":maximum-interval",
                                           policy.maximum_interval)
    if "maximum-attempts" in given:
        n = given["maximum-attempts"]
        if type(n) is not int or n < 0:
            raise _fail(":maximum-attempts must be an integer >= 0 (0: no limit)")
        policy.maximum_attempts = n
    if "retry-statuses" in given:
        policy.retry_statuses = _statuses(given["retry-statuses"], "retry-statuses")
    if "non-retryable-statuses" in given:
        policy.non_retryable_statuses = _statuses(given["non-retryable-statuses"],
                                                  "non-retryable-statuses")
    if "retry-connection-errors" in given:
        policy.retry_connection_errors = truthy(given["retry-connection-errors"])
    return policy


def http_spec(request: Any, options: dict[str, Any], max_body: int = DEFAULT_MAX_BODY
              ) -> HttpSpec:
    """The spec of an ``(http request opts...)`` call (FlowmetalError if it is not one)."""
    given = _keys(_map(request, "the request"), _REQUEST_KEYS, "request")
    for key in options:
        if key not in _OPTION_KEYS:
            raise _fail(f"unknown option :{key}")
    method = _text(given.get("method", "GET")).upper()
    if method not in METHODS:
        raise _fail(f"unknown method {method} (known: {', '.join(METHODS)})")
    url = _url(given.get("url"))
    headers = [_header(k, v) for k, v in _map(given.get("headers"), ":headers").items()]
    query = [item for k, v in _map(given.get("query"), ":query").items()
             for item in _query(k, v)]
    body = None
    if "body" in given and "json" in given:
        raise _fail("give :body or :json, not both")
    if given.get("body") is not None:
        if type(given["body"]) is not str:
            raise _fail(":body must be a string (use :json for data)")
        body = given["body"].encode()
    elif "json" in given:
        body = json_values.encode(given["json"]).encode()
        if not any(h.lower() == "content-type" for h, _ in headers):
            headers.append(("Content-Type", "application/json"))
    return HttpSpec(method, url, headers, query, body,
                    _seconds(options.get("timeout"), ":timeout", DEFAULT_TIMEOUT),
                    _seconds(options.get("connect-timeout"), ":connect-timeout",
                             DEFAULT_CONNECT_TIMEOUT),
                    _seconds(options.get("read-timeout"), ":read-timeout",
                             DEFAULT_READ_TIMEOUT),
                    retry_policy(options.get("retry")), max_body)


def response_value(status: int, headers: list[tuple[str, str]], body: bytes) -> Map:
    """The answer to a request: ``{:status :headers :body}`` and ``:json`` when the
    response says it is JSON and parses.  Header names are lower case; a header sent
    more than once has its values joined by ", "; the body is text (UTF-8, undecodable
    bytes replaced)."""
    merged: dict[str, str] = {}
    for name, value in headers:
        name = name.lower()
        merged[name] = f"{merged[name]}, {value}" if name in merged else value
    out = {K_STATUS: status, K_HEADERS: Map(merged), K_BODY: body.decode("utf-8", "replace")}
    ctype = merged.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json" or ctype.endswith("+json"):
        try:
            out[K_JSON] = json_values.decode(body)
        except FlowmetalError:
            pass  # the body says what it is; :json is only there when it parses
    return Map(out)
