"""The web UI of ``flowmetal serve``: the task list, one task's page (its timeline,
output and live continuation), the sequences; server-rendered HTML over the control
plane's own data, a little JavaScript following server-sent events, and sign-in with a
control-plane token (``session.py``)."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).with_name("static")


def add_routes(app: web.Application) -> None:
    """Route the UI's pages, actions, event streams and static files on ``app``."""
    from . import events, handlers, session

    session.setup(app)
    events.setup(app)
    app.on_response_prepare.append(handlers.security_headers)
    r = app.router
    r.add_get("/", handlers.task_list)
    r.add_get("/tasks/{id}", handlers.task_page)
    r.add_post("/tasks/{id}/messages", handlers.send_message)
    r.add_post("/tasks/{id}/cancel", handlers.cancel_task)
    r.add_post("/tasks/{id}/export", handlers.export_task)
    r.add_get("/sequences", handlers.sequences_page)
    r.add_get("/events/tasks", handlers.list_events)
    r.add_get("/events/tasks/{id}", handlers.task_events)
    r.add_get("/signin", handlers.signin_form)
    r.add_post("/signin", handlers.signin)
    r.add_get("/signin/once", handlers.signin_once)
    r.add_post("/signout", handlers.signout)
    r.add_static("/static/", STATIC)
