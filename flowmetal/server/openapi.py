"""The OpenAPI 3.1 document of the control plane (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from .. import __version__

LIMIT_MAX = 10 ** 15  # the largest limit a start takes (seconds: 30 million years)

_PROBLEM = {"$ref": "#/components/schemas/Problem"}
_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"},
       "description": "a task id"}


def _problems(*statuses: int) -> dict:
    text = {400: "bad request", 401: "no valid token", 403: "revoked or read-only token",
            404: "no such task", 409: "the task cannot do that now", 413: "body too large",
            422: "the idempotency key was used for another start",
            503: "the store cannot be used now"}
    return {str(s): {"description": text.get(s, "error"),
                     "content": {"application/problem+json": {"schema": _PROBLEM}}}
            for s in statuses}


def _json(schema: dict, description: str = "ok") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


_AUTH = (401, 403, 503)
_NUMBER_PARAM = {"type": "number", "minimum": 0}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


def _operation(summary: str, responses: dict, params: list | None = None,
               body: dict | None = None, public: bool = False) -> dict:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {
            ("application/cbor" if body == {} else "application/json"): {"schema": body}}}
    if public:
        op["security"] = []
    return op


def _shipyard_schemas() -> dict:
    """Keptn's shipyard (spec.keptn.sh/0.2.x) with Flowmetal's extensions."""
    name = {"type": "string", "pattern": "^[a-z]([a-z0-9-]*[a-z0-9])?$", "maxLength": 63}
    duration = {"type": "string", "description": "a Go duration: 90s, 10m, 1h30m"}

    def obj(required: list[str], **properties: Any) -> dict:
        return {"type": "object", "required": required, "properties": properties,
                "additionalProperties": False}
    task = obj(["name"], name=name, triggeredAfter=duration,
               properties={"type": "object"}, startTimeout=duration,
               finishTimeout=duration)
    trigger = obj(["event"], event={"type": "string",
                                    "description": "<stage>.<sequence>.finished"},
                  selector=obj([], match={"type": "object", "additionalProperties": {
                      "type": ["string", "number", "boolean"]}}))
    sequence = obj(["name", "tasks"], name=name,
                   triggeredOn={"type": "array", "items": trigger},
                   tasks={"type": "array", "items": task})
    stage = obj(["name"], name=name, concurrency={"type": "integer", "minimum": 1},
                sequences={"type": "array", "items": sequence})
    return {
        "Shipyard": obj(
            ["apiVersion", "kind", "metadata", "spec"],
            apiVersion={"type": "string", "pattern": r"^spec\.keptn\.sh/0\.2\.[0-9]+$"},
            kind={"const": "Shipyard"}, metadata=obj(["name"], name=name),
            spec=obj(["stages"], stages={"type": "array", "minItems": 1, "items": stage})),
        "StoredShipyard": {"type": "object", "required": ["project", "version", "shipyard"],
                           "properties": {"project": {"type": "string"},
                                          "version": {"type": "integer"},
                                          "versions": {"type": "integer"},
                                          "shipyard": _ref("Shipyard")}},
    }


def _shipyard_paths() -> dict:
    project = {"name": "project", "in": "path", "required": True,
               "schema": {"type": "string"}, "description": "a project's name"}
    put = _operation("Store a shipyard (YAML or JSON) as the project's next version (the "
                     "current one if equal to it)", {
                         "200": _json({"type": "object", "properties": {
                             "project": {"type": "string"},
                             "version": {"type": "integer"}}}, "stored"),
                         **_problems(400, 413, *_AUTH)}, params=[project])
    put["requestBody"] = {"required": True, "content": {
        "application/yaml": {"schema": _ref("Shipyard")},
        "application/json": {"schema": _ref("Shipyard")}}}
    get = _operation("A version of the project's shipyard (default: the latest)", {
        "200": {"description": "the shipyard", "content": {
            "application/json": {"schema": _ref("StoredShipyard")},
            "application/yaml": {"schema": _ref("Shipyard")}}},
        **_problems(400, 404, *_AUTH)}, params=[
            project, _query("version", {"type": "integer", "minimum": 1}, "a version")])
    return {"put": put, "get": get}


def _sequence_schemas() -> dict:
    """Keptn's CloudEvents and the task events handed to workers."""
    text = {"type": "string", "minLength": 1, "maxLength": 4096}
    return {
        "KeptnEvent": {"type": "object", "required": ["specversion", "id", "source", "type"],
                       "properties": {
                           "specversion": {"type": "string", "enum": ["1.0"]},
                           "id": text, "source": text,
                           "type": {"type": "string", "pattern": "^sh\\.keptn\\.event\\.",
                                    "description": "sh.keptn.event.<stage>.<sequence>."
                                    "triggered starts a run; sh.keptn.event.<task>.started, "
                                    ".status.changed, .finished answer a task event"},
                           "time": {"type": "string"}, "shkeptncontext": text,
                           "triggeredid": text,
                           "flowmetallock": {"type": "string",
                                             "description": "the lock of the claim"},
                           "flowmetallockseconds": {"type": "number", "minimum": 1,
                                                    "maximum": 3600},
                           "data": {"type": "object"}}},
        "Claim": {"type": "object", "required": ["worker", "types"], "properties": {
            "worker": {"type": "string", "minLength": 1, "maxLength": 200,
                       "pattern": "^[^:]+$"},
            "types": {"type": "array", "minItems": 1,
                      "items": {"type": "string", "minLength": 1, "maxLength": 200}},
            "max": {"type": "integer", "minimum": 1, "maximum": 100},
            "lockSeconds": {"type": "number", "minimum": 1, "maximum": 3600},
            "waitSeconds": {"type": "number", "minimum": 0, "maximum": 300}}},
        "Claimed": {"type": "object", "required": ["events"], "properties": {
            "events": {"type": "array", "items": {"type": "object", "properties": {
                "event": _ref("KeptnEvent"), "lock": {"type": "string"},
                "lockedUntil": {"type": "string"}}}}}},
        "Run": {"type": "object", "properties": {
            name: {"type": ["string", "null"]} for name in (
                "task", "project", "stage", "sequence", "service", "context", "status",
                "state", "detail", "blocked_by", "task_type", "worker")}},
    }


