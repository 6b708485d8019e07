"""``(http ...)`` through the outbox and the HTTP request connector, on both stores,
against a real HTTP service on 127.0.0.1."""

from __future__ import annotations

import time

from flowmetal.printer import to_string
from flowmetal.runtime import api
from flowmetal.runtime.records import Status, result_value
from flowmetal.runtime.worker import Worker

from . import test_store as store_tests
from .durable_helpers import log_entries
from .test_store import make_store


def run(store, source: str, tmp_path, timeout: float = 20.0) -> str:
    """Start ``source`` as a task and run it (with an HTTP connector) to its end; its
    result (or error) as printed."""
    task_id = api.start(store, source, str(tmp_path / "main.fm"))
    finish(store, task_id, timeout=timeout)
    return task_id


def finish(store, *ids: str, timeout: float = 20.0) -> None:
    store_tests.finish(store, *ids, timeout=timeout, http=True)


def value(store, task_id: str) -> str:
    rec = store.get(task_id)
    assert rec.status == Status.DONE, to_string(result_value(rec))
    return to_string(result_value(rec))


def test_a_json_response_is_a_map_and_the_request_carries_a_stable_key(store, service,
                                                                       tmp_path):
    tid = run(store, f"""
    (def r (http {{:url "{service.url('/ok')}" :query {{:q "a b"}}}} :timeout 10))
    [(:status r) (get-in r [:json :method]) (get-in r [:json :query]) (:key (:json r))
     (get (:headers r) "content-type")]
    """, tmp_path)
    text = value(store, tid)
    assert text.startswith('[200 "GET" {:q "a b"} "flowmetal-')
    assert "application/json" in text
    assert f"flowmetal-{tid}-1" in text


def test_a_json_body_is_sent_as_json(store, service, tmp_path):
    tid = run(store, f"""
    (def r (http {{:method :post :url "{service.url('/ok')}" :json {{:a [1 2] :b nil}}}}))
    [(get-in r [:json :body]) (get-in r [:json :type])]
    """, tmp_path)
    assert value(store, tid) == '["{\\"a\\":[1,2],\\"b\\":null}" "application/json"]'


def test_retries_keep_the_idempotency_key_and_are_logged(store, service, tmp_path):
    tid = run(store, f"""
    (def r (http {{:url "{service.url('/flaky/2')}"}} :retry {{:initial-interval 0.05}}))
    [(:status r) (:body r)]
    """, tmp_path)
    assert value(store, tid) == '[200 "ok after 3"]'
    assert service.keys("/flaky/2")[f"flowmetal-{tid}-1"] == 3
    kinds = [e["kind"] for e in log_entries(store, tid)]
    assert kinds.count("retry") == 2


def test_a_status_that_keeps_failing_raises_http_error_with_status_and_attempts(
        store, service, tmp_path):
    tid = run(store, f"""
    (try (http {{:url "{service.url('/status/503')}"}}
               :retry {{:initial-interval 0.02 :maximum-attempts 3}})
         (catch :http-error e [(:type e) (get-in e [:data :status])
                               (get-in e [:data :attempts])]))
    """, tmp_path)
    assert value(store, tid) == "[:http-error 503 3]"


def test_other_statuses_are_answers_and_non_retryable_ones_fail_at_once(store, service,
                                                                        tmp_path):
    tid = run(store, f"""
    [(:status (http {{:url "{service.url('/status/404')}"}}))
     (try (http {{:url "{service.url('/status/502')}"}}
                :retry {{:non-retryable-statuses [502]}})
          (catch :http-error e (get-in e [:data :attempts])))]
    """, tmp_path)
    assert value(store, tid) == "[404 1]"


def test_a_dropped_connection_is_retried_then_fails(store, service, tmp_path):
    tid = run(store, f"""
    (try (http {{:url "{service.url('/drop')}"}}
               :retry {{:initial-interval 0.02 :maximum-attempts 2}})
         (catch :http-error e [(get-in e [:data :attempts]) (string? (get-in e [:data :reason]))]))
    """, tmp_path)
    assert value(store, tid) == "[2 true]"


