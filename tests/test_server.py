"""The control plane over HTTP, with a real server on 127.0.0.1, a real client and a
worker process, on both stores: authentication, every task operation, problem+json
errors, and the callback URLs (single and multi use, expiry, size, Standard Webhooks
signatures, concurrent deliveries)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from flowmetal.server.webhooks import sign
from flowmetal.store.callbacks import PUBLIC_URL

from .served import Served, WorkerProcess
from .test_store import KINDS, make_store

ENDPOINTS = [("GET", "/api/v1/tasks"), ("POST", "/api/v1/tasks"),
             ("GET", "/api/v1/tasks/x"), ("GET", "/api/v1/tasks/x/log"),
             ("GET", "/api/v1/tasks/x/output"), ("GET", "/api/v1/tasks/x/frames"),
             ("GET", "/api/v1/tasks/x/result"), ("POST", "/api/v1/tasks/x/export"),
             ("POST", "/api/v1/tasks/x/messages"), ("POST", "/api/v1/tasks/x/cancel"),
             ("POST", "/api/v1/programs")]


@pytest.fixture(scope="module", params=KINDS)
def plane(request, tmp_path_factory):
    """(server, write token, read token), a worker running the store's tasks."""
    store, drop = make_store(request.param, tmp_path_factory.mktemp("plane"))
    served = Served(store).start()
    store.set_setting(PUBLIC_URL, served.url())
    write, _ = store.token_create("tests", "write")
    read, _ = store.token_create("reader", "read")
    worker = WorkerProcess(store.location)
    yield served, write, read
    worker.stop()
    served.stop()
    drop()


class Client:
    """requests with the bearer token."""

    def __init__(self, served: Served, token: str | None):
        self.served = served
        self.headers = {} if token is None else {"Authorization": f"Bearer {token}"}

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return requests.request(method, self.served.url(path), headers=headers, timeout=30,
                                **kwargs)

    def start(self, source: str, **body) -> str:
        r = self("POST", "/api/v1/tasks", json={"source": source, **body})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    def result(self, task_id: str) -> dict:
        r = self("GET", f"/api/v1/tasks/{task_id}/result", params={"wait": 20})
        assert r.status_code == 200, r.text
        return r.json()

    def output_line(self, task_id: str) -> str:
        r = self("GET", f"/api/v1/tasks/{task_id}/output", params={"wait": 20})
        assert r.status_code == 200 and r.json()["output"], r.text
        return r.json()["output"][0]["text"].strip()


@pytest.fixture
def api(plane):
    served, write, _ = plane
    return Client(served, write)


def problem(r: requests.Response, status: int) -> str:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/problem+json")
    return r.json()["detail"]


def test_health_and_openapi_need_no_token(plane):
    served, _, _ = plane
    assert requests.get(served.url("/healthz"), timeout=10).json() == {"ok": True}
    doc = requests.get(served.url("/openapi.json"), timeout=10).json()
    assert doc["openapi"].startswith("3.1") and "/api/v1/tasks" in doc["paths"]


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_every_endpoint_refuses_a_missing_or_unknown_token(plane, method, path):
    served, _, _ = plane
    for headers in ({}, {"Authorization": "Bearer fm_not-a-token"},
                    {"Authorization": "Basic abc"}):
        r = requests.request(method, served.url(path), headers=headers, timeout=10)
        problem(r, 401)
        assert "Bearer" in r.headers["WWW-Authenticate"]


def test_revoked_and_read_only_tokens_are_refused_with_403(plane):
    served, _, read = plane
    reader = Client(served, read)
    assert reader("GET", "/api/v1/tasks").status_code == 200
    assert "may only read" in problem(reader("POST", "/api/v1/tasks", json={}), 403)
    tid = Client(served, plane[1]).start("(receive)")
    for method in ("POST", "GET", "HEAD"):  # an export changes the task: it moves
        assert reader(method, f"/api/v1/tasks/{tid}/export").status_code in (403, 405)
    assert served.store.get(tid).status != "moved"
    token, rec = served.store.token_create("short-lived", "write")
    gone = Client(served, token)
    assert gone("GET", "/api/v1/tasks").status_code == 200
    served.store.token_revoke(rec.id)
    assert "revoked" in problem(gone("GET", "/api/v1/tasks"), 403)


