"""Sequence runs on both stores, driven through the store as a worker over the control
plane would: tasks in order with their outputs, results and followers, the queue per
stage and service, locks, timeouts, pause, resume and abort, the built-in evaluation and
tasks done by deployed programs."""

from __future__ import annotations

import time

import pytest

from flowmetal.runtime import api
from flowmetal.runtime.inspect import task_detail
from flowmetal.runtime.records import Status, decode_data
from flowmetal.runtime.worker import Worker
from flowmetal.sequences import client, runs, shipyards, task_events
from flowmetal.sequences.evaluations import Key, history, invalidate
from flowmetal.sequences.shipyard import parse_shipyard
from flowmetal.sequences.task_events import Refusal
from flowmetal.values import kw

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
            - name: test
              triggeredAfter: 200ms
        - name: rollback
          triggeredOn:
            - event: dev.delivery.finished
              selector: {match: {result: fail}}
          tasks:
            - name: rollback
        - name: quick
          tasks:
            - name: nobody
              startTimeout: 1s
            - name: never
        - name: slow
          tasks:
            - name: slow
              finishTimeout: 1s
    - name: wide
      concurrency: 2
      sequences:
        - name: delivery
          tasks:
            - name: deployment
"""


def apply(store, text: str = SHIPYARD) -> None:
    shipyards.apply_shipyard(store, parse_shipyard(text, "shipyard.yaml"))


def trigger(store, sequence: str, **data) -> str:
    stage, _, name = sequence.partition(".")
    return client.trigger(store, stage, name, data)["task"]


class Driver:
    """A worker running the runs, and the store calls a task-event worker makes."""

    def __init__(self, store):
        self.store = store
        self.worker = Worker(store, poll=0.01)

    def until(self, test, timeout: float = 20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.worker.round()
            found = test()
            if found:
                return found
            time.sleep(0.01)
        raise AssertionError("timed out")

    def claim(self, types, worker="w1", lock=30.0, limit=10):
        return self.store.transact(
            lambda u: task_events.claim(u, worker, list(types), limit, lock))

    def claim_one(self, kind, worker="w1", lock=30.0):
        return self.until(lambda: (self.claim([kind], worker, lock, 1) or [None])[0])

    def started(self, c, lock=30.0):
        return self.store.transact(
            lambda u: task_events.started(u, c.event["id"], c.lock, lock))

    def heartbeat(self, c, lock=30.0):
        return self.store.transact(
            lambda u: task_events.heartbeat(u, c.event["id"], c.lock, lock, {"at": 1}))

    def finish(self, c, result="pass", **output):
        name = c.event["type"].split(".")[3]
        data = {"result": result, "status": "succeeded", name: output}
        return self.store.transact(
            lambda u: task_events.finished(u, c.event["id"], c.lock, data))

    def do(self, kind, result="pass", **output):
        c = self.claim_one(kind)
        assert isinstance(self.started(c), float)
        assert self.finish(c, result, **output) is True
        return c

    def ended(self, task_id):
        self.until(lambda: api.get(self.store, task_id).finished)
        return api.get(self.store, task_id)

    def stop(self):
        self.worker.stop()


@pytest.fixture
def driver(store):
    apply(store)
    d = Driver(store)
    yield d
    d.stop()


def result_of(store, task_id):
    return decode_data(api.get(store, task_id).result)


def test_a_run_triggers_its_tasks_in_order_and_collects_their_output(store, driver):
    tid = trigger(store, "dev.delivery", service="cart", labels={"v": "1"})
    first = driver.do("deployment", url="http://cart")
    event = first.event
    assert event["type"] == "sh.keptn.event.deployment.triggered"
    assert event["specversion"] == "1.0" and event["source"] == "flowmetal"
    assert event["data"]["project"] == "shop" and event["data"]["stage"] == "dev"
    assert event["data"]["service"] == "cart" and event["data"]["labels"] == {"v": "1"}
    asked = time.monotonic()
    second = driver.do("test", passed=3)
    assert time.monotonic() - asked >= 0.2  # its triggeredAfter
    assert second.event["data"]["deployment"] == {"url": "http://cart"}
    assert second.event["shkeptncontext"] == event["shkeptncontext"]
    assert driver.ended(tid).status == Status.DONE
    value = result_of(store, tid)
    assert value[kw("result")] == "pass"
    assert value[kw("test")][kw("passed")] == 3
    assert [r.sequence for r in runs.runs(store)] == ["delivery"]  # no rollback


def test_the_same_triggered_event_starts_one_run(store, driver):
    event = {"id": "event-1", "data": {"service": "cart"}}
    a, _ = runs.trigger(store, "dev", "delivery", event)
    b, _ = runs.trigger(store, "dev", "delivery", event)
    assert a == b


def test_a_failed_task_fails_the_run_and_starts_the_matching_follower(store, driver):
    tid = trigger(store, "dev.delivery", service="cart")
    driver.do("deployment")
    driver.do("test", "fail")
    rec = driver.ended(tid)
    assert rec.status == Status.FAILED
    assert "dev.delivery failed" in task_detail(store, tid)["error_text"]
    back = driver.do("rollback")
    assert back.event["data"]["result"] == "fail"  # the finished event's data
    rollback = [r for r in runs.runs(store) if r.sequence == "rollback"]
    assert len(rollback) == 1 and rollback[0].context == runs.runs(store)[0].context
    assert driver.ended(rollback[0].task).status == Status.DONE


def test_runs_of_one_stage_and_service_queue_one_at_a_time(store, driver):
    first = trigger(store, "dev.delivery", service="cart")
    second = trigger(store, "dev.delivery", service="cart")
    other = trigger(store, "dev.delivery", service="shop")
    claims = driver.until(lambda: len(driver.claim(["deployment"], lock=0.5)) == 0 and
                          _state(store, second) == "queued" and
                          _state(store, other) == "running")
    assert claims
    view = {v.task: v for v in runs.runs(store)}
    assert view[second].blocked_by == first
    assert "queued behind run " + first in view[second].detail
    assert view[first].state == view[other].state == "running"
    time.sleep(0.6)  # the locks taken above expire
    driver.do("deployment")
    driver.do("deployment")
    driver.do("test")
    driver.do("test")
    driver.ended(first)
    driver.do("deployment")
    driver.do("test")
    assert driver.ended(second).status == Status.DONE
    assert driver.ended(other).status == Status.DONE


def test_a_stage_may_run_several_at_once(store, driver):
    ids = [trigger(store, "wide.delivery", service="cart") for _ in range(3)]
    driver.until(lambda: [_state(store, i) for i in ids] == ["running", "running", "queued"])
    driver.do("deployment")
    driver.until(lambda: _state(store, ids[2]) == "running")


def _state(store, task_id):
    return {v.task: v.state for v in runs.runs(store)}.get(task_id)


def test_an_expired_lock_is_refused_and_the_task_offered_again(store, driver):
    tid = trigger(store, "dev.delivery", service="cart")
    dead = driver.claim_one("deployment", "w1", lock=0.3)
    assert isinstance(driver.started(dead, lock=0.3), float)
    time.sleep(0.4)
    assert driver.heartbeat(dead) is Refusal.LOCK
    again = driver.claim_one("deployment", "w2")
    assert again.event["id"] == dead.event["id"] and again.lock != dead.lock
    assert driver.finish(dead) is Refusal.LOCK
    assert isinstance(driver.started(again), float)
    assert driver.finish(again) is True
    assert driver.finish(again) is Refusal.GONE  # answered once
    driver.do("test")
    assert driver.ended(tid).status == Status.DONE
    finished = [e for e in _events(store, tid) if e.get("phase") == "finished"]
    assert len(finished) == 2  # one per task


def _events(store, task_id):
    from .durable_helpers import log_entries

    return [e.get("details", e) for e in log_entries(store, task_id)
            if e.get("kind") == "task-event"]


def test_no_worker_within_the_start_timeout_fails_the_run_saying_so(store, driver):
    tid = trigger(store, "dev.quick", service="cart")
    assert any("'nobody'" in w for w in runs.warnings(store))
    rec = driver.ended(tid)
    assert rec.status == Status.FAILED
    text = task_detail(store, tid)["error_text"]
    assert "task nobody: no worker took it within 1 s" in text
    runs.note_worker(store, "w9", ["never"], runs.store_clock(store))
    assert not any("'never'" in w for w in runs.warnings(store))


def test_no_finished_within_the_finish_timeout_fails_the_run(store, driver):
    tid = trigger(store, "dev.slow", service="cart")
    c = driver.claim_one("slow")
    driver.started(c)
    driver.ended(tid)
    assert "no .finished within 1 s of its .started" in task_detail(store, tid)["error_text"]
    assert driver.finish(c) is Refusal.GONE


def test_pause_withdraws_the_task_in_flight_and_resume_offers_it_again(store, driver):
    tid = trigger(store, "dev.delivery", service="cart")
    c = driver.claim_one("deployment")
    driver.started(c)
    client.control(store, tid, "pause")
    assert driver.heartbeat(c) is Refusal.GONE
    driver.until(lambda: _state(store, tid) == "paused")
    for _ in range(20):
        driver.worker.round()
    assert driver.claim(["deployment"]) == []
    client.control(store, tid, "resume")
    driver.do("deployment")
    driver.do("test")
    assert driver.ended(tid).status == Status.DONE


def test_pause_before_a_task_holds_it_back(store, driver):
    tid = trigger(store, "dev.delivery", service="cart")
    c = driver.claim_one("deployment")
    client.control(store, tid, "pause")  # its task event is withdrawn too
    assert driver.finish(c) is Refusal.GONE
    driver.until(lambda: _state(store, tid) == "paused")
    client.control(store, tid, "resume")
    driver.do("deployment")
    driver.do("test")
    driver.ended(tid)


def test_abort_cancels_the_run_and_its_worker_learns_it(store, driver):
    tid = trigger(store, "dev.delivery", service="cart")
    c = driver.claim_one("deployment")
    driver.started(c)
    client.control(store, tid, "abort")
    assert driver.ended(tid).status == Status.CANCELLED
    assert driver.heartbeat(c) is Refusal.GONE
    assert driver.claim(["deployment"]) == []


EVALUATED = """\
apiVersion: spec.keptn.sh/0.2.3
kind: Shipyard
metadata: {name: shop}
spec:
  stages:
    - name: hardening
      sequences:
        - name: evaluation
          tasks:
            - name: evaluation
              properties:
                slo:
                  spec_version: "1.0"
                  comparison: {compare_with: single_result, include_result_with_score: all}
                  objectives:
                    - sli: response_time
                      pass: [{criteria: ["<=+10%", "<600"]}]
                  total_score: {pass: "90%", warning: "75%"}
        - name: rollback
          triggeredOn:
            - event: hardening.evaluation.finished
              selector: {match: {result: fail}}
          tasks:
            - name: rollback
