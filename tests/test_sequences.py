"""Sequence runs end to end with real processes: ``flowmetal serve`` and ``flowmetal
worker`` on a store, and the example workers in Python and shell doing the tasks over
the control plane (fetch and lock, .started, heartbeats, .finished)."""

from __future__ import annotations

import textwrap
import uuid

import pytest
import requests

from .pg_helpers import require_postgres
from .sequence_world import ROOT, World, until
from .test_store import make_store

EXAMPLE_SHIPYARD = (ROOT / "examples" / "shipyard.yaml").read_text()
DOCUMENT = {"title": "Sketch of the Analytical Engine", "author": "Ada Lovelace",
            "place": "London", "text": "The engine weaves algebraic patterns as the "
                                       "loom weaves flowers and leaves."}


def shipyard(project: str, tasks: str, concurrency: int = 1) -> str:
    """A shipyard of one stage ``dev`` with one sequence ``check`` of these tasks
    (YAML of the task list)."""
    return textwrap.dedent(f"""\
        apiVersion: spec.keptn.sh/0.2.3
        kind: Shipyard
        metadata:
          name: {project}
        spec:
          stages:
            - name: dev
              concurrency: {concurrency}
              sequences:
                - name: check
                  tasks:
        """) + textwrap.indent(textwrap.dedent(tasks), " " * 12)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    """A World per store kind, made when a test first asks for it."""
    made: dict[str, tuple[World, object]] = {}

    def get(kind: str) -> World:
        if kind not in made:
            store, drop = make_store(kind, tmp_path_factory.mktemp(kind))
            made[kind] = (World(store), drop)
        return made[kind][0]
    yield get
    for world, drop in made.values():
        world.stop()
        drop()


@pytest.fixture(params=["lmdb", "postgres"])
def any_world(request, worlds):
    """The served store of each kind, LMDB then PostgreSQL."""
    if request.param == "postgres":
        require_postgres()
    world = worlds(request.param)
    yield world
    world.end_test()


@pytest.fixture
def world(worlds):
    """The served LMDB store."""
    world = worlds("lmdb")
    yield world
    world.end_test()


def test_the_check_sequence_with_the_python_worker(any_world):
    w = any_world
    project = w.apply(EXAMPLE_SHIPYARD)
    w.python_worker("py-check", "checknumber")
    passed = w.trigger(project, "dev", "check", {"number": 42}, event_id="check-42")
    failed = w.trigger(project, "dev", "check", {"number": "forty-two"})
    again = w.trigger(project, "dev", "check", {"number": 42}, event_id="check-42")
    assert again["task"] == passed["task"]  # the same event id: the same run
    status, result = w.outcome(passed["task"])
    assert status == "done"
    assert result["result"] == "pass" and result["status"] == "succeeded"
    assert result["checknumber"] == {"number": 42, "min": 0, "max": 100, "inRange": True}
    status, error = w.outcome(failed["task"])
    assert status == "failed"
    assert error["message"] == "dev.check failed: 'forty-two' is not a number"
    assert error["data"]["failed-task"] == "checknumber"
    [started] = w.task_events(passed["task"], "started")
    assert started["worker"] == "py-check"


def test_checknumber_reads_its_range_from_the_tasks_properties(world):
    # Keptn hands a task's shipyard properties to its workers in the triggered event,
    # under data.<task>.
    project = world.apply(shipyard("ranged", """\
        - name: checknumber
          properties:
            min: 10
            max: 20
        """))
    world.python_worker("py-ranged", "checknumber")
    inside = world.trigger(project, "dev", "check", {"number": 15})
    outside = world.trigger(project, "dev", "check", {"number": 50})
    assert world.outcome(inside["task"])[1]["checknumber"]["inRange"] is True
    status, error = world.outcome(outside["task"])
    assert status == "failed", error
    assert error["message"] == "dev.check failed: 50 is outside [10, 20]"


