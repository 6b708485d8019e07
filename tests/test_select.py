"""``select`` over messages, callbacks, joins, HTTP answers and a timeout, and the
standard library's ``retry`` and ``with-timeout``, on both stores."""

from __future__ import annotations

import time

from flowmetal.runtime import api
from flowmetal.runtime.records import decode_data, encode_data
from flowmetal.runtime.worker import Worker
from flowmetal.store.callbacks import PUBLIC_URL, Delivery

from .test_http import finish, run, value


def test_the_first_join_wins_and_a_later_end_of_another_is_dropped(store, tmp_path):
    tid = run(store, """
    (def quick (spawn (fn [] (sleep 0.05) :quick)))
    (def slow (spawn (fn [] (sleep 0.3) :slow)))
    (def first-one (select (on-join slow) (on-join quick) :timeout 10))
    ;; the slow one ends while this waits on something else: that wait is not disturbed
    (def later (try (receive :timeout 0.6) (catch :timeout e :quiet)))
    [first-one later (join slow)]
    """, tmp_path)
    assert value(store, tid) == "[{:index 1, :op :join, :value :quick} :quiet :slow]"


def test_a_message_already_queued_is_taken_at_once_and_consumed(store, tmp_path):
    tid = run(store, """
    (send (self) :one)
    (send (self) :two)
    [(:value (select (on-receive) :timeout 5)) (receive :timeout 5)]
    """, tmp_path)
    assert value(store, tid) == "[:one :two]"


def test_a_message_arriving_later_answers_the_select(store, tmp_path):
    tid = api.start(store, "(select (on-join (spawn (fn [] (sleep 30)))) (on-receive))",
                    str(tmp_path / "m.fm"))
    worker = Worker(store, poll=0.01)
    for _ in range(3):
        worker.round()
    worker.stop()
    api.send(store, tid, "[:hello]")
    finish(store, tid)
    assert value(store, tid) == '{:index 1, :op :receive, :value "[:hello]"}'


def test_the_timeout_is_an_answer_not_an_error(store, tmp_path):
    tid = run(store, "(select (on-receive) :timeout 0.1)", tmp_path)
    assert value(store, tid) == "{:op :timeout, :index nil}"


def test_a_failed_arm_is_reported_as_its_error(store, service, tmp_path):
    tid = run(store, f"""
    (def r (select (on-http {{:url "{service.url('/status/503')}"}}
                            :retry {{:maximum-attempts 1}})
                   (on-receive) :timeout 10))
    [(:index r) (:op r) (:type (:error r)) (contains? r :value)]
    """, tmp_path)
    assert value(store, tid) == "[0 :http :http-error false]"


def test_an_http_arm_not_chosen_is_not_sent(store, service, tmp_path):
    tid = run(store, f"""
    (send (self) :now)
    (select (on-receive) (on-http {{:url "{service.url('/ok?never')}"}}) :timeout 5)
    """, tmp_path)
    assert value(store, tid) == "{:index 0, :op :receive, :value :now}"
    assert all(s.key is None or tid not in s.key for s in service.seen)
    with store.view() as view:
        assert view.outbox(tid) == []


def test_an_http_arm_answers_when_nothing_else_comes(store, service, tmp_path):
    tid = run(store, f"""
    (def r (select (on-receive) (on-http {{:url "{service.url('/ok')}"}}) :timeout 10))
    [(:index r) (:status (:value r))]
    """, tmp_path)
    assert value(store, tid) == "[1 200]"
    with store.view() as view:
        assert view.outbox(tid) == []


def deliver_to_callback(store, tid: str) -> None:
    """Run the task until it has sent itself its callback's token, then post
    ``"payload"`` to that callback."""
    worker = Worker(store, poll=0.01)
    for _ in range(4):
        worker.round()
    worker.stop()
    with store.view() as view:
        token = next(iter(view.inbox(tid)))[1]
    outcome = store.callback_deliver(decode_data(token.value), encode_data("payload"), 7)
    assert outcome is Delivery.DELIVERED


def test_a_callback_arm(store, tmp_path):
    store.set_setting(PUBLIC_URL, "http://127.0.0.1:9")
    tid = api.start(store, """
    (def cb (callback :timeout 60))
    (send (self) (:token cb))
    (select (on-await cb) (on-join (spawn (fn [] (sleep 60)))) :timeout 30)
    """, str(tmp_path / "cb.fm"))
    deliver_to_callback(store, tid)
    finish(store, tid)
    assert value(store, tid) == '{:index 0, :op :await, :value "payload"}'