def _sequence_paths() -> dict:
    run_id = {**_ID, "description": "a run's task id"}
    refused = {str(s): {"description": d, "content": {
        "application/problem+json": {"schema": _PROBLEM}}} for s, d in (
            (409, "the lock expired or is another worker's"),
            (410, "the run no longer waits on this task event"))}
    return {
        "/api/v1/event": {"post": _operation(
            "A Keptn CloudEvent: a sequence's .triggered starts a run; a worker's task "
            ".started, .status.changed (a heartbeat) or .finished answers its task event", {
                "201": _json({"type": "object", "properties": {
                    "keptnContext": {"type": "string"}, "task": {"type": "string"},
                    "project": {"type": "string"}}}, "a run started"),
                "200": _json({"type": "object", "properties": {
                    "triggeredid": {"type": "string"}, "phase": {"type": "string"},
                    "lockedUntil": {"type": "string"}, "keptnContext": {"type": "string"},
                    "task": {"type": "string"}, "project": {"type": "string"}}},
                    "taken; or, for a .triggered sent again, the run it started"),
                **_problems(400, 404, 413, *_AUTH), **refused}, body=_ref("KeptnEvent"))},
        "/api/v1/task-events/claim": {"post": _operation(
            "Fetch and lock task events of these types (a long poll with waitSeconds)", {
                "200": _json(_ref("Claimed")), **_problems(400, 413, *_AUTH)},
            body=_ref("Claim"))},
        "/api/v1/sequences": {"get": _operation(
            "The latest runs, what each waits on, and the task types no worker serves", {
                "200": _json({"type": "object", "properties": {
                    "runs": {"type": "array", "items": _ref("Run")},
                    "warnings": {"type": "array", "items": {"type": "string"}}}}),
                **_problems(*_AUTH)})},
        "/api/v1/sequences/{id}/{action}": {"post": _operation(
            "Pause, resume or abort a run", {
                "202": _json({"type": "object", "properties": {
                    "task": {"type": "string"}, "action": {"type": "string"},
                    "status": {"type": "string"}}}, "asked"),
                **_problems(404, 409, *_AUTH)},
            params=[run_id, {"name": "action", "in": "path", "required": True,
                             "schema": {"type": "string",
                                        "enum": ["pause", "resume", "abort"]}}])},
    }


