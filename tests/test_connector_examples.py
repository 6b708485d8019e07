"""The examples that talk to the world: an HTTP service, a callback, a person answering
through the control plane, run as a user runs them (``flowmetal FILE``, ``flowmetal
start``, ``flowmetal worker``), against real servers on 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from flowmetal.store import open_store
from flowmetal.store.callbacks import PUBLIC_URL

from .http_service import HttpService
from .served import Served, WorkerProcess

ROOT = Path(__file__).resolve().parent.parent
SERVED_EXAMPLES = ("http_retry.fm", "callback.fm", "approval.fm")


@pytest.fixture
def service():
    s = HttpService().start()
    yield s
    s.stop()


def flowmetal(store: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "flowmetal", "--store", store, *args],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def test_http_retry_gets_through_a_flaky_service(service, tmp_path):
    proc = flowmetal(str(tmp_path / "s"), "examples/http_retry.fm", service.url("/flaky/2"))
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")
    assert out == "status 200 - ok after 3\n"
    (key,) = service.keys("/flaky/2")
    assert service.keys("/flaky/2")[key] == 3  # three attempts, one key


def test_http_retry_gives_up_on_a_service_that_keeps_failing(service, tmp_path):
    proc = flowmetal(str(tmp_path / "s"), "examples/http_retry.fm",
                     service.url("/status/503"))
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")
    assert out == "gave up after 5 attempts: status 503\n"


def test_callback_prints_its_url_and_takes_the_request(tmp_path):
    location = str(tmp_path / "s")
    store = open_store(location)
    served = Served(store).start()
    try:
        store.set_setting(PUBLIC_URL, served.url())
        proc = flowmetal(location, "examples/callback.fm", "30")
        line = proc.stdout.readline()
        assert line.startswith("POST something to http://127.0.0.1:"), line
        assert requests.post(line.split()[-1], data="hello", timeout=10).status_code == 202
        out, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) == (0, "")
        assert out == 'called back with "hello"\n'
    finally:
        served.stop()


def test_callback_goes_on_without_when_nobody_calls(tmp_path):
    location = str(tmp_path / "s")
    open_store(location).set_setting(PUBLIC_URL, "https://flowmetal.example")
    proc = flowmetal(location, "examples/callback.fm", "0.3")
    out, err = proc.communicate(timeout=60)
    assert (proc.returncode, err) == (0, "")
    assert out.endswith("nobody called back within 0.3 s: going on without\n")


def test_approval_through_the_control_plane(tmp_path):
    location = str(tmp_path / "s")
    store = open_store(location)
    token, _ = store.token_create("approver", "write")
    served = Served(store).start()
    worker = WorkerProcess(location)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        r = requests.post(served.url("/api/v1/tasks"), headers=headers, timeout=10, json={
            "source": (ROOT / "examples/approval.fm").read_text(), "file": "approval.fm",
            "args": ["2.1"]})
        task = r.json()["id"]
        deadline = time.monotonic() + 30
        while requests.get(served.url(f"/api/v1/tasks/{task}"), headers=headers,
                           timeout=10).json()["status"] != "waiting":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        r = requests.post(served.url(f"/api/v1/tasks/{task}/messages"), headers=headers,
                          json={"form": ":approve"}, timeout=10)
        assert r.status_code == 201 and r.json()["delivered"] is True
        result = requests.get(served.url(f"/api/v1/tasks/{task}/result"), headers=headers,
                              params={"wait": 30}, timeout=40).json()
        assert result["status"] == "done"
        output = requests.get(served.url(f"/api/v1/tasks/{task}/output"), headers=headers,
                              timeout=10).json()["output"]
        assert "".join(o["text"] for o in output) == (
            "waiting for approval of release 2.1\napproved: releasing\n")
    finally:
        worker.stop()
        served.stop()