def test_retry_retries_until_it_works_and_raises_the_last_error(store, tmp_path):
    tid = run(store, """
    (def tries (atom 0))
    (def worked (retry (fn [] (swap! tries inc) (when (< @tries 3) (throw (ex-info "no" {})))
                         @tries)
                       :attempts 5 :initial-interval 0.01))
    (def failed (try (retry (fn [] (throw (ex-info "never" {:n 1}))) :attempts 2
                            :initial-interval 0.01)
                     (catch e (:message e))))
    (def refused (try (retry (fn [] (swap! tries inc) (throw (ex-info "fatal" {})))
                             :attempts 5 :retry-on (fn [e] false))
                      (catch e @tries)))
    [worked failed refused]
    """, tmp_path)
    assert value(store, tid) == '[3 "never" 4]'


def test_with_timeout_bounds_the_body(store, tmp_path):
    tid = run(store, """
    [(with-timeout 5 (+ 1 2))
     (try (with-timeout 0.1 (sleep 5) :late) (catch :timeout e :timed-out))
     (try (with-timeout 5 (throw (ex-info "inner" {}))) (catch e (:message e)))]
    """, tmp_path)
    assert value(store, tid) == '[3 :timed-out "inner"]'


def test_an_http_arm_fails_at_its_own_timeout_as_http_does(store, service, tmp_path):
    slow = service.url("/slow/5")
    started = time.monotonic()
    tid = run(store, f"""
    (def r (select (on-http {{:url "{slow}"}} :timeout 0.5) (on-receive) :timeout 4))
    (def plain (try (http {{:url "{slow}"}} :timeout 0.5)
                    (catch :timeout e (dissoc e :backtrace))))
    [(:index r) (:op r) (contains? r :value) (= (dissoc (:error r) :backtrace) plain)
     (:type plain) (:data plain)]
    """, tmp_path)
    assert value(store, tid) == "[0 :http false true :timeout {:op :http}]"
    assert time.monotonic() - started < 3.5
    with store.view() as view:
        assert view.outbox(tid) == []


def test_an_http_arm_not_chosen_leaves_no_timeout_behind(store, service, tmp_path):
    tid = run(store, f"""
    (def r (select (on-http {{:url "{service.url('/slow/5')}"}} :timeout 0.4)
                   (on-join (spawn (fn [] (sleep 0.05) :quick))) :timeout 4))
    (def later (try (receive :timeout 0.8) (catch :timeout e :quiet)))
    [(:index r) (:value r) later]
    """, tmp_path)
    assert value(store, tid) == "[1 :quick :quiet]"
    with store.view() as view:
        assert view.outbox(tid) == []


def test_an_await_arm_on_an_expired_callback_fails_at_once_as_await_does(store, tmp_path):
    store.set_setting(PUBLIC_URL, "http://127.0.0.1:9")
    started = time.monotonic()
    tid = run(store, """
    (def c (callback :timeout 0.2))
    (sleep 0.4)
    (def r (select (on-await c) (on-receive) :timeout 5))
    (def plain (try (await c :timeout 5) (catch e (dissoc e :backtrace))))
    [(:index r) (:op r) (= (dissoc (:error r) :backtrace) plain) (:type plain)]
    """, tmp_path)
    assert value(store, tid) == "[0 :await true :timeout]"
    assert time.monotonic() - started < 3


def test_an_await_arm_fails_when_its_callback_expires_during_the_select(store, tmp_path):
    store.set_setting(PUBLIC_URL, "http://127.0.0.1:9")
    started = time.monotonic()
    tid = run(store, """
    (def r (select (on-await (callback :timeout 0.3)) (on-receive) :timeout 5))
    (def plain (try (await (callback :timeout 0.3)) (catch e e)))
    [(:index r) (:op r) (:type (:error r)) (:data (:error r)) (:type plain) (:data plain)]
    """, tmp_path)
    assert value(store, tid) == "[0 :await :timeout {:op :await} :timeout {:op :await}]"
    assert time.monotonic() - started < 3.5


def test_an_await_arm_on_a_used_up_callback_fails_at_once_as_await_does(store, tmp_path):
    store.set_setting(PUBLIC_URL, "http://127.0.0.1:9")
    tid = api.start(store, """
    (def cb (callback :timeout 60))
    (send (self) (:token cb))
    (def got (await cb :timeout 30))
    (def r (select (on-await cb) (on-receive) :timeout 5))
    (def plain (try (await cb :timeout 5) (catch e (dissoc e :backtrace))))
    [got (:index r) (:op r) (= (dissoc (:error r) :backtrace) plain) (:type plain)]
    """, str(tmp_path / "cb.fm"))
    deliver_to_callback(store, tid)
    started = time.monotonic()
    finish(store, tid)
    assert value(store, tid) == '["payload" 0 :await true :callback-error]'
    assert time.monotonic() - started < 3
