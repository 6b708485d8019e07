"""The web UI without a browser: escaping, the session cookie, CSRF and same-site
checks, read-only tokens, security headers, the one-time sign-in URL of ``flowmetal
serve --open`` (a real process), the counts' cache and the evaluation chart."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from flowmetal.runtime import api
from flowmetal.store import open_store
from flowmetal.store.tables import TaskFilter
from flowmetal.ui import charts, data, pages, session
from flowmetal.ui.html import Html, esc, h, join, url

from .served import Served
from .test_serve_cli import free_port
from .test_ui import until

SLEEPER = "(defn nap [] (sleep 3600)) (nap)"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(served, store, write token, read token): no worker; tasks stay runnable."""
    store = open_store(str(tmp_path_factory.mktemp("ui-pages") / "store"), create=True)
    served = Served(store).start()
    write, _ = store.token_create("writer", "write")
    read, _ = store.token_create("reader", "read")
    yield served, store, write, read
    served.stop()
    store.close()


def signed_in(served, token: str) -> requests.Session:
    s = requests.Session()
    r = s.post(served.url("/signin"), data={"token": token, "next": "/"},
               allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/", r.text
    return s


def csrf_of(text: str) -> str:
    return re.search(r'name="csrf" value="([0-9a-f]+)"', text).group(1)


# -- escaping ---------------------------------------------------------------------------

def test_every_value_is_escaped_and_only_html_made_here_is_not():
    evil = '<script>alert("x")</script>\'&'
    assert esc(evil) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#x27;&amp;"
    assert h('<a title="{}">{}</a>', evil, Html("<b>ok</b>")) == \
        f'<a title="{esc(evil)}"><b>ok</b></a>'
    assert join(["<i>", Html("<br>")]) == "&lt;i&gt;<br>"
    assert esc(None) == ""
    assert url("/", status="done", after="", id="a b&c") == "/?status=done&id=a+b%26c"
    row = pages.task_row({"id": '"><x', "name": "<img src=x>", "program": "<p>" * 4,
                          "updated": 1.0, "created": 0.0, "steps": 1, "running": False,
                          "blocked": None, "status": "waiting", "waiting": {
                              "op": "<op>", "task": None, "until": None,
                              "default_wait": False}}, 10.0)
    assert "<img" not in row and "<x" not in row and "<op>" not in row and "<p>" not in row
    assert "&lt;img src=x&gt;" in row


def test_a_frame_marks_its_span_and_folds_long_values():
    frame = {"kind": "frame", "proc": "<f>", "file": "a.fm", "line": 3, "col": 6,
             "end_line": 3, "end_col": 13, "source": "  (f (<g> 1)) ; <b>",
             "bindings": [{"name": "x<", "value": "v" * 500, "depth": 0}]}
    shown = pages.frames_section([frame], None, "a.fm")
    assert "<mark>(&lt;g&gt; 1)</mark>" in shown and "&lt;b&gt;" in shown
    assert "<details>" in shown and "500 characters" in shown and "x&lt;" in shown
    assert 'href="#L3"' in shown


def test_the_chart_draws_each_value_and_target_with_escaped_labels():
    items = [{"id": f"<{i}>", "evaluation": {"indicatorResults": [{
        "value": {"metric": "rt", "value": v, "success": True},
        "status": s, "passTargets": [{"criteria": "<=600", "targetValue": 600}],
        "warningTargets": [{"criteria": "<=800", "targetValue": 800}] if s != "pass" else []}]}}
        for i, (v, s) in enumerate([(400, "pass"), (700, "warning"), (900, "fail")])]
    points = charts.indicator_points(items, "rt")
    assert [p.value for p in points] == [400, 700, 900]
    svg = charts.indicator_chart("rt <over> runs", points)
    assert svg.count("<circle") == 3 and "status-fail" in svg
    assert svg.count("pass-target") == 3 and svg.count("warning-target") == 2
    assert "&lt;over&gt;" in svg and "&lt;1&gt;" in svg and "<over>" not in svg
    assert "no values yet" in charts.indicator_chart("empty", [])


# -- the session cookie ------------------------------------------------------------------

def test_a_session_cookie_holds_only_while_signed_and_unexpired():
    key = b"k" * 32
    value = session.cookie_value(key, "fm_token", 1000.0)
    assert session.cookie_token(key, value, 1000.0) == "fm_token"
    assert session.cookie_token(key, value, 1000.0 + session.SESSION_SECONDS + 1) is None
    assert session.cookie_token(b"other" * 8, value, 1000.0) is None
    body, _, mac = value.rpartition(".")
    assert session.cookie_token(key, body.replace("fm_token", "fm_other") + "." + mac,
                                1000.0) is None
    later = value.replace(body.split(".")[1], str(int(body.split(".")[1]) + 99999))
    assert session.cookie_token(key, later, 1000.0) is None
    assert session.cookie_token(key, "garbage", 1000.0) is None
    assert session.csrf_token(key, "a") != session.csrf_token(key, "b")


def test_signing_in_sets_an_httponly_samesite_cookie_and_a_bad_token_is_refused(world):
    served, store, write, _ = world
    r = requests.post(served.url("/signin"), data={"token": write, "next": "/sequences"},
                      allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == "/sequences"
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert write not in r.text
    bad = requests.post(served.url("/signin"), data={"token": "fm_nope"}, timeout=10)
    assert bad.status_code == 401 and "not one of this store" in bad.text
    away = requests.post(served.url("/signin"), data={"token": write, "next": "//evil.example"},
                         allow_redirects=False, timeout=10)
    assert away.headers["Location"] == "/"
    r = requests.get(served.url("/tasks/x"), allow_redirects=False, timeout=10)
    assert r.status_code == 303
    assert parse_qs(urlsplit(r.headers["Location"]).query) == {"next": ["/tasks/x"]}


def test_a_revoked_token_ends_its_sessions_at_once(world):
    served, store, _, _ = world
    token, rec = store.token_create("short-lived", "write")
    s = signed_in(served, token)
    assert s.get(served.url("/"), timeout=10).status_code == 200
    store.token_revoke(rec.id)
    r = s.get(served.url("/"), allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"].startswith("/signin")
    assert s.get(served.url("/api/v1/tasks"), timeout=10).status_code == 403


def test_pages_carry_a_content_security_policy_and_no_framing(world):
    served, _, write, _ = world
    for path in ("/signin", "/static/ui.js", "/api/v1/tasks"):
        r = signed_in(served, write).get(served.url(path), timeout=10)
        policy = r.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
        assert "'unsafe-inline'" not in policy
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in signed_in(served, write).get(served.url("/"), timeout=10).text


# -- CSRF and same-site ----------------------------------------------------------------

def test_ui_posts_need_the_sessions_csrf_token_and_the_same_origin(world):
    served, store, write, _ = world
    tid = api.start(store, SLEEPER, "nap.fm")
    s = signed_in(served, write)
    page = s.get(served.url(f"/tasks/{tid}"), timeout=10)
    csrf = csrf_of(page.text)
    cancel = served.url(f"/tasks/{tid}/cancel")
    assert s.post(cancel, data={}, timeout=10).status_code == 403
    assert s.post(cancel, data={"csrf": "0" * 32}, timeout=10).status_code == 403
    assert s.post(cancel, data={"csrf": csrf}, headers={"Origin": "http://evil.example"},
                  timeout=10).status_code == 403
    assert s.post(cancel, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "cross-site"},
                  timeout=10).status_code == 403
    assert s.post(cancel, data={"csrf": csrf}, headers={"Sec-Fetch-Site": "same-site"},
                  timeout=10).status_code == 403
    assert str(api.get(store, tid).status) == "runnable"
    other = signed_in(served, store.token_create("other", "write")[0])
    assert other.post(cancel, data={"csrf": csrf}, timeout=10).status_code == 403
    r = s.post(cancel, data={"csrf": csrf}, headers={"Origin": served.url("")},
               allow_redirects=False, timeout=10)
    assert r.status_code == 303 and r.headers["Location"] == f"/tasks/{tid}"
    assert api.get(store, tid).cancel


def test_the_api_takes_the_session_cookie_with_its_csrf_header_for_changes(world):
    served, store, write, _ = world
    tid = api.start(store, SLEEPER, "nap.fm")
    s = signed_in(served, write)
    csrf = csrf_of(s.get(served.url(f"/tasks/{tid}"), timeout=10).text)
    assert s.get(served.url(f"/api/v1/tasks/{tid}"), timeout=10).json()["id"] == tid
    path = served.url(f"/api/v1/tasks/{tid}/cancel")
    r = s.post(path, timeout=10)
    assert r.status_code == 403 and "X-CSRF-Token" in r.json()["detail"]
    assert s.post(path, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"},
                  timeout=10).status_code == 403
    assert s.post(path, headers={"X-CSRF-Token": csrf}, timeout=10).status_code == 202


def test_a_read_only_token_sees_pages_but_changes_nothing(world):
    served, store, _, read = world
    tid = api.start(store, SLEEPER, "nap.fm")
    s = signed_in(served, read)
    page = s.get(served.url(f"/tasks/{tid}"), timeout=10)
    assert page.status_code == 200 and "may only read" in page.text
    r = s.post(served.url(f"/tasks/{tid}/cancel"), data={"csrf": csrf_of(page.text)},
               timeout=10)
    assert r.status_code == 403 and not api.get(store, tid).cancel


def test_a_message_that_does_not_read_is_not_sent_and_says_where(world):
    served, store, write, _ = world
    tid = api.start(store, SLEEPER, "nap.fm")
    s = signed_in(served, write)
    csrf = csrf_of(s.get(served.url(f"/tasks/{tid}"), timeout=10).text)
    r = s.post(served.url(f"/tasks/{tid}/messages"), data={"csrf": csrf, "form": "[1 2\n 3"},
               timeout=10)
    assert r.status_code == 400 and "&lt;message&gt;:1:1" in r.text and "[1 2\n 3" in r.text
    with store.view() as view:
        assert view.inbox(tid) == []
    r = s.post(served.url(f"/tasks/{tid}/messages"), data={"csrf": csrf, "form": "[1 2 3]"},
               allow_redirects=False, timeout=10)
    assert r.status_code == 303
    with store.view() as view:
        assert len(view.inbox(tid)) == 1


def test_an_unknown_task_or_a_bad_filter_is_an_html_page(world):
    served, _, write, _ = world
    s = signed_in(served, write)
    r = s.get(served.url("/tasks/nope"), timeout=10)
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("text/html")
    assert "no task nope" in r.text
    r = s.get(served.url("/?since=yesterday"), timeout=10)
    assert r.status_code == 400 and "is not a time" in r.text


def test_the_list_filters_by_creation_time_in_utc(world):
    served, store, write, _ = world
    tid = api.start(store, SLEEPER, "nap.fm")
    created = api.get(store, tid).created
    s = signed_in(served, write)
    before = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(created - 60))
    after = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(created + 120))
    assert tid in s.get(served.url("/"), params={"since": before}, timeout=10).text
    assert tid not in s.get(served.url("/"), params={"since": after}, timeout=10).text
    assert tid in s.get(served.url("/"), params={"until": str(created + 1)}, timeout=10).text