def test_enrich_with_python_and_shell_workers_and_a_failed_delivery_rolled_back(world):
    project = world.apply(EXAMPLE_SHIPYARD)
    py = world.python_worker("py-enrich", "extract-metadata", "geolookup", "author-search")
    sh = world.shell_worker("sh-enrich", "evaluate", "deployment", "release", "rollback")
    no_image = world.trigger(project, "dev", "enrich", {"document": DOCUMENT})
    imaged = world.trigger(project, "dev", "enrich", {
        "document": DOCUMENT, "configurationChange": {"values": {"image": "books:1.2"}}})
    status, result = world.outcome(no_image["task"])
    assert status == "done", result
    assert result["result"] == "pass"
    assert result["extract-metadata"]["words"] == 12
    assert result["extract-metadata"]["author"] == "Ada Lovelace"
    assert result["geolookup"] == {"place": "London", "lat": 51.5074, "lon": -0.1278}
    assert result["author-search"]["author"] == "Ada Lovelace"
    assert result["author-search"]["id"].startswith("author-")
    assert result["evaluate"] == {"score": 100, "checks": {"metadata": True, "place": True,
                                                           "author": True}}
    for task in ("extract-metadata", "geolookup", "author-search"):
        py.expect(rf"finished {task} {no_image['task']}\.\d+ pass")
    sh.expect(rf"finished evaluate {no_image['task']}\.\d+ pass")

    def runs_of(context: str) -> dict:
        return {f"{r['stage']}.{r['sequence']}": r for r in world.runs()["runs"]
                if r["context"] == context}

    # dev.enrich passed: production.delivery follows; its deployment has no image, so
    # it fails and production.rollback follows it.
    chain = until(lambda: (found := runs_of(no_image["keptnContext"])).get(
        "production.rollback") and found, 30, "the rollback run")
    status, error = world.outcome(chain["production.delivery"]["task"])
    assert status == "failed"
    assert "no image to deploy" in error["message"]
    status, rolled = world.outcome(chain["production.rollback"]["task"])
    assert status == "done", rolled
    assert rolled["rollback"]["reason"].startswith("no image to deploy")
    # with an image the delivery deploys and releases it, and nothing is rolled back
    delivered = until(lambda: runs_of(imaged["keptnContext"]).get("production.delivery"),
                      30, "the delivery run")
    status, result = world.outcome(delivered["task"])
    assert status == "done", result
    assert result["deployment"]["image"] == "books:1.2"
    assert result["release"] == {"image": "books:1.2"}
    assert "production.rollback" not in runs_of(imaged["keptnContext"])


def test_a_worker_killed_mid_task_loses_its_lock_and_another_finishes(any_world):
    w = any_world
    project = w.apply(shipyard("killed", "- name: checknumber\n"))
    doomed = w.python_worker("py-doomed", "checknumber", lock=2, work=60)
    run = w.trigger(project, "dev", "check", {"number": 7})
    took = doomed.expect(r"started checknumber (\S+) \(lock (\S+)\)")
    event_id, dead_lock = took.group(1), took.group(2)
    doomed.kill()  # after .started, before .finished
    second = w.python_worker("py-second", "checknumber", lock=10, work=2)
    second.expect(rf"started checknumber {event_id} ")  # offered again once the lock expired
    late = w.answer(event_id, "checknumber", "finished", dead_lock,
                    {"result": "fail", "status": "succeeded"})
    assert late.status_code == 409, late.text
    status, result = w.outcome(run["task"])
    assert status == "done" and result["result"] == "pass"
    second.expect(rf"finished checknumber {event_id} pass")
    claims = w.task_events(run["task"], "claimed")
    assert [(c["worker"], c["attempt"]) for c in claims] == [("py-doomed", 1),
                                                             ("py-second", 2)]
    [finished] = w.task_events(run["task"], "finished")
    assert finished["worker"] == "py-second"


def test_a_task_type_nobody_serves_is_warned_about_and_times_out(world):
    project = world.apply(shipyard("unserved", """\
        - name: nobody-serves-this
          startTimeout: 2s
        """))
    warnings = world.runs()["warnings"]
    assert any("no worker serves task type 'nobody-serves-this'" in text and
               "unserved:dev.check" in text for text in warnings), warnings
    run = world.trigger(project, "dev", "check")
    status, error = world.outcome(run["task"])
    assert status == "failed"
    assert "task nobody-serves-this: no worker took it within 2 s" in error["message"]
    assert "is a worker subscribed to nobody-serves-this?" in error["message"]


def slow_run(world, project: str, worker: str):
    """A run of one checknumber task that a slow worker has started (heartbeats every
    second or so): (the worker, the run, its task event's id)."""
    project = world.apply(shipyard(project, "- name: checknumber\n"))
    slow = world.python_worker(worker, "checknumber", lock=3, work=60)
    run = world.trigger(project, "dev", "check", {"number": 3})
    return slow, run, slow.expect(r"started checknumber (\S+) ").group(1)


def test_pause_withdraws_the_task_from_its_worker_and_resume_offers_it_again(world):
    slow, run, event_id = slow_run(world, "paused", "py-slow")
    world.control(run["task"], "pause")
    slow.expect(rf"abandoned checknumber {event_id} \(410: ")  # at its next heartbeat
    until(lambda: world.run(run["task"])["state"] == "paused", 10, "the run paused")
    slow.stop()
    quick = world.python_worker("py-quick", "checknumber")
    world.control(run["task"], "resume")
    quick.expect(r"finished checknumber \S+ pass")
    status, result = world.outcome(run["task"])
    assert status == "done" and result["checknumber"]["inRange"] is True


def test_abort_cancels_the_run_and_its_worker_learns_it(world):
    slow, run, event_id = slow_run(world, "aborted", "py-aborted")
    world.control(run["task"], "abort")
    assert world.outcome(run["task"])[0] == "cancelled"
    slow.expect(rf"abandoned checknumber {event_id} \(410: ")