def test_a_timeout_raises_timeout_and_removes_the_request(store, service, tmp_path):
    tid = run(store, f"""
    (try (http {{:url "{service.url('/slow/5')}"}} :timeout 0.3)
         (catch :timeout e :timed-out))
    """, tmp_path)
    assert value(store, tid) == ":timed-out"
    with store.view() as view:
        assert view.outbox(tid) == []


def test_one_request_map_in_a_loop_asks_with_each_call_s_own_options(store, service,
                                                                       tmp_path):
    tid = run(store, f"""
    (def req {{:url "{service.url('/slow/0.5')}"}})
    (vec (for [t [0.1 10 0.1 10.0]]
      (try (:status (http req :timeout t)) (catch :timeout e :timed-out))))
    """, tmp_path)
    assert value(store, tid) == "[:timed-out 200 :timed-out 200]"
    requests = [e["args"] for e in log_entries(store, tid) if e["kind"] == "request"]
    assert [r.rsplit(":timeout ", 1)[1].rstrip("}") for r in requests] == \
        ["0.1", "10", "0.1", "10.0"]


def test_a_body_over_the_limit_fails_the_request(store, service, tmp_path):
    tid = run(store, f"""
    (try (http {{:url "{service.url('/big/2000000')}"}})
         (catch :http-error e (get-in e [:data :reason])))
    """, tmp_path)
    assert value(store, tid) == '"the response body exceeds 1048576 bytes"'


def test_a_head_answer_has_no_body_whatever_its_length(store, service, tmp_path):
    tid = run(store, f"""
    (let [r (http {{:method :head :url "{service.url('/big/5000000')}"}})]
      [(:status r) (:body r) (get-in r [:headers "content-length"])])
    """, tmp_path)
    assert value(store, tid) == '[200 "" "5000000"]'


def test_json_a_value_cannot_hold_leaves_only_the_body(store, service, tmp_path):
    tid = run(store, f"""
    (let [r (http {{:url "{service.url('/raw-json')}"}})]
      [(:status r) (:body r) (contains? r :json)])
    """, tmp_path)
    assert value(store, tid) == r'[200 "{\"x\": \"\\ud800\"}" false]'


def test_retry_after_as_an_http_date_is_waited_for(store, service, tmp_path):
    started, before = time.monotonic(), service.count("/later")
    tid = run(store, f"""
    (:body (http {{:url "{service.url('/later')}"}} :retry {{:initial-interval 0.05}}))
    """, tmp_path)
    assert value(store, tid) == '"now"'
    assert service.count("/later") - before == 2
    assert time.monotonic() - started > 0.9  # (an HTTP date says whole seconds)


def test_bad_requests_are_errors_at_the_call(store, tmp_path):
    tid = run(store, """
    [(try (http {:url "ftp://x"}) (catch e (:message e)))
     (try (http {:url "http://x" :methd :get}) (catch e (:type e)))
     (try (http {:url "http://x"} :retry {:maximum-attempts -1}) (catch e (:type e)))
     (try (http {:url "http://x:99999/"}) (catch e (:message e)))
     (try (http {:url "http://x" :headers {"X-A" "a\r\nX-B: 1"}}) (catch e (:message e)))
     (try (http {:url "http://x" :headers {"X A:" "a"}}) (catch e (:message e)))
     (try (http {:url "http://x"} :timeout ##Inf) (catch e (:message e)))]
    """, tmp_path)
    text = value(store, tid)
    assert "http or https URL" in text and ":type-error :type-error" in text
    for part in ("Port out of range", "header X-A holds a line break",
                 'header name \\"X A:\\" is not a token', ":timeout must be a finite"):
        assert part in text, (part, text)


def test_a_query_parameter_given_a_vector_is_repeated(store, service, tmp_path):
    tid = run(store, f"""
    (get-in (http {{:url "{service.url('/ok')}" :query {{:tag ["a" "b"] :n 1}}}})
            [:json :query])
    """, tmp_path)
    assert value(store, tid) == '{:tag "a,b", :n "1"}'  # (the service joins repeats)