def test_a_task_started_through_the_api_runs_and_reports(api):
    tid = api.start('(println "hi" (first *command-line-args*)) (receive)',
                    args=["there"], file="hello.fm")
    assert api.output_line(tid) == "hi there"
    r = api("GET", f"/api/v1/tasks/{tid}")
    assert r.status_code == 200 and r.json()["waiting"]["op"] == "receive"
    assert r.json()["frames"], "a waiting task shows its frames"
    frames = api("GET", f"/api/v1/tasks/{tid}/frames").json()
    assert frames["frames"] and frames["error"] is None
    sent = api("POST", f"/api/v1/tasks/{tid}/messages", json={"form": "[:ok 42]"})
    assert sent.status_code == 201 and sent.json()["seq"] == 1
    assert api.result(tid) == {"id": tid, "status": "done", "result": "[:ok 42]",
                               "error": None, "error_text": None}
    kinds = [e["kind"] for e in api("GET", f"/api/v1/tasks/{tid}/log").json()["events"]]
    assert kinds[0] == "created" and "message" in kinds and kinds[-1] == "done"


def test_json_messages_become_maps_with_keyword_keys(api):
    tid = api.start("(:n (receive))")
    api("POST", f"/api/v1/tasks/{tid}/messages", json={"json": {"n": [1, 2.5, None]}})
    assert api.result(tid)["result"] == "[1 2.5 nil]"


def test_listing_filters_and_pages(api):
    ids = [api.start("(+ 1 2)", file=f"page{i}.fm") for i in range(5)]
    for tid in ids:
        api.result(tid)
    seen, after = [], ""
    while True:
        page = api("GET", "/api/v1/tasks", params={"status": "done", "limit": 2,
                                                    "after": after}).json()
        seen += [t["id"] for t in page["tasks"]]
        assert all(t["status"] == "done" for t in page["tasks"])
        if page["next"] is None:
            break
        after = page["next"]
    assert set(ids) <= set(seen) and seen == sorted(seen)
    failed = api.start("(/ 1 0)")
    api.result(failed)
    either = api("GET", "/api/v1/tasks", params={"status": ["done", "failed"]}).json()
    assert {t["id"] for t in either["tasks"]} >= {*ids, failed}
    one = api("GET", "/api/v1/tasks", params={"id": ids[2], "counts": "true"}).json()
    assert [t["id"] for t in one["tasks"]] == [ids[2]] and one["counts"] == {"done": 1}
    problem(api("GET", "/api/v1/tasks", params={"status": "asleep"}), 400)
    problem(api("GET", "/api/v1/tasks", params={"limit": "0"}), 400)


def test_a_start_retried_with_its_idempotency_key_starts_one_task(api):
    key = base64.urlsafe_b64encode(os.urandom(9)).decode()
    first = api("POST", "/api/v1/tasks", json={"source": "(+ 1 2)"},
                headers={"Idempotency-Key": key})
    again = api("POST", "/api/v1/tasks", json={"source": "(+ 1 2)"},
                headers={"Idempotency-Key": key})
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    same = api("POST", "/api/v1/tasks", json={"idempotency_key": key, "source": "(+ 1 2)"})
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    other = api("POST", "/api/v1/tasks", json={"source": "(+ 1 3)"},
                headers={"Idempotency-Key": key})
    assert first.json()["id"] in problem(other, 422)


def test_deploy_then_start_by_name_and_by_hash(api):
    r = api("POST", "/api/v1/programs", json={"name": "doubler",
                                               "source": "(* 2 (count *command-line-args*))"})
    assert r.status_code == 201
    digest = r.json()["program"]
    by_name = api("POST", "/api/v1/tasks", json={"program": "doubler", "args": ["a", "b"]})
    by_hash = api("POST", "/api/v1/tasks", json={"program": digest[:12]})
    assert api.result(by_name.json()["id"])["result"] == "4"
    assert api.result(by_hash.json()["id"])["result"] == "0"
    assert "no program" in problem(api("POST", "/api/v1/tasks",
                                       json={"program": "nothing-here"}), 404)


def test_cancel_and_export(api):
    tid = api.start("(receive)")
    deadline = time.monotonic() + 20
    while api("GET", f"/api/v1/tasks/{tid}").json()["status"] != "waiting":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    r = api("POST", f"/api/v1/tasks/{tid}/cancel")
    assert r.status_code == 202 and r.json()["delivered"] is True
    assert api.result(tid)["status"] == "cancelled"
    other = api.start("(receive)")
    while api("GET", f"/api/v1/tasks/{other}").json()["status"] != "waiting":
        time.sleep(0.05)
    assert api("GET", f"/api/v1/tasks/{other}/export").status_code == 405
    exported = api("POST", f"/api/v1/tasks/{other}/export")
    assert exported.status_code == 200 and exported.headers["Content-Type"] == \
        "application/cbor" and len(exported.content) > 100
    assert api("GET", f"/api/v1/tasks/{other}").json()["status"] == "moved"


