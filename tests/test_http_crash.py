"""The outbox rule and crashes of the HTTP connector, with real processes killed with
SIGKILL, on both stores: a request is sent only once the step that made it is committed,
and however often a connector dies mid-request, every task sees exactly one response
per request while the server sees retries only under that request's one key."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

from flowmetal.runtime import api
from flowmetal.runtime.records import Status

from .durable_helpers import log_entries
from .test_http import value


def flowmetal(store, *args: str, **popen) -> subprocess.Popen:
    """``flowmetal --store STORE args...`` as a child process in a group of its own."""
    return subprocess.Popen([sys.executable, "-m", "flowmetal", "--store", store.location,
                             *args], start_new_session=True, **popen)


def test_a_step_killed_before_its_commit_never_sends_its_request(store, fresh_service, tmp_path):
    marker = "/ok?never-before-commit"
    tid = api.start(store, f'(:status (http {{:url "{fresh_service.url(marker)}"}}))',
                    str(tmp_path / "k.fm"))
    # A worker that dies (SIGKILL) when it is about to commit a step making a request.
    script = textwrap.dedent(f"""
        import os, signal
        from flowmetal.store import open_store
        from flowmetal.store.engine import TaskStore
        from flowmetal.runtime.worker import Worker
        from flowmetal.connectors.http import HttpConnector

        round_ = TaskStore.round
        def dying(self, worker, steps, *args, **kwargs):
            if any(s.request is not None and s.request.op == "http" for s in steps):
                os.kill(os.getpid(), signal.SIGKILL)
            return round_(self, worker, steps, *args, **kwargs)
        TaskStore.round = dying
        store = open_store({store.location!r})
        worker = Worker(store, poll=0.01)
        worker.connector = HttpConnector(store)
        worker.run()
    """)
    child = subprocess.run([sys.executable, "-c", script], timeout=60, capture_output=True)
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()
    time.sleep(0.3)  # time for a request, had one been sent
    assert fresh_service.count("/ok") == 0 or all(s.key != f"flowmetal-{tid}-1"
                                            for s in fresh_service.seen)
    api.release_dead_leases(store)
    worker = flowmetal(store, "worker", "--until-idle")
    assert worker.wait(60) == 0
    assert value(store, tid) == "200"
    assert fresh_service.keys("/ok")[f"flowmetal-{tid}-1"] == 1


def test_connectors_killed_mid_request_leave_one_response_per_request(store, fresh_service,
                                                                      tmp_path):
    rng = random.Random(1234)
    tasks = 12
    ids = [api.start(store, f"""
        [(:body (http {{:url "{fresh_service.url('/slow/1')}"}} :timeout 120))
         (:status (http {{:url "{fresh_service.url('/flaky/1')}"}}
                         :timeout 120 :retry {{:initial-interval 0.05}}))]
        """, str(tmp_path / f"t{i}.fm")) for i in range(tasks)]
    worker = flowmetal(store, "worker", "--no-http", stderr=subprocess.DEVNULL)
    kills = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with store.view() as view:
                if all(view.task(t).finished for t in ids):
                    break
            connector = flowmetal(store, "connector", "http", "--lease", "0.5",
                                  stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.3, 0.9))  # shorter than a request: killed mid-request
            if kills < 10:
                os.killpg(connector.pid, signal.SIGKILL)
                kills += 1
                connector.wait(10)
            else:  # the last one is left to finish the work
                while time.monotonic() < deadline:
                    with store.view() as view:
                        if all(view.task(t).finished for t in ids):
                            break
                    time.sleep(0.05)
                connector.send_signal(signal.SIGTERM)
                assert connector.wait(20) == 0
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(20)
    assert kills == 10
    for t in ids:
        assert store.get(t).status == Status.DONE, t
        assert value(store, t) == '["slow" 200]'
        answers = [e for e in log_entries(store, t) if e["kind"] == "answer"]
        assert [e["request"] for e in answers] == [1, 2]
    known = {f"flowmetal-{t}-{r}" for t in ids for r in (1, 2)}
    assert set(fresh_service.keys("/slow/1")) | set(fresh_service.keys("/flaky/1")) <= known
    assert all(fresh_service.keys("/slow/1")[f"flowmetal-{t}-1"] >= 1 for t in ids)
    # killed mid-request, requests were made again, each time under its one key
    assert any(count > 1 for count in fresh_service.keys("/slow/1").values())
    with store.view() as view:
        assert view.outbox() == []