def test_many_requests_at_once_each_get_one_answer(store, service, tmp_path):
    ids = [api.start(store, f'(:body (http {{:url "{service.url("/slow/0.2")}"}}))',
                     str(tmp_path / f"t{i}.fm")) for i in range(20)]
    started = time.monotonic()
    finish(store, *ids)
    assert time.monotonic() - started < 3  # made at once, not one after another
    assert all(value(store, t) == '"slow"' for t in ids)
    keys = service.keys("/slow/0.2")
    assert all(keys[f"flowmetal-{t}-1"] == 1 for t in ids)


def test_cancel_ends_the_wait_and_the_request(store, service, tmp_path):
    tid = api.start(store, f'(http {{:url "{service.url("/slow/0.5")}"}})',
                    str(tmp_path / "c.fm"))
    worker = Worker(store, poll=0.01)
    worker.round()  # the step making the request, committed at the next round
    worker.round()
    assert store.get(tid).status == Status.WAITING
    with store.view() as view:
        assert [request for _, request, _ in view.outbox(tid)] == [1]
    api.cancel(store, tid)
    finish(store, tid)
    assert store.get(tid).status == Status.CANCELLED
    with store.view() as view:
        assert view.outbox(tid) == []


def test_env_is_answered_once_and_recorded(store, tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWMETAL_TEST_ENV", "first")
    tid = run(store, '[(env "FLOWMETAL_TEST_ENV") (env "FLOWMETAL_NO_SUCH_VARIABLE")]',
              tmp_path)
    assert value(store, tid) == '["first" nil]'
    assert [e["kind"] for e in log_entries(store, tid)].count("answer") == 2


def test_env_bytes_that_are_not_utf8_read_as_replacement_characters(store, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("FLOWMETAL_TEST_ENV", b"a\xffb".decode("utf-8", "surrogateescape"))
    tid = run(store, '(env "FLOWMETAL_TEST_ENV")', tmp_path)
    assert value(store, tid) == '"a\ufffdb"'


def test_a_task_waiting_on_a_request_moves_to_another_store(store, service, tmp_path):
    from flowmetal.runtime.migrate import export_task, import_task

    other_kind = "postgres" if store.location.startswith("/") else "lmdb"
    other, drop = make_store(other_kind, tmp_path, "other")
    try:
        tid = api.start(store, f'(:body (http {{:url "{service.url("/slow/0.2")}"}}))',
                        str(tmp_path / "m.fm"))
        worker = Worker(store, poll=0.01)
        worker.round()
        worker.round()  # the request is committed; no connector here makes it
        worker.stop()
        with store.view() as view:
            assert [request for _, request, _ in view.outbox(tid)] == [1]
        path = tmp_path / "task.fmt"
        with open(path, "wb") as f:
            export_task(store, tid, f.write)
        import_task(other, path.read_bytes())
        finish(other, tid)
        assert value(other, tid) == '"slow"'
        assert service.keys("/slow/0.2")[f"flowmetal-{tid}-1"] == 1
    finally:
        drop()


def test_a_select_arm_s_own_timeout_moves_with_its_task(store, service, tmp_path):
    from flowmetal.runtime.migrate import export_task, import_task

    other_kind = "postgres" if store.location.startswith("/") else "lmdb"
    other, drop = make_store(other_kind, tmp_path, "other")
    try:
        tid = api.start(store, f"""
        (let [r (select (on-http {{:url "{service.url('/slow/5')}"}} :timeout 1) :timeout 30)]
          [(:op r) (get-in r [:error :type])])
        """, str(tmp_path / "s.fm"))
        worker = Worker(store, poll=0.01)
        worker.round()
        worker.round()  # the select is committed, its arm's timer armed
        worker.stop()
        path = tmp_path / "task.fmt"
        with open(path, "wb") as f:
            export_task(store, tid, f.write)
        with store.view() as view:
            assert view.next_timer() is None  # none of its timers is left behind
        import_task(other, path.read_bytes())
        started = time.monotonic()
        finish(other, tid)
        assert value(other, tid) == "[:http :timeout]"
        assert time.monotonic() - started < 4  # the arm's timeout, not the select's
    finally:
        drop()