# -- one-time sign-in codes ----------------------------------------------------------------

def test_a_sign_in_code_works_once_and_expires():
    from aiohttp import web

    app = web.Application()
    session.setup(app)
    code = session.issue_code(app, "fm_t", now=100.0)
    assert session.redeem_code(app, code, now=101.0) == "fm_t"
    assert session.redeem_code(app, code, now=101.0) is None
    late = session.issue_code(app, "fm_t", now=100.0)
    assert session.redeem_code(app, late, now=100.0 + session.CODE_SECONDS + 1) is None
    assert session.redeem_code(app, "made-up") is None


def test_serve_open_prints_a_one_time_sign_in_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("FLOWMETAL_HOME",
                                                             "FLOWMETAL_SERVER")}
    store_dir = str(tmp_path / "store")
    open_store(store_dir, create=True).close()
    port = free_port()
    serve = subprocess.Popen([sys.executable, "-m", "flowmetal", "--store", store_dir, "serve",
                              "--listen", f"127.0.0.1:{port}", "--open"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        link = serve.stdout.readline().strip()
        assert link.startswith(f"http://127.0.0.1:{port}/signin/once?code="), link
        until(lambda: _up(port))
        s = requests.Session()
        r = s.get(link, allow_redirects=False, timeout=10)
        assert r.status_code == 303 and r.headers["Location"] == "/"
        assert "HttpOnly" in r.headers["Set-Cookie"]
        assert s.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        again = requests.get(link, allow_redirects=False, timeout=10)
        assert again.status_code == 403 and "used already" in again.text
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.communicate(timeout=30)
    assert serve.returncode == 0
    store = open_store(store_dir)
    made = [t for t in store.tokens() if t.name == session.OPEN_TOKEN_NAME]
    assert len(made) == 1 and made[0].revoked is not None  # its sessions ended with it
    store.close()


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).ok
    except requests.ConnectionError:
        return False


# -- counts ---------------------------------------------------------------------------------

def test_counts_are_kept_a_while_and_made_again_when_stale(tmp_path):
    store = open_store(str(tmp_path / "store"), create=True)
    counts = data.StatusCounts()
    where = TaskFilter(status=("waiting",))
    assert counts.cached(where) is None
    api.start(store, SLEEPER, "nap.fm")
    assert counts.fresh(store, where) == {"runnable": 1}  # every status, not the filter's
    api.start(store, SLEEPER, "nap.fm")
    assert counts.fresh(store, where) == {"runnable": 1}  # still fresh
    assert counts.cached(TaskFilter()) == {"runnable": 1}
    counts.found[counts.key(where)].at -= counts.MIN_AGE + 1
    assert counts.fresh(store, where) == {"runnable": 2}
    store.close()
