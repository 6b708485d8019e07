"""The outside world: HTTP requests (answered by a connector through the outbox), JSON,
and the environment (answered once and recorded, like ``now``)."""

from __future__ import annotations

from typing import Any

from .. import json_values
from ..connectors.http_request import http_spec
from ..printer import shown
from ..procedures import CONTROL, define
from ..values import FlowmetalError, Keyword, Map, Vector, boolean, kw, truthy
from .effects import K_OP, TaskId, _options, _request, _seconds

# The requests of the last calls made with a request map, by its id: (the map, the
# options given, the request, its spec).  A loop calling ``http`` with one literal map
# and the same option values (the same objects) asks with the same request each time:
# checked once, and a value its task's state has encoded already.  Values are immutable,
# and a spec is only ever read.
_CALLS: dict[int, tuple] = {}
CALLS_KEPT = 256


@define("http", CONTROL, 1, None)
def http(m: Any, args: tuple, k: Any) -> tuple:
    """(http {:method :url :headers :query :body|:json} :timeout s :retry policy): make an
    HTTP request; its response {:status :headers :body :json}.  Sent once the step is
    committed, with an Idempotency-Key that stays the same across retries; a timeout
    raises {:type :timeout}, a request that fails for good {:type :http-error}."""
    given, rest = args[0], args[1:]
    kept = _CALLS.get(id(given))
    if kept is not None and kept[0] is given and len(kept[1]) == len(rest) and \
            all(a is b for a, b in zip(kept[1], rest)):
        request, spec = kept[2], kept[3]
    else:
        options = _options("http", rest, ("timeout", "connect-timeout", "read-timeout",
                                          "retry"))
        spec = http_spec(given, options)  # errors are raised here, where the call is
        request = _request("http", request=given,
                           options=Map({kw(k): v for k, v in options.items()}))
        if len(_CALLS) >= CALLS_KEPT:
            _CALLS.clear()
        _CALLS[id(given)] = (given, rest, request, spec)
    m.http_spec = (request, spec)  # the worker takes it for this request (not stored)
    return m.suspend(request, k)


@define("env", CONTROL, 1)
def env(m: Any, args: tuple, k: Any) -> tuple:
    """(env "NAME"): the environment variable of the worker that first runs this, or nil;
    recorded, so the task sees the same value when it resumes anywhere."""
    if type(args[0]) is not str:
        raise FlowmetalError(f"env: expected a name string, got {shown(args[0])}",
                             "type-error")
    return m.suspend(_request("env", name=args[0]), k)


@define("callback", CONTROL, 0, None)
def callback(m: Any, args: tuple, k: Any) -> tuple:
    """(callback :timeout s :multi true :secret "whsec_..."): a URL others can POST to,
    as {:url :token :id :expires}; take what arrives there with (await cb).  It takes one
    request (any number with :multi true) until it expires (:timeout, default the task's
    wait); with :secret, only requests signed as Standard Webhooks say."""
    opts = _options("callback", args, ("timeout", "multi", "secret"))
    secret = opts.get("secret")
    if secret is not None and (type(secret) is not str or not secret):
        raise FlowmetalError("callback: :secret must be a string (whsec_...)", "type-error")
    if secret is not None:
        from ..server.webhooks import secret_key

        secret_key(secret)  # a bad secret is an error here, not at the first request
    return m.suspend(_request("callback", timeout=_seconds("callback", opts.get("timeout"),
                                                           "timeout"),
                              multi=boolean(truthy(opts.get("multi"))), secret=secret), k)


@define("await", CONTROL, 1, 3)
def await_(m: Any, args: tuple, k: Any) -> tuple:
    """(await cb :timeout s): wait for the next request to the callback ``cb`` (made by
    this task); it is {:method :headers :query :body :json}."""
    cb = args[0]
    token = cb.get(kw("token")) if type(cb) is Map else cb
    if type(token) is not str or not token:
        raise FlowmetalError(f"await: expected a callback, got {shown(cb)}", "type-error")
    opts = _options("await", args[1:], ("timeout",))
    return m.suspend(_request("await", token=token,
                              timeout=_seconds("await", opts.get("timeout"), "timeout")), k)


SELECT_OPS = ("receive", "await", "join", "http")


@define("%select", CONTROL, 2)
def select(m: Any, args: tuple, k: Any) -> tuple:
    """(%select arms timeout): wait for the first of the arms ({:op :receive}, {:op
    :await :callback cb}, {:op :join :task t}, {:op :http :request r :options o}); see
    ``select`` in the standard library."""
    arms, timeout = args
    if type(arms) is not Vector or not arms:
        raise FlowmetalError("select: give at least one arm (on-receive, on-await, on-join "
                             "or on-http)", "type-error")
    checked = []
    for index, arm in enumerate(arms):
        op = arm.get(K_OP) if type(arm) is Map else None
        if type(op) is not Keyword or op.name not in SELECT_OPS:
            raise FlowmetalError(f"select: arm {index} is not an arm: {shown(arm)}",
                                 "type-error")
        if op.name == "await":
            cb = arm.get(kw("callback"))
            token = cb.get(kw("token")) if type(cb) is Map else cb
            if type(token) is not str or not token:
                raise FlowmetalError(f"select: arm {index}: expected a callback, got "
                                     f"{shown(cb)}", "type-error")
            arm = Map({K_OP: op, kw("token"): token})
        elif op.name == "join":
            if type(arm.get(kw("task"))) is not TaskId:
                raise FlowmetalError(f"select: arm {index}: expected a task, got "
                                     f"{shown(arm.get(kw('task')))}", "type-error")
        elif op.name == "http":
            options = arm.get(kw("options")) or Map()
            http_spec(arm.get(kw("request")),
                      {key.name: v for key, v in options.items() if type(key) is Keyword})
        checked.append(arm)
    return m.suspend(_request("select", arms=Vector(checked),
                              timeout=_seconds("select", timeout, "timeout")), k)


@define("json-encode", min_args=1)
def json_encode(value: Any) -> str:
    """The JSON text of a value (maps with keyword or string keys, vectors, lists, sets,
    strings, numbers, booleans, nil)."""
    return json_values.encode(value)


@define("json-decode", min_args=1)
def json_decode(text: Any) -> Any:
    """The value of JSON text: objects become maps with keyword keys, arrays vectors."""
    if type(text) is not str:
        raise FlowmetalError(f"json-decode: expected a string, got {shown(text)}",
                             "type-error")
    return json_values.decode(text)
