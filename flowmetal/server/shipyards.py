"""The control plane's shipyard endpoints: ``PUT /api/v1/project/{project}/shipyard``
stores a shipyard (YAML or JSON, which is YAML too) as the project's next version;
``GET`` gives the latest or ``?version=N``, as JSON or, asked for with ``Accept:
application/yaml``, as YAML.  An invalid shipyard is a 400 whose problem names the line,
column and field (also as the members ``line``, ``column`` and ``field``)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from ..sequences import shipyards
from ..sequences.shipyard import (
    ShipyardError,
    parse_shipyard,
    shipyard_to_json,
    shipyard_yaml,
)
from .app import API, BODY_LIMIT, STORE, call, read_body
from .problems import Problem

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
REQUEST_FILE = "<request>"  # the file name errors give for a request's body


def add_routes(app: web.Application) -> None:
    """Route the shipyard endpoints."""
    r = app.router
    r.add_put(f"{API}/project/{{project}}/shipyard", put_shipyard)
    r.add_get(f"{API}/project/{{project}}/shipyard", get_shipyard)


def _project(request: web.Request) -> str:
    try:
        return shipyards.check_project(request.match_info["project"])
    except ValueError as exc:
        raise Problem(400, str(exc)) from None


async def put_shipyard(request: web.Request) -> web.Response:
    """Store the body's shipyard as the project's next version (the current one if it is
    equal to it): ``{"project", "version"}``."""
    project = _project(request)
    body = await read_body(request, BODY_LIMIT)
    try:
        text = body.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise Problem(400, f"the shipyard is not UTF-8 text (byte {exc.start})") from None
    try:
        shipyard = await asyncio.to_thread(parse_shipyard, text, REQUEST_FILE)
    except ShipyardError as exc:
        members = {"field": exc.field, "line": exc.line, "column": exc.col}
        raise Problem(400, str(exc), members={k: v for k, v in members.items()
                                              if v is not None}) from None
    version = await call(request, shipyards.apply_shipyard, request.app[STORE], shipyard,
                         project)
    return web.json_response({"project": project, "version": version})


async def get_shipyard(request: web.Request) -> web.Response:
    """The project's latest shipyard, or version ``?version=N``."""
    project = _project(request)
    text = request.query.get("version")
    wanted = None
    if text is not None:
        if not (text.isascii() and text.isdigit() and len(text) <= 18) or int(text) < 1:
            raise Problem(400, "the parameter 'version' must be a whole number from 1")
        wanted = int(text)
    store = request.app[STORE]

    def read() -> tuple[int, int, object]:
        count = shipyards.versions(store, project)
        if wanted is None:
            found = shipyards.current_shipyard(store, project)
            return count, count, found[1] if found else None
        return count, wanted, shipyards.shipyard_version(store, project, wanted)
    count, version, shipyard = await call(request, read)
    if shipyard is None:
        raise Problem(404, f"project {project} has " + (
            f"no version {version} of its shipyard (versions 1 to {count})" if count
            else "no shipyard"))
    if any(t in request.headers.get("Accept", "") for t in YAML_TYPES):
        return web.Response(text=shipyard_yaml(shipyard), content_type="application/yaml")
    return web.json_response({"project": project, "version": version, "versions": count,
                              "shipyard": shipyard_to_json(shipyard)})