def test_run_controls_refuse_what_is_no_run_and_a_resume_of_a_run_not_paused(world):
    plain = world.api("POST", "/tasks", {"source": "(receive)"}).json()["id"]
    until(lambda: world.api("GET", f"/tasks/{plain}").json()["status"] == "waiting", 10,
          "the task waits")
    for action in ("pause", "resume", "abort"):
        r = world.api("POST", f"/sequences/{plain}/{action}")
        assert r.status_code == 404 and "not a sequence run" in r.json()["detail"], r.text
    assert world.api("GET", f"/tasks/{plain}").json()["status"] == "waiting"  # (untouched)
    slow, run, _ = slow_run(world, "not-paused", "py-not-paused")
    r = world.api("POST", f"/sequences/{run['task']}/resume")
    assert r.status_code == 409 and "is not paused" in r.json()["detail"], r.text
    world.control(run["task"], "abort")
    slow.stop()


def test_a_triggered_event_sent_again_is_its_run_with_its_context(world):
    project = world.apply(shipyard("replayed", "- name: checknumber\n"))
    shared = "shared-" + uuid.uuid4().hex
    plain = world.api("POST", "/tasks", {"source": "(receive)"},
                      headers={"Idempotency-Key": shared}).json()["id"]
    first = world.trigger(project, "dev", "check", {"number": 3}, event_id=shared)
    assert first["task"] != plain  # an event's id is no key of a start's
    event = {"specversion": "1.0", "id": shared, "source": "tests",
             "type": "sh.keptn.event.dev.check.triggered",
             "data": {"project": project, "service": "svc", "number": 3}}
    again = world.api("POST", "/event", event)
    assert again.status_code == 200, again.text
    assert (again.json()["task"], again.json()["keptnContext"]) == \
        (first["task"], first["keptnContext"])
    world.control(first["task"], "abort")


def test_bad_event_data_is_a_400_never_a_500(world):
    for project in ([1], {"a": 1}):
        r = world.api("POST", "/event", {
            "specversion": "1.0", "id": f"bad-{type(project).__name__}", "source": "test",
            "type": "sh.keptn.event.dev.check.triggered", "data": {"project": project}})
        assert r.status_code == 400 and "data.project must be a string" in r.text, r.text
    text = shipyard("huge", "- name: checknumber\n").replace("concurrency: 1",
                                                               "concurrency: " + "9" * 5001)
    r = requests.put(f"{world.url}/api/v1/project/huge/shipyard", data=text.encode(),
                     headers={"Authorization": f"Bearer {world.token}",
                              "Content-Type": "application/yaml"}, timeout=60)
    assert r.status_code == 400 and "concurrency" in r.json()["detail"], r.text


def test_runs_of_one_stage_and_service_queue_while_another_service_runs(world):
    project = world.apply(shipyard("queued", "- name: checknumber\n"))
    # Long enough tasks that the first is still running when the other service's starts
    # (on a loaded machine the start took over 2 s).
    world.python_worker("py-q1", "checknumber", work=6)
    world.python_worker("py-q2", "checknumber", work=6)
    first = world.trigger(project, "dev", "check", {"service": "a", "number": 1})
    until(lambda: world.task_events(first["task"], "started"), 20, "the first run's task")
    second = world.trigger(project, "dev", "check", {"service": "a", "number": 2})
    other = world.trigger(project, "dev", "check", {"service": "b", "number": 3})
    until(lambda: world.task_events(other["task"], "started"), 20,
          "the other service's run starting")
    assert world.store.get(first["task"]).status == "waiting"  # still in its task
    queued = world.run(second["task"])
    assert queued["state"] == "queued" and queued["blocked_by"] == first["task"]
    assert queued["detail"] == f"queued behind run {first['task']}"
    for run in (first, second, other):
        assert world.outcome(run["task"])[0] == "done"
    [first_done] = world.task_events(first["task"], "finished")
    log = world.log(second["task"])
    [triggered] = [e for e in log if e["kind"] == "task-event" and
                   e["details"].get("phase") == "triggered"]
    finished_at = next(e["at"] for e in world.log(first["task"]) if e["kind"] == "task-event"
                       and e["details"] == first_done)
    assert triggered["at"] >= finished_at


def test_a_worker_that_hangs_up_mid_poll_is_handed_no_event(world):
    # A worker stopped during its long poll must not have events locked to it: they
    # would wait out the lock before another worker could take them.
    project = world.apply(shipyard("hangup", "- name: checknumber\n"))
    with pytest.raises(requests.ReadTimeout):
        requests.post(f"{world.url}/api/v1/task-events/claim", timeout=0.5,
                      headers={"Authorization": f"Bearer {world.token}"},
                      json={"worker": "gone", "types": ["checknumber"], "waitSeconds": 20,
                            "lockSeconds": 60})
    run = world.trigger(project, "dev", "check", {"number": 5})
    world.python_worker("py-after", "checknumber")
    status, result = world.outcome(run["task"], 20)
    assert status == "done" and result["checknumber"]["inRange"] is True
    claims = world.task_events(run["task"], "claimed")
    assert [(c["worker"], c["attempt"]) for c in claims] == [("py-after", 1)]
