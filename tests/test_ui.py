"""The web UI in a real browser: Playwright for Python driving Debian's Chromium
(/usr/bin/chromium, headless) against the control plane served on 127.0.0.1 over an LMDB
store, with a worker process running the tasks.  Signing in, finding a task through the
filters, its frames and locals, sending a message and watching the task move on,
cancelling, output that holds markup, the trace slider, the sequences page, and a
cross-site form post refused.

Screenshots of each page go to ``$FLOWMETAL_ARTIFACTS`` (or the test's temporary
folder); with ``FLOWMETAL_UPDATE_SCREENSHOTS=1`` they are also copied to
``tests/screenshots/`` for the README.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from flowmetal.runtime import api
from flowmetal.sequences import client, shipyards, task_events
from flowmetal.sequences.shipyard import parse_shipyard
from flowmetal.store import open_store

from .served import Served, WorkerProcess
from .threaded_app import ThreadedApp

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).with_name("screenshots")
WAIT_MS = 15_000

REQUIRED = os.environ.get("FLOWMETAL_REQUIRE_BROWSER") == "1"
if not Path(CHROMIUM).exists():
    if REQUIRED:
        raise RuntimeError(f"{CHROMIUM} is missing and FLOWMETAL_REQUIRE_BROWSER=1: "
                           "apt-get install chromium")
    pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)",
                allow_module_level=True)
if REQUIRED:
    from playwright import sync_api
else:
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="playwright is a test extra: pip install -e '.[test]'")

WAITER = """\
(defn handle [order]
  (let [items (vec (range 40))
        note (apply str (repeat 30 "long value "))
        reply (receive)]
    (print "got" reply)
    (+ (:qty order) (:qty reply))))