def test_bad_requests_get_problems_never_500s(api):
    problem(api("GET", "/api/v1/tasks/no-such-task"), 404)
    problem(api("POST", "/api/v1/tasks", data=b"{not json",
                headers={"Content-Type": "application/json"}), 400)
    problem(api("POST", "/api/v1/tasks", json=[1, 2]), 400)
    problem(api("POST", "/api/v1/tasks", json={"source": "(+ 1"}), 400)
    problem(api("POST", "/api/v1/tasks", json={"source": "1", "limits": {"fuel": -1}}), 400)
    problem(api("POST", "/api/v1/tasks", json={"source": "x" * (2 << 20)}), 413)
    problem(api("POST", "/api/v1/tasks/x/messages", json={"form": "(unclosed"}), 400)
    problem(api("GET", "/api/v1/nothing"), 404)
    problem(api("DELETE", "/api/v1/tasks"), 405)
    assert len(problem(api("GET", "/api/v1/tasks/" + "x" * 5000), 404)) < 200
    for params in ({"limit": "1.5"}, {"counts": "1"}, {"status": ["done", "bogus"]}):
        problem(api("GET", "/api/v1/tasks", params=params), 400)
    json_type = {"Content-Type": "application/json"}
    for body in (b'{"source": "(receive)", "limits": {"wait": NaN}}',
                 b'{"source": "1", "limits": {"deadline": 1e400}}',
                 b'{"source": "1", "limits": {"deadline": 1e17}}',
                 b'{"source": "1", "args": ["\\ud800"]}',
                 b'{"source": "1", "args": ' + b"[" * 900 + b"]" * 900 + b"}"):
        problem(api("POST", "/api/v1/tasks", data=body, headers=json_type), 400)
    problem(api("POST", "/api/v1/tasks", data=b"not gzip at all",
                headers={**json_type, "Content-Encoding": "gzip"}), 400)


# -- callbacks -------------------------------------------------------------------------

def callback_of(api, source: str) -> tuple[str, str]:
    tid = api.start(source)
    return tid, api.output_line(tid)


def test_a_callback_takes_one_request(api, plane):
    tid, url = callback_of(api, """
        (def cb (callback :timeout 60))
        (println (:url cb))
        (def got (await cb))
        [(:method got) (:json got) (get (:query got) "x")]
    """)
    assert len(url.rsplit("/", 1)[1]) >= 43  # at least 256 bits in base64
    r = requests.post(url + "?x=1", json={"ok": True}, timeout=10)
    assert r.status_code == 202
    problem(requests.post(url, json={}, timeout=10), 410)
    assert api.result(tid)["result"] == '["POST" {:ok true} "1"]'
    problem(requests.post(url, json={}, timeout=10), 410)
    problem(requests.post(url.rsplit("/", 1)[0] + "/unknown-token", timeout=10), 404)


def test_a_multi_callback_takes_many_and_queues_them_for_await(api):
    tid, url = callback_of(api, """
        (def cb (callback :timeout 60 :multi true))
        (println (:url cb))
        (receive)
        [(:body (await cb)) (:body (await cb)) (:body (await cb))]
    """)
    for text in ("one", "two", "three"):
        assert requests.post(url, data=text, timeout=10).status_code == 202
    api("POST", f"/api/v1/tasks/{tid}/messages", json={"form": ":go"})
    assert api.result(tid)["result"] == '["one" "two" "three"]'


def test_an_expired_callback_is_gone_and_its_await_times_out(api):
    tid, url = callback_of(api, """
        (def cb (callback :timeout 0.5))
        (println (:url cb))
        (try (await cb) (catch :timeout e :expired))
    """)
    assert api.result(tid)["result"] == ":expired"
    problem(requests.post(url, data="late", timeout=10), 410)


def test_a_body_over_the_limit_is_413(api):
    tid, url = callback_of(api, """
        (def cb (callback :timeout 60))
        (println (:url cb))
        (:body (await cb))
    """)
    problem(requests.post(url, data=b"x" * ((1 << 20) + 1), timeout=30), 413)
    assert requests.post(url, data=b"small", timeout=10).status_code == 202
    assert api.result(tid)["result"] == '"small"'