"""


def test_the_built_in_evaluation_compares_with_kept_results(store, driver):
    apply(store, EVALUATED)

    def evaluate(value):
        tid = trigger(store, "hardening.evaluation", service="cart",
                      evaluation={"values": {"response_time": value}})
        driver.ended(tid)
        return tid

    first = evaluate(400)
    assert result_of(store, first)[kw("evaluation")][kw("result")] == "pass"
    slower = evaluate(500)  # 25% slower than the last: fails the relative criterion
    assert api.get(store, slower).status == Status.FAILED
    assert "evaluation fail" in task_detail(store, slower)["error_text"]
    driver.do("rollback")
    key = Key("shop", "hardening", "cart")
    kept = history(store, key)
    assert [k.evaluation["result"] for k in kept] == ["pass", "fail"]
    invalidate(store, key, kept[1].id)
    invalidate(store, key, kept[0].id)
    again = evaluate(500)  # nothing valid to compare with: the relative criterion passes
    assert result_of(store, again)[kw("evaluation")][kw("score")] == 100


def test_a_task_may_be_done_by_a_deployed_program(store, driver, tmp_path):
    apply(store, SHIPYARD.replace("            - name: deployment\n            - name: test",
                                  "            - name: deployment\n"
                                  "              properties: {program: deployer}\n"
                                  "            - name: test", 1))
    source = ('(let [data (json-decode (first *command-line-args*))]\n'
              '  {:result "pass" :deployment {:service (:service data)}})\n')
    api.deploy(store, source, str(tmp_path / "deployer.fm"), "deployer")
    tid = trigger(store, "dev.delivery", service="cart")
    c = driver.do("test")
    assert c.event["data"]["deployment"] == {"service": "cart"}
    assert driver.ended(tid).status == Status.DONE


def test_a_program_triggers_a_sequence_and_joins_its_run(store, driver, tmp_path):
    source = ('(let [run (trigger-sequence "dev.delivery" {:service "cart"})]\n'
              '  (:result (join run)))\n')
    tid = api.start(store, source, str(tmp_path / "p.fm"))
    driver.do("deployment")
    driver.do("test")
    assert driver.ended(tid).status == Status.DONE
    assert result_of(store, tid) == "pass"
    runs_seen = runs.runs(store)
    assert [(r.stage, r.sequence, r.service) for r in runs_seen] == [
        ("dev", "delivery", "cart")]
    bad = api.start(store, '(try (trigger-sequence "dev.nothing" {}) (catch e (:type e)))',
                    str(tmp_path / "q.fm"))
    driver.ended(bad)
    assert result_of(store, bad) == kw("no-such-sequence")