(handle {:qty 41 :who "ann"})
"""
SLEEPER = "(defn nap [] (sleep 3600)) (nap)"
MARKUP = '(print "<script>alert(1)</script><img src=x onerror=alert(2)>") (sleep 3600)'
TRACED = "(defn tick [n] (when (> n 0) (sleep 0.01) (tick (- n 1)))) (tick 3)"
SHIPYARD = """\
apiVersion: spec.keptn.sh/0.2.3
kind: Shipyard
metadata: {name: shop}
spec:
  stages:
    - name: dev
      sequences:
        - name: delivery
          tasks:
            - name: deployment
        - name: check
          tasks:
            - name: evaluation
              properties:
                slo:
                  spec_version: "1.0"
                  comparison: {compare_with: single_result, include_result_with_score: all}
                  objectives:
                    - sli: response_time
                      pass: [{criteria: ["<=600"]}]
                      warning: [{criteria: ["<=800"]}]
                  total_score: {pass: "90%", warning: "50%"}
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(served, token, store, artifacts folder): an LMDB store served on 127.0.0.1, a
    worker process, a write token."""
    store = open_store(str(tmp_path_factory.mktemp("ui") / "store"), create=True)
    served = Served(store).start()
    token, _ = store.token_create("ui tests", "write")
    worker = WorkerProcess(store.location)
    folder = Path(os.environ.get("FLOWMETAL_ARTIFACTS") or tmp_path_factory.mktemp("shots"))
    folder.mkdir(parents=True, exist_ok=True)
    yield served, token, store, folder
    worker.stop()
    served.stop()
    store.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(world, browser):
    """A signed-in page (through the sign-in form), whose dialogs are recorded."""
    served, token, _, _ = world
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(WAIT_MS)
    pg.dialogs = []
    pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
    pg.goto(served.url("/"))
    assert "/signin" in pg.url
    pg.fill("input[name=token]", token)
    pg.click("main.signin button")
    pg.wait_for_url(served.url("/"))
    yield pg
    context.close()


def shot(world, pg, name: str) -> None:
    """Save a screenshot of the page (and, when asked, for the README)."""
    folder = world[3]
    path = folder / f"{name}.png"
    pg.screenshot(path=str(path), full_page=True)
    if os.environ.get("FLOWMETAL_UPDATE_SCREENSHOTS") == "1":
        SHOTS.mkdir(exist_ok=True)
        shutil.copy(path, SHOTS / f"{name}.png")


def until(test, timeout: float = 20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = test()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def waiting(store, tid: str) -> None:
    until(lambda: str(api.get(store, tid).status) == "waiting")


def test_sign_in_find_a_task_by_the_filters_see_its_frames_and_send_it_a_message(world, page):
    served, _, store, _ = world
    sleepers = [api.start(store, SLEEPER, "nap.fm") for _ in range(3)]
    tid = api.start(store, WAITER, "orders.fm")
    waiting(store, tid)
    for s in sleepers:
        waiting(store, s)
    page.goto(served.url("/"))
    # The counts come over the event stream, made again once they are a second old.
    page.wait_for_function("() => +(document.querySelector('#counts a.s-waiting b') || "
                           "{textContent: 0}).textContent >= 4")
    shot(world, page, "task-list")
    page.select_option("select[name=status]", "waiting")
    page.fill("input[name=id]", tid[:14])
    page.click("#filters button")
    page.wait_for_selector(f"tr[data-id='{tid}']")
    assert page.locator("#tasks tbody tr").count() == 1
    assert "receive" in page.inner_text(f"tr[data-id='{tid}']")
    page.click(f"a[href='/tasks/{tid}']")
    page.wait_for_url(served.url(f"/tasks/{tid}"))
    frames = page.inner_text("#live-frames")
    assert "handle" in frames and "orders.fm:5" not in frames
    assert page.locator("table.locals th", has_text="order").count() >= 1
    assert "{:qty 41, :who \"ann\"}" in frames
    assert page.locator("#live-frames details").count() >= 1  # a long value is folded
    assert page.locator("pre.line mark").count() >= 1
    shot(world, page, "task")
    page.fill("textarea[name=form]", "{:qty 1")
    page.click("#send")
    error = page.inner_text("#message-error")
    assert "<message>:1:1" in error and "not sent" in error
    assert page.input_value("textarea[name=form]") == "{:qty 1"
    page.fill("textarea[name=form]", "{:qty 1}")
    page.click("#send")
    page.wait_for_selector("#live-status .s-done")
    page.wait_for_selector("#output span")
    assert "got {:qty 1}" in page.inner_text("#output")
    assert "42" in page.inner_text("#live-result")
    timeline = page.inner_text("#timeline")
    assert "next-message answered after" in timeline and "message" in timeline
    assert page.dialogs == []


def test_the_list_follows_new_tasks_and_a_cancel_moves_a_task_on(world, page):
    served, _, store, _ = world
    page.goto(served.url("/?status=waiting"))
    page.wait_for_selector("#tasks")
    tid = api.start(store, SLEEPER, "nap.fm")
    page.wait_for_selector(f"tr[data-id='{tid}']")  # it appears once it waits
    page.click(f"a[href='/tasks/{tid}']")
    page.wait_for_selector("#cancel")
    page.click("#cancel")
    page.wait_for_selector("#live-status .s-cancelled")
    assert "cancelled" in page.inner_text("#live-result")
    assert str(api.get(store, tid).status) == "cancelled"


def test_output_with_markup_is_shown_as_text_and_runs_nothing(world, page):
    served, _, store, _ = world
    tid = api.start(store, MARKUP, "markup.fm")
    waiting(store, tid)
    page.goto(served.url(f"/tasks/{tid}"))
    page.wait_for_selector("#output span")
    assert page.inner_text("#output").startswith("<script>alert(1)</script><img src=x")
    assert page.locator("#output script, #output img").count() == 0
    assert "<script>alert(1)</script>" in page.inner_text("pre.source")
    page.wait_for_timeout(300)
    assert page.dialogs == []
    response = page.request.get(served.url(f"/tasks/{tid}"))
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"


def test_the_trace_slider_steps_through_recorded_states(world, page):
    served, _, store, _ = world
    tid = api.start(store, TRACED, "count.fm", trace=True, limits={})
    until(lambda: api.get(store, tid).finished)
    page.goto(served.url(f"/tasks/{tid}"))
    slider = page.locator("#trace-step")
    steps = int(slider.get_attribute("max"))
    assert steps >= 2
    slider.fill("1")  # fires input and change: the form goes to that step
    page.wait_for_url(lambda u: "step=1" in u)
    assert f"Viewing recorded step 1 of {steps}" in page.inner_text("form.trace")
    assert "tick" in page.inner_text("#live-frames")
    assert page.locator("table.locals th", has_text="n").count() >= 1
    shot(world, page, "trace")


def test_the_sequences_page_shows_runs_task_events_and_evaluations(world, page):
    served, _, store, _ = world
    shipyards.apply_shipyard(store, parse_shipyard(SHIPYARD, "shipyard.yaml"))
    for value in (420, 480, 650, 390):
        run = client.trigger(store, "dev", "check", {
            "service": "api", "evaluation": {"values": {"response_time": value}}})["task"]
        until(lambda run=run: api.get(store, run).finished)
    run = client.trigger(store, "dev", "delivery", {"service": "cart"})["task"]
    claimed = until(lambda: store.transact(
        lambda u: task_events.claim(u, "ui-test", ["deployment"], 1, 30.0)))
    lock = claimed[0].lock
    event_id = claimed[0].event["id"]
    store.transact(lambda u: task_events.started(u, event_id, lock, 30.0))
    store.transact(lambda u: task_events.finished(u, event_id, lock, {
        "result": "pass", "status": "succeeded", "deployment": {"url": "http://cart"}}))
    until(lambda: api.get(store, run).finished)
    page.goto(served.url("/sequences"))
    text = page.inner_text("main")
    assert "Stage dev" in text and "delivery" in text and "check" in text
    assert "deployment finished" in text and "ui-test" in text
    assert page.locator("svg.chart circle").count() == 4
    assert page.locator("svg.chart circle.status-warning").count() == 1
    assert page.locator("svg.chart line.pass-target").count() == 4
    assert page.locator("svg.chart line.warning-target").count() >= 1
    evaluation = page.inner_text("section.evaluation")
    assert "response_time" in evaluation and "<=600 (600)" in evaluation
    tips = page.locator("svg.chart circle.status-warning title").text_content()
    assert tips == "#3: 650 (warning), pass target 600, warning target 800"
    shot(world, page, "sequences")


class EvilSite(ThreadedApp):
    """A page on another origin whose script posts a form to the UI."""

    def __init__(self, target: str):
        from aiohttp import web

        async def index(request):
            return web.Response(content_type="text/html", text=(
                f'<form method="post" action="{target}"><input name="csrf" value="x"></form>'
                "<script>document.forms[0].submit()</script>"))
        app = web.Application()
        app.router.add_get("/", index)
        super().__init__(app, "the other site")


def test_a_cross_site_form_post_is_refused(world, page):
    served, _, store, _ = world
    tid = api.start(store, SLEEPER, "nap.fm")
    waiting(store, tid)
    evil = EvilSite(served.url(f"/tasks/{tid}/cancel")).start()
    try:
        with page.expect_response(served.url(f"/tasks/{tid}/cancel")) as answer:
            page.goto(evil.url("/"))
        assert answer.value.status == 403
    finally:
        evil.stop()
    assert str(api.get(store, tid).status) == "waiting"
    api.cancel(store, tid)