def test_concurrent_posts_to_a_callback_deliver_once(api):
    tid, url = callback_of(api, """
        (def cb (callback :timeout 60))
        (println (:url cb))
        (:body (await cb))
    """)
    barrier = threading.Barrier(16)

    def post(i: int) -> int:
        barrier.wait()
        return requests.post(url, data=f"from {i}", timeout=30).status_code
    with ThreadPoolExecutor(16) as pool:
        codes = list(pool.map(post, range(16)))
    assert sorted(codes) == [202] + [410] * 15
    assert api.result(tid)["result"].startswith('"from ')


SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def test_a_callback_with_a_secret_takes_only_signed_requests(api):
    tid, url = callback_of(api, f"""
        (def cb (callback :timeout 60 :secret "{SECRET}"))
        (println (:url cb))
        (:json (await cb))
    """)
    body = b'{"event": "paid"}'
    now = int(time.time())
    good = {"webhook-id": "msg_1", "webhook-timestamp": str(now),
            "webhook-signature": sign(SECRET, "msg_1", now, body),
            "Content-Type": "application/json"}
    problem(requests.post(url, data=body, timeout=10), 401)
    problem(requests.post(url, data=body, timeout=10,
                          headers={**good, "webhook-signature": "v1,AAAA"}), 401)
    problem(requests.post(url, data=body + b" ", headers=good, timeout=10), 401)
    stale = now - 600
    problem(requests.post(url, data=body, timeout=10, headers={
        **good, "webhook-timestamp": str(stale),
        "webhook-signature": sign(SECRET, "msg_1", stale, body)}), 401)
    assert requests.post(url, data=body, headers={
        **good, "webhook-signature": "v1,bm90IHRoaXM= " + good["webhook-signature"]},
        timeout=10).status_code == 202
    assert api.result(tid)["result"] == '{:event "paid"}'


def test_a_callback_without_a_public_url_is_a_clear_error(plane, tmp_path):
    store, drop = make_store("lmdb", tmp_path)
    try:
        from flowmetal.runtime import api as task_api
        from flowmetal.runtime.worker import Worker

        tid = task_api.start(store, "(try (callback) (catch e (:message e)))", "cb.fm")
        Worker(store).run(idle_exit=True)
        from flowmetal.runtime.records import result_value

        text = result_value(store.get(tid))
        assert "no public URL" in text and "--public-url" in text
    finally:
        drop()


HEADER_NAME = "abcdefghijklmnopqrstuvwxyz-"
HEADER_VALUE = "".join(chr(c) for c in range(0x20, 0x7f))


def test_fuzzed_callback_requests_get_no_server_errors(api):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    tid, url = callback_of(api, f"""
        (def cb (callback :timeout 120 :multi true :secret "{SECRET}"))
        (def plain (callback :timeout 120 :multi true))
        (println (:url cb) (:url plain))
        (receive)
    """)
    signed, plain = url.split()
    base = signed.rsplit("/", 1)[0]

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(target=st.sampled_from([signed, plain, base + "/unknown", base + "/"]),
           body=st.binary(max_size=3000),
           headers=st.dictionaries(st.text(HEADER_NAME, min_size=1, max_size=20),
                                   st.text(HEADER_VALUE, max_size=60).map(str.strip),
                                   max_size=5),
           webhook=st.booleans())
    def post(target, body, headers, webhook):
        if webhook:
            headers = {**headers, "webhook-id": headers.get("x", "id"),
                       "webhook-timestamp": str(int(time.time())),
                       "webhook-signature": "v1," + base64.b64encode(body[:32]).decode()}
        r = requests.post(target, data=body, headers=headers, timeout=30)
        assert r.status_code in (202, 401, 404, 405, 410, 413), (r.status_code, r.text)
        if r.status_code != 202:
            assert r.headers["Content-Type"].startswith("application/problem+json")
    post()
    api("POST", f"/api/v1/tasks/{tid}/cancel")