def document() -> dict:
    """The document."""
    nullable_str = {"type": ["string", "null"]}
    nullable_num = {"type": ["number", "null"]}
    schemas = {
        "Problem": {"type": "object", "required": ["status", "title"], "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"}}},
        "Waiting": {"type": ["object", "null"], "properties": {
            "op": {"type": "string"}, "until": nullable_num, "task": nullable_str,
            "default_wait": {"type": "boolean"}}},
        "TaskSummary": {"type": "object", "required": ["id", "status"], "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "program": {"type": "string"}, "status": {"type": "string"},
            "running": {"type": "boolean"}, "blocked": nullable_str,
            "created": {"type": "number"}, "updated": {"type": "number"},
            "age_seconds": {"type": "number"}, "waiting": _ref("Waiting"),
            "parent": nullable_str, "steps": {"type": "integer"},
            "reductions": {"type": "integer"}}},
        "TaskDetail": {"allOf": [_ref("TaskSummary"), {"type": "object", "properties": {
            "file": nullable_str, "children": {"type": "array", "items": {"type": "string"}},
            "limits": {"type": "object"}, "inbox": {"type": "integer"},
            "result": nullable_str, "error": nullable_str, "error_text": nullable_str,
            "frames": {"type": "array", "items": {"type": "object"}},
            "frames_error": nullable_str}}]},
        "TaskPage": {"type": "object", "required": ["tasks", "next"], "properties": {
            "tasks": {"type": "array", "items": _ref("TaskSummary")},
            "next": nullable_str, "counts": {"type": "object",
                                            "additionalProperties": {"type": "integer"}}}},
        "StartTask": {"type": "object", "properties": {
            "program": {"type": ["string", "null"], "minLength": 1, "maxLength": 200,
                        "description": "a deployed name or a hash"},
            "source": {"type": ["string", "null"], "description": "a program's text"},
            "file": nullable_str,
            "args": {"type": ["array", "null"], "items": {"type": "string"}},
            "limits": {"type": ["object", "null"], "properties": {
                "fuel": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
                "depth": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
                "state": {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX},
                "deadline": {"type": "number", "exclusiveMinimum": 0,
                             "maximum": LIMIT_MAX},
                "wait": {"type": "number", "exclusiveMinimum": 0, "maximum": LIMIT_MAX},
                "response_body": {"type": "integer", "minimum": 1,
                                  "maximum": LIMIT_MAX}},
                "additionalProperties": False},
            "idempotency_key": {"type": ["string", "null"], "minLength": 1,
                                "maxLength": 255}}},
        "Deploy": {"type": "object", "required": ["name", "source"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 200},
            "source": {"type": "string"}, "file": nullable_str}},
        "Message": {"type": "object", "properties": {
            "form": {"type": "string", "description": "Flowmetal data, read, not evaluated"},
            "json": {"description": "any JSON value"}}},
        **_shipyard_schemas(),
        **_sequence_schemas(),
    }
    paths = {
        "/healthz": {"get": _operation("Whether the server can read its store", {
            "200": _json({"type": "object"}), **_problems(503)}, public=True)},
        "/openapi.json": {"get": _operation("This document", {
            "200": _json({"type": "object"})}, public=True)},
        "/api/v1/programs": {"post": _operation("Store a program under a name", {
            "201": _json({"type": "object", "properties": {
                "name": {"type": "string"}, "program": {"type": "string"}}}, "deployed"),
            **_problems(400, 413, *_AUTH)}, body=_ref("Deploy"))},
        "/api/v1/tasks": {
            "post": _operation("Start a task", {
                "201": _json(_ref("TaskSummary"), "started"),
                "200": _json(_ref("TaskSummary"), "started before, with this key"),
                **_problems(400, 404, 409, 413, 422, *_AUTH)},
                params=[{"name": "Idempotency-Key", "in": "header", "required": False,
                         "schema": {"type": "string", "minLength": 1, "maxLength": 255}}],
                body=_ref("StartTask")),
            "get": _operation("List tasks", {"200": _json(_ref("TaskPage")),
                                             **_problems(400, *_AUTH)}, params=[
                _query("status", {"type": "array", "items": {"type": "string", "enum": [
                    "runnable", "waiting", "done", "failed", "cancelled", "moved"]}},
                    "only tasks with this status (given more than once: any of them)"),
                _query("program", {"type": "string"}, "a program hash or prefix"),
                _query("name", {"type": "string"}, "the task's name"),
                _query("parent", {"type": "string"}, "the parent task"),
                _query("id", {"type": "string"}, "an id prefix"),
                _query("since", {"type": "number", "minimum": 0, "maximum": 1e11},
                       "created at or after (seconds since the epoch)"),
                _query("until", {"type": "number", "minimum": 0, "maximum": 1e11},
                       "created before"),
                _query("after", {"type": "string"}, "the 'next' of the previous page"),
                _query("order", {"type": "string", "enum": ["asc", "desc"]},
                       "id order (asc, the default) or newest first (desc)"),
                _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000},
                       "tasks per page (default 100)"),
                _query("counts", {"type": "boolean"},
                       "also count the matching tasks, by status")])},
        "/api/v1/tasks/{id}": {"get": _operation("One task", {
            "200": _json(_ref("TaskDetail")), **_problems(404, *_AUTH)}, params=[_ID])},
        "/api/v1/tasks/{id}/log": {"get": _operation("The task's event log", {
            "200": _json({"type": "object", "properties": {
                "events": {"type": "array", "items": {"type": "object"}}}}),
            **_problems(400, 404, *_AUTH)}, params=[
                _ID, _query("after", {"type": "integer", "minimum": 0}, "entries after")])},
        "/api/v1/tasks/{id}/output": {"get": _operation(
            "The task's output (a long poll with 'wait'; server-sent events with Accept: "
            "text/event-stream)", {"200": _json({"type": "object", "properties": {
                "output": {"type": "array", "items": {"type": "object"}},
                "finished": {"type": "boolean"}}}), **_problems(400, 404, *_AUTH)},
            params=[_ID, _query("after", {"type": "integer", "minimum": 0}, "after"),
                    _query("wait", {**_NUMBER_PARAM, "maximum": 300}, "seconds")])},
        "/api/v1/tasks/{id}/frames": {"get": _operation(
            "The frames of the task's continuation", {"200": _json({"type": "object"}),
                                                      **_problems(404, *_AUTH)},
            params=[_ID])},
        "/api/v1/tasks/{id}/result": {"get": _operation(
            "The task's result once it ends (a long poll with 'wait')", {
                "200": _json({"type": "object"}),
                "202": _json(_ref("TaskSummary"), "not ended yet"),
                **_problems(400, 404, *_AUTH)},
            params=[_ID, _query("wait", {**_NUMBER_PARAM, "maximum": 300}, "seconds")])},
        "/api/v1/tasks/{id}/export": {"post": _operation(
            "Export the task (it is marked moved here)", {
                "200": {"description": "the export file",
                        "content": {"application/cbor": {"schema": {}}}},
                **_problems(404, 409, *_AUTH)}, params=[_ID])},
        "/api/v1/tasks/{id}/messages": {"post": _operation(
            "Put a message in the task's inbox", {
                "201": _json({"type": "object", "properties": {
                    "seq": {"type": "integer"}, "delivered": {"type": "boolean"},
                    "status": {"type": "string"}}}, "queued"),
                **_problems(400, 404, 409, 413, *_AUTH)},
            params=[_ID], body=_ref("Message"))},
        "/api/v1/tasks/{id}/cancel": {"post": _operation("Cancel the task", {
            "202": _json({"type": "object"}, "asked to cancel"),
            **_problems(404, 409, *_AUTH)}, params=[_ID])},
        "/api/v1/store/{op}": {"post": _operation(
            "One operation on the store (what `flowmetal --server URL` uses), its "
            "arguments and result a CBOR map", {
                "200": {"description": "the operation's result",
                        "content": {"application/cbor": {"schema": {}}}},
                **_problems(400, 404, 409, 413, *_AUTH),
                "415": {"description": "not CBOR", "content": {
                    "application/problem+json": {"schema": _PROBLEM}}}},
            params=[{"name": "op", "in": "path", "required": True,
                     "schema": {"type": "string"}}],
            body={})},
        "/api/v1/project/{project}/shipyard": _shipyard_paths(),
        **_sequence_paths(),
        "/callbacks/{token}": {"post": _operation(
            "Deliver a request to a task's callback (the token is the capability)", {
                "202": _json({"type": "object"}, "delivered"),
                **_problems(401, 404, 413, 503),
                "410": {"description": "used up or expired", "content": {
                    "application/problem+json": {"schema": _PROBLEM}}},
                "429": {"description": "too many waiting", "content": {
                    "application/problem+json": {"schema": _PROBLEM}}}},
            params=[{"name": "token", "in": "path", "required": True,
                     "schema": {"type": "string"}}], public=True)},
    }
    paths["/callbacks/{token}"]["post"]["requestBody"] = {
        "required": False, "content": {"*/*": {"schema": {}}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Flowmetal control plane", "version": __version__},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