def post_raw(url: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> int:
    """POST with headers sent as these very bytes, repeated ones as given; the status
    (checked to come with problem+json if not 202)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("POST", parts.path + (f"?{parts.query}" if parts.query else ""))
        for name, value in [*headers, (b"Content-Length", str(len(body)).encode())]:
            conn.putheader(name, value)
        conn.endheaders(body)
        r = conn.getresponse()
        if r.status != 202:
            assert r.getheader("Content-Type").startswith("application/problem+json")
            assert json.loads(r.read())["detail"]
        return r.status
    finally:
        conn.close()


def test_callback_headers_not_in_utf8_arrive_as_latin1(api):
    tid, url = callback_of(api, """
        (def cb (callback :timeout 60))
        (println (:url cb))
        (def got (:headers (await cb)))
        [(= (get got "x-odd") "caf\u00e9\u00ff") (get got "x-twice")]
    """)
    assert post_raw(url, [(b"X-Odd", b"caf\xe9\xff"), (b"X-Twice", b"1"),
                          (b"x-twice", b"2")], b"hi") == 202
    assert api.result(tid)["result"] == '[true "1, 2"]'


def test_a_callback_query_keeps_every_value_of_a_repeated_parameter(api):
    tid, url = callback_of(api, """
        (def cb (callback :timeout 60))
        (println (:url cb))
        (def q (:query (await cb)))
        [(get q "a") (get q "b") (count q)]
    """)
    assert requests.post(url + "?a=1&a=2&b=3&a=4", timeout=10).status_code == 202
    assert api.result(tid)["result"] == '[["1" "2" "4"] "3" 2]'


def test_a_callback_body_of_json_that_does_not_decode_has_no_json(api):
    tid, url = callback_of(api, """
        (def cb (callback :timeout 60))
        (println (:url cb))
        (def got (await cb))
        [(contains? got :json) (:body got)]
    """)
    r = requests.post(url, data=b'["\\ud800"]', timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 202, r.text
    assert api.result(tid)["result"] == '[false "[\\"\\\\ud800\\"]"]'


def test_hostile_signature_headers_are_401_never_500(api):
    tid, url = callback_of(api, f"""
        (def cb (callback :timeout 60 :multi true :secret "{SECRET}"))
        (println (:url cb))
        [(get (:headers (await cb)) "webhook-id") (get (:headers (await cb)) "webhook-id")]
    """)
    body = b"{}"
    now = int(time.time())

    def signed(msg_id: bytes, stamp: bytes, signature: bytes | None = None) -> int:
        if signature is None:
            content = msg_id + b"." + str(int(stamp)).encode() + b"." + body
            digest = hmac.new(base64.b64decode(SECRET[len("whsec_"):]), content,
                              hashlib.sha256).digest()
            signature = b"v1," + base64.b64encode(digest)
        return post_raw(url, [(b"webhook-id", msg_id), (b"webhook-timestamp", stamp),
                              (b"webhook-signature", signature)], body)
    stamp = str(now).encode()
    assert signed(b"msg_1", stamp, "v1,éé".encode()) == 401
    assert signed(b"msg_1", stamp, "v1,éé".encode("latin-1")) == 401
    assert signed(b"msg_1", b"9" * 400, b"v1,AAAA") == 401
    assert signed(b"msg_1", b"-" + b"9" * 400, b"v1,AAAA") == 401
    assert signed(b"caf\xe9\xff", stamp, b"v1,AAAA") == 401
    for odd in (b"+" + stamp, stamp[:5] + b"_" + stamp[5:], b"0" * 3 + stamp):
        assert signed(b"msg_1", odd) == 401  # signed as the number int() reads
    assert signed(b"caf\xe9\xff", stamp) == 202
    assert signed("é".encode(), stamp) == 202
    assert api.result(tid)["result"] == '["caf\u00e9\u00ff" "\u00c3\u00a9"]'


def test_output_follows_as_server_sent_events(api):
    tid = api.start('(dotimes [i 3] (println "line" i) (sleep 0.05))')
    r = api("GET", f"/api/v1/tasks/{tid}/output", headers={"Accept": "text/event-stream"},
            stream=True)
    assert r.headers["Content-Type"].startswith("text/event-stream")
    events, data = [], []
    for line in r.iter_lines(decode_unicode=True):
        if line.startswith("event: "):
            events.append(line[len("event: "):])
        elif line.startswith("data: ") and events[-1] == "output":
            data.append(json.loads(line[len("data: "):]))
        if events and events[-1] == "end":
            break
    assert events == ["output"] * len(data) + ["end"]
    assert "".join(data) == "line 0\nline 1\nline 2\n"


def test_an_event_stream_resumes_after_its_last_event_and_refuses_an_unknown_task(api):
    tid = api.start('(dotimes [i 3] (println "line" i) (sleep 0.01))')
    api.result(tid)
    stream = {"Accept": "text/event-stream"}
    r = api("GET", f"/api/v1/tasks/{tid}/output", headers={**stream, "Last-Event-ID": "2"})
    lines = r.text.splitlines()
    assert [line for line in lines if line.startswith("data: \"")] == \
        ['data: "line 2\\n"'] and lines[-3:] == ["event: end", "data: {}", ""]
    problem(api("GET", "/api/v1/tasks/no-such-task/output", headers=stream), 404)
