"""Durable steps through the runtime API, on real LMDB stores: effects and their timeouts,
output committed with its step, limits, corrupt continuations, trace mode and group
commit."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager

import cbor2
import pytest

from flowmetal.codec import decode_machine, encode_machine
from flowmetal.interpreter import Session, base
from flowmetal.printer import to_string
from flowmetal.runtime import api
from flowmetal.runtime.records import decode_data, result_value
from flowmetal.runtime.worker import Worker
from flowmetal.store import StoreUnavailable, open_store
from flowmetal.values import kw

from .durable_helpers import (
    count_writes,
    expire_leases,
    log_entries,
    output_chunks,
    requests_and_answers,
    run_until_finished,
    status,
)

K_TYPE, K_DATA, K_LIMIT = kw("type"), kw("data"), kw("limit")


@pytest.fixture
def store(tmp_path):
    return open_store(str(tmp_path / "store"))


def start(store, tmp_path, source: str, name: str = "main.fm", **options) -> str:
    """Write ``source`` to a file (so relative spawns resolve) and start it."""
    path = tmp_path / name
    path.write_text(source)
    return api.start(store, source, str(path), **options)


def record(store, task_id: str) -> dict:
    return store.get(task_id)


def result(store, task_id: str) -> str:
    return to_string(result_value(record(store, task_id)))


def output(store, task_id: str) -> str:
    return "".join(output_chunks(store, task_id))


def error_of(store, task_id: str):
    rec = record(store, task_id)
    assert rec.status == "failed", rec.status
    return result_value(rec)


def in_memory(source: str, file: str = "mem.fm") -> tuple[str, str, str]:
    """Run a program without the runtime: (status, printed value, output)."""
    s = Session()
    m = s.machine(s.load(source, file))
    m.run_to_end()
    return m.status, to_string(m.val if m.status == "done" else m.error), "".join(m.output)


# ---------------------------------------------------------------------------------------
# sleep, now, random


def test_sleep_waits_without_running_the_task(store, tmp_path):
    tid = start(store, tmp_path, '(println "before") (sleep 0.3) (println "after") :woke')
    counting = count_writes(store)
    worker = Worker(counting, slice_size=1000, poll=0.05)
    began = time.monotonic()
    while status(store, tid) != "waiting":
        worker.round()
        assert time.monotonic() - began < 5
    rec = record(store, tid)
    assert rec.waiting.op == "sleep"
    assert 0.1 < rec.waiting.until - time.time() <= 0.3
    assert output(store, tid) == "before\n"  # shown before the sleep ends
    reductions = rec.reductions
    counting.writes = 0
    worker.run(idle_exit=True)
    elapsed = time.monotonic() - began
    rec = record(store, tid)
    assert rec.status == "done" and result(store, tid) == ":woke"
    assert 0.29 <= elapsed < 3.0
    assert rec.steps == 2 and rec.reductions > reductions
    assert counting.writes < 25  # idle rounds at most every poll, not a busy loop
    assert output(store, tid) == "before\nafter\n"


RECORDED = """
(def r (random 1000000000))
(def f (random))
(def t (now))
(println r f t)
[r f t]
"""


@pytest.mark.parametrize("crash_after", range(1, 7))
def test_now_and_random_are_recorded_across_a_crash(store, tmp_path, crash_after):
    """A worker dies after ``crash_after`` rounds (its last steps never committed); the
    next one resumes the task, which sees the values already recorded, never new ones."""
    tid = start(store, tmp_path, RECORDED)
    first = Worker(store, slice_size=1000)
    for _ in range(crash_after):
        first.round()
    answered = [e for e in log_entries(store, tid) if e["kind"] == "answer"]
    del first  # a crash: its pending step is lost, its leases stand until they expire
    expire_leases(store)
    run_until_finished(store, [tid], timeout=10, slice_size=1000)
    answers = requests_and_answers(log_entries(store, tid))
    assert [op for op, _ in answers] == ["random", "random", "now"]
    values = [a["value"] for _, a in answers]
    assert [a["value"] for a in answered] == values[:len(answered)]
    assert result(store, tid) == "[" + " ".join(values) + "]"
    assert output(store, tid) == " ".join(values) + "\n"
    assert 0 <= int(values[0]) < 10**9 and 0 <= float(values[1]) < 1
    assert abs(float(values[2]) - time.time()) < 60


def test_random_values_differ_between_tasks(store, tmp_path):
    ids = [start(store, tmp_path, "(random 1000000000000)") for _ in range(5)]
    run_until_finished(store, ids, timeout=10)
    assert len({result(store, t) for t in ids}) == 5


# ---------------------------------------------------------------------------------------
# send and receive


SELECTIVE = """
(def me (self))
(doseq [m [[:b 1] [:a 1] [:c 1] [:b 2] [:a 2]]] (send me m))
(def c (receive (fn [m] (= (first m) :c))))
(def a (receive (fn [m] (= (first m) :a))))
(sleep 0.05)
(def rest [(receive) (receive) (receive)])
[c a rest]
"""


@pytest.mark.parametrize("slice_size", [1, 7, 10_000])
def test_selective_receive_leaves_other_messages_queued_in_order(store, tmp_path,
                                                                 slice_size):
    tid = start(store, tmp_path, SELECTIVE)
    worker = Worker(store, slice_size=slice_size)
    end = time.monotonic() + 10
    while not (status(store, tid) == "waiting" and record(store, tid).waiting.op
               == "sleep"):
        worker.round()
        assert time.monotonic() < end
    with store.view() as view:
        queued = [to_string(decode_data(m.value)) for _, m in view.inbox(tid)]
    assert queued == ["[:b 1]", "[:b 2]", "[:a 2]"]
    worker.run(idle_exit=True)
    assert result(store, tid) == "[[:c 1] [:a 1] [[:b 1] [:b 2] [:a 2]]]"
    with store.view() as view:
        assert view.inbox(tid) == []
    requests_and_answers(log_entries(store, tid))


def test_messages_between_tasks_keep_their_order(store, tmp_path):
    src = """
(defn collector [n]
  (loop [i 0 acc []]
    (if (< i n)
      (recur (inc i) (conj acc (receive (fn [m] (= (first m) :item)))))
      [acc (receive)])))
(def c (spawn collector 5))
(send c [:other 0])
(dotimes [i 5] (send c [:item i]))
(join c :timeout 10)
"""
    tid = start(store, tmp_path, src)
    run_until_finished(store, [tid], timeout=10, slice_size=3)
    assert result(store, tid) == \
        "[[[:item 0] [:item 1] [:item 2] [:item 3] [:item 4]] [:other 0]]"


def test_receive_timeout_raises_a_catchable_timeout(store, tmp_path):
    src = """
(send (self) :not-this)
(def caught (try (receive (fn [m] (= m :this)) :timeout 0.2)
                 (catch :timeout e [(:type e) (:op (:data e))])))
[caught (receive (fn [_] true) :timeout 1)]
"""
    tid = start(store, tmp_path, src)
    began = time.monotonic()
    run_until_finished(store, [tid], timeout=10)
    assert time.monotonic() - began >= 0.19
    assert result(store, tid) == "[[:timeout :receive] :not-this]"
    # Uncaught, a timeout fails the task with it.
    tid = start(store, tmp_path, "(receive (fn [_] true) :timeout 0.05)")
    run_until_finished(store, [tid], timeout=10)
    assert error_of(store, tid).get(K_TYPE) == kw("timeout")


def test_waits_without_a_timeout_use_the_task_wait_limit(store, tmp_path):
    src = """
(def r (try (receive) (catch :timeout e (:type e))))
(def child (spawn (fn [] (sleep 0.5) :late)))
(def j (try (join child) (catch :timeout e (:type e))))
[r j (join child :timeout 5)]
"""
    tid = start(store, tmp_path, src, limits={"wait": 0.2})
    began = time.monotonic()
    run_until_finished(store, [tid], timeout=10)
    assert time.monotonic() - began >= 0.4
    assert result(store, tid) == "[:timeout :timeout :late]"


# ---------------------------------------------------------------------------------------
# spawn and join

CHILD = """
(println "child got" *command-line-args*)
(when (= (first *command-line-args*) "fail") (error :custom "child failed" {:x 1}))
(str "child:" (first *command-line-args*))
"""


def test_spawn_a_function_and_a_program_file_and_join_them(store, tmp_path):
    (tmp_path / "child.fm").write_text(CHILD)
    src = """
(defn square-later [x] (sleep 0.01) (println "squaring" x) (* x x))
(def f (spawn square-later 7))
(def g (spawn "child.fm" "hello" 2))
(def bad (spawn "child.fm" "fail"))
(def slow (spawn (fn [] (sleep 5) :slow)))
(def failed (try (join bad) (catch :task-failed e
                  [(:type e) (= (:task (:data e)) bad) (:type (:error (:data e)))])))
(def late (try (join slow :timeout 0.1) (catch :timeout e (:type e))))
(def missing (try (spawn "no-such-file.fm") (catch :spawn-error e (:type e))))
[(join f) (join g) (join f) failed late missing (task? f)]
"""
    tid = start(store, tmp_path, src)
    run_until_finished(store, [tid], timeout=10)
    assert result(store, tid) == \
        '[49 "child:hello" 49 [:task-failed true :custom] :timeout :spawn-error true]'
    rec = record(store, tid)
    assert len(rec.children) == 4
    kids = [record(store, c) for c in rec.children]
    assert all(k.parent == tid and k.root == tid for k in kids)
    assert [k.status for k in kids] == ["done", "done", "failed", "waiting"]
    assert output(store, kids[0].id) == "squaring 7\n"
    assert output(store, kids[1].id) == 'child got ["hello" "2"]\n'
    assert error_of(store, kids[2].id).get(K_TYPE) == kw("custom")


def test_spawned_tasks_run_in_parallel_and_join_in_order(store, tmp_path):
    src = """
(defn napper [i] (sleep 0.3) i)
(def kids (map (fn [i] (spawn napper i)) (range 6)))
(map join kids)
"""
    tid = start(store, tmp_path, src)
    began = time.monotonic()
    run_until_finished(store, [tid], timeout=10)
    assert time.monotonic() - began < 1.5  # six naps of 0.3 s overlap
    assert result(store, tid) == "(0 1 2 3 4 5)"


# ---------------------------------------------------------------------------------------
# steps: nothing visible before the commit, output once


def test_a_step_has_no_effect_before_its_commit(store, tmp_path):
    src = """
(defn sink [] (receive))
(def s (spawn sink))
(println "hello")
(send s :msg)
(join s)
"""
    tid = start(store, tmp_path, src)
    worker = Worker(store, slice_size=10_000)
    worker.round()  # leases the task and runs its first step (up to spawn)
    with store.view() as view:
        assert len(view.tasks()) == 1
    worker.round()  # commits it: the child exists; runs the step up to send
    assert len(record(store, tid).children) == 1
    child = record(store, tid).children[0]
    assert output(store, tid) == ""
    with store.view() as view:
        assert view.inbox(child) == []
    del worker  # the step that printed and sent dies uncommitted
    expire_leases(store)
    assert output(store, tid) == ""
    run_until_finished(store, [tid], timeout=10)
    assert output(store, tid) == "hello\n"
    assert result(store, tid) == ":msg"
    assert [e["kind"] for e in log_entries(store, child)].count("message") == 1


def test_a_round_whose_commit_fails_loses_no_step(store, tmp_path):
    """The store cannot commit for a while (the disk is full, say): the worker says so,
    waits and tries again, and no step's output or request is lost or repeated."""
    tid = start(store, tmp_path, '(dotimes [i 6] (println "line" i) (now)) :ok')
    said = []
    worker = Worker(store, slice_size=10_000, log=said.append)
    for _ in range(3):
        worker.round()
    write = store.backend.write

    @contextmanager
    def refusing():
        with write() as t:
            yield t
            raise StoreUnavailable("No space left on device")

    store.backend.write = refusing
    try:
        assert worker.round() == 0
        assert worker.round() == 0
    finally:
        store.backend.write = write
    assert status(store, tid) != "failed"
    worker.run(idle_exit=True)
    assert "cannot commit" in said[0] and "commits again" in said[-1]
    assert result(store, tid) == ":ok"
    assert output(store, tid) == "".join(f"line {i}\n" for i in range(6))
    assert [op for op, _ in requests_and_answers(log_entries(store, tid))] == ["now"] * 6


PRINTER = """
(defn gen [items]
  (let [return nil resume nil]
    (fn []
      (call/cc (fn [r]
        (set! return r)
        (if resume (resume nil)
          (do (doseq [x items] (call/cc (fn [k] (set! resume k) (return x))))
              (return :done))))))))
(def g (gen [:a :b :c]))
(dotimes [i 4] (println "item" i (g)))
(loop [i 0] (when (< i 30) (print i "") (recur (inc i))))
(println)
(dynamic-wind (fn [] (println "in")) (fn [] (println "body")) (fn [] (println "out")))
(reduce + (range 100))
"""


@pytest.mark.parametrize("slice_size", [1, 5, 50, 100_000])
def test_output_is_committed_once_with_the_step_that_printed_it(store, tmp_path,
                                                                  slice_size):
    tid = start(store, tmp_path, PRINTER)
    run_until_finished(store, [tid], timeout=20, slice_size=slice_size)
    status_, value, text = in_memory(PRINTER)
    chunks = output_chunks(store, tid)
    assert "".join(chunks) == text and status_ == "done"
    assert result(store, tid) == value
    assert all(chunks)
    assert len(chunks) <= record(store, tid).steps
    if slice_size == 100_000:
        assert len(chunks) == 1


# ---------------------------------------------------------------------------------------
# limits

NORMAL = '(dotimes [i 3] (println "tick" i) (sleep 0.02)) :normal'
LIMITED = {
    "fuel": ("(loop [i 0] (recur (inc i)))", {"fuel": 5000}),
    "depth": ("(defn f [n] (+ 1 (f n))) (f 1)", {"depth": 500}),
    "state": ('(loop [v [] i 0] (recur (conj v (str "item" i)) (inc i)))',
              {"state": 20_000}),
    "deadline": ("(loop [i 0] (recur (inc i)))", {"deadline": 0.3}),
    "deadline-waiting": ("(receive)", {"deadline": 0.3}),
}


@pytest.mark.parametrize("limit", sorted(LIMITED))
def test_a_limit_fails_only_its_task(store, tmp_path, limit):
    source, limits = LIMITED[limit]
    bad = start(store, tmp_path, source, "bad.fm", limits=limits)
    good = start(store, tmp_path, NORMAL, "good.fm")
    run_until_finished(store, [bad, good], timeout=20, slice_size=200)
    assert result(store, good) == ":normal"
    assert output(store, good) == "tick 0\ntick 1\ntick 2\n"
    error = error_of(store, bad)
    name = limit.split("-")[0]
    assert error.get(K_TYPE) == kw("limit-error")
    assert error.get(K_DATA).get(K_LIMIT) == kw(name)
    rec = record(store, bad)
    if name == "fuel":
        assert rec.reductions <= 5000
    failed = [e for e in log_entries(store, bad) if e["kind"] == "failed"]
    assert len(failed) == 1
    assert ":limit-error" in failed[0]["error"] and f":limit :{name}" in failed[0]["error"]


@pytest.mark.parametrize("source", [
    "(sleep 1e17)",
    "(sleep ##Inf)",
    "(sleep ##NaN)",
    "(receive (fn [m] true) :timeout 1e300)",
    "(join (spawn (fn [] (sleep 1))) :timeout ##Inf)",
    '(%next-message 0 nil "soon")',
])
def test_an_unstorable_wait_harms_only_its_task(store, tmp_path, source):
    """A wait too long, endless or malformed for a timer: that task sleeps (very long) or
    fails; the worker goes on with the others."""
    good = start(store, tmp_path, "(sleep 0.01) :good", "good.fm")
    bad = start(store, tmp_path, source, "bad.fm")
    run_until_finished(store, [good], timeout=10)
    assert result(store, good) == ":good"
    assert status(store, bad) in ("waiting", "failed")


CHURN = """
(defn blob [i] (vec (map (fn [j] (str "item-" i "-" j)) (range 100))))
(loop [i 0 v (blob 0)]
  (if (< i 60)
    (do (now) (recur (inc i) (blob i)))
    (count v)))
"""


def test_the_state_limit_and_the_stored_state_follow_the_live_state(store, tmp_path):
    """A task that keeps replacing a 1.5 kB value: what it stores at each step, and what
    the state limit measures, stay near its live state."""
    tid = start(store, tmp_path, CHURN, limits={"state": 20_000})
    worker = Worker(store, slice_size=100_000)
    stored, live = [], []
    end = time.monotonic() + 20
    while status(store, tid) not in ("done", "failed"):
        assert time.monotonic() < end
        worker.round()
        with store.view() as view:
            cont = view.continuation(tid)
        stored.append(len(cont))
        live.append(len(encode_machine(decode_machine(cont, base().globals),
                                       base().globals)))
    assert result(store, tid) == "100"
    assert max(stored) <= 3 * max(live) + 4096, (max(stored), max(live))


def test_a_deadline_counts_from_the_tasks_creation(store, tmp_path):
    tid = start(store, tmp_path, "(sleep 0.1) :in-time", limits={"deadline": 5})
    late = start(store, tmp_path, "(sleep 5) :late", limits={"deadline": 0.2})
    began = time.monotonic()
    run_until_finished(store, [tid, late], timeout=10)
    assert time.monotonic() - began < 2
    assert result(store, tid) == ":in-time"
    assert error_of(store, late).get(K_TYPE) == kw("limit-error")


def test_an_idle_worker_leaves_once_deadline_tasks_are_done(store, tmp_path):
    tid = start(store, tmp_path, "(+ 1 2)", limits={"deadline": 30})
    began = time.monotonic()
    Worker(store).run(until=lambda: time.monotonic() - began > 2, idle_exit=True)
    assert result(store, tid) == "3"
    assert time.monotonic() - began < 1.5


def test_an_idle_worker_leaves_once_a_waiting_task_is_failed(store, tmp_path):
    tid = start(store, tmp_path, "(sleep 30)", limits={"deadline": 0.1})
    began = time.monotonic()
    Worker(store).run(until=lambda: time.monotonic() - began > 2, idle_exit=True)
    assert error_of(store, tid).get(K_TYPE) == kw("limit-error")
    assert time.monotonic() - began < 1.5


# ---------------------------------------------------------------------------------------
# corrupt continuations


def corrupt(kind: str, cont: bytes) -> bytes:
    return {
        "truncated": cont[: len(cont) // 2],
        "one-byte": cont[:1],
        "empty": b"",
        "garbage": b"\x00not a continuation at all\xff",
        "other-cbor": cbor2.dumps({"format": "something/9", "records": []}),
        "wrong-root": cbor2.dumps({"format": "flowmetal-state/1", "records": [],
                                   "root": 5}),
    }[kind]


@pytest.mark.parametrize("kind", ["truncated", "one-byte", "empty", "garbage",
                                  "other-cbor", "wrong-root"])
@pytest.mark.parametrize("when", ["runnable", "sleeping"])
def test_a_corrupt_continuation_fails_only_its_task(store, tmp_path, kind, when):
    victim = start(store, tmp_path, '(sleep 0.2) (println "never") :never', "victim.fm")
    other = start(store, tmp_path, NORMAL, "other.fm")
    if when == "sleeping":
        worker = Worker(store)
        while status(store, victim) != "waiting":
            worker.round()
        worker.run(until=lambda: True)  # commits and leaves
    with store.backend.write() as t:
        t.put_cont(victim, corrupt(kind, t.get_cont(victim)))
    run_until_finished(store, [victim, other], timeout=10)
    assert result(store, other) == ":normal"
    error = error_of(store, victim)
    assert error.get(K_TYPE) == kw("corrupt-state")
    assert output(store, victim) == ""
    failed = [e for e in log_entries(store, victim) if e["kind"] == "failed"]
    assert len(failed) == 1 and ":corrupt-state" in failed[0]["error"]


def test_random_damage_to_continuations_never_stops_the_worker(store, tmp_path):
    """Bytes flipped or cut anywhere: each damaged task ends (failed, or done if the
    damage missed anything that matters), the worker never raises, the others finish."""
    rnd = random.Random(7)
    src = '(defn f [x] (sleep 0.01) (str "v" x)) (def r (map f [1 2])) (println r) r'
    healthy = [start(store, tmp_path, NORMAL, f"ok{i}.fm") for i in range(2)]
    damaged = {}
    for i in range(40):
        tid = start(store, tmp_path, src, f"d{i}.fm")
        with store.backend.write() as txn:
            data = bytearray(txn.get_cont(tid))
            how = i % 3
            if how == 0:
                data = data[: rnd.randrange(len(data))]
            else:
                at = rnd.randrange(len(data))
                data[at] = data[at] ^ (1 << rnd.randrange(8)) if how == 1 else \
                    rnd.randrange(256)
            txn.put_cont(tid, bytes(data))
        damaged[tid] = how
    run_until_finished(store, healthy + list(damaged), timeout=60)
    assert all(result(store, t) == ":normal" for t in healthy)
    for tid, how in damaged.items():
        rec = record(store, tid)
        assert rec.status in ("done", "failed")
        if how == 0:
            assert result_value(rec).get(K_TYPE) == kw("corrupt-state")


# ---------------------------------------------------------------------------------------
# trace mode

TRACED = """
(defn fact [n] (if (< n 2) 1 (* n (fact (dec n)))))
(def k-saved nil)
(def count 0)
(def r (+ 10 (call/cc (fn [k] (set! k-saved k) 0))))
(set! count (inc count))
(when (< count 3) (k-saved count))
(sleep 0.01)
(println "fact" (fact 5) r)
[r count (fact 6)]
"""


def finish_in_memory(m) -> str:
    """Run a decoded machine to its end, answering each sleep with nil."""
    for _ in range(100):
        if m.status == "waiting":
            assert m.request.get(kw("op")) == kw("sleep")
            m.answer(None)
        elif m.status == "running":
            m.run(100_000)
        else:
            break
    assert m.status == "done", m.status
    return to_string(m.val)


def test_trace_mode_commits_every_reduction(store, tmp_path):
    tid = start(store, tmp_path, TRACED, trace=True)
    run_until_finished(store, [tid], timeout=30, slice_size=1)
    rec = record(store, tid)
    assert rec.status == "done"
    entries = log_entries(store, tid)
    steps = [e for e in entries if e["kind"] == "step"]
    total = rec.reductions
    assert [e["reductions"] for e in steps] == list(range(1, total))
    assert entries[-1]["kind"] == "done"
    assert rec.steps >= total
    final = result(store, tid)
    for e in steps:
        m = decode_machine(e["state"], base().globals)
        assert m.reductions == e["reductions"]
        assert finish_in_memory(m) == final
    assert output(store, tid) == "fact 120 12\n"


def test_trace_mode_is_inherited_by_spawned_tasks(store, tmp_path):
    src = "(defn f [x] (sleep 0) (+ x 1)) (join (spawn f 2))"
    tid = start(store, tmp_path, src, trace=True)
    run_until_finished(store, [tid], timeout=10, slice_size=1)
    child = record(store, tid).children[0]
    assert record(store, child).trace
    assert any(e["kind"] == "step" for e in log_entries(store, child))
    assert result(store, tid) == "3"


# ---------------------------------------------------------------------------------------
# group commit


def test_steps_of_many_tasks_share_one_commit(store, tmp_path):
    src = '(dotimes [i 5] (println "t" (< 0 (now)))) :ok'
    ids = [start(store, tmp_path, src, f"g{i}.fm") for i in range(20)]
    counting = count_writes(store)
    Worker(counting, batch=64).run(idle_exit=True)
    steps = sum(record(store, t).steps for t in ids)
    assert all(result(store, t) == ":ok" for t in ids)
    assert steps >= 20 * 6
    assert counting.writes * 10 <= steps, (counting.writes, steps)
    for t in ids:
        assert output(store, t) == "t true\n" * 5
        assert [op for op, _ in requests_and_answers(log_entries(store, t))] == ["now"] * 5


def test_one_round_commits_one_step_per_leased_task(store, tmp_path):
    ids = [start(store, tmp_path, "(now) (now) (now)", f"r{i}.fm") for i in range(8)]
    worker = Worker(store, batch=64)
    assert worker.round() == 8  # leased and ran a step of each
    before = [record(store, t).steps for t in ids]
    assert worker.round() == 8  # one transaction committed all eight
    assert [record(store, t).steps - b for t, b in zip(ids, before)] == [1] * 8
    worker.run(idle_exit=True)


def test_a_step_that_cannot_be_committed_fails_only_its_task(store, tmp_path, monkeypatch):
    """Committing one task's step raises: that task fails with an internal error, the
    round's other steps are committed one by one, and the worker goes on."""
    from flowmetal.store import engine as steps

    good = start(store, tmp_path, "(now) (now) :good", "good.fm")
    bad = start(store, tmp_path, "(random 5) :bad", "bad.fm")
    def handle_random(tasks, rec, request_id, req, step, now):
        raise RuntimeError("no randomness today")

    monkeypatch.setitem(steps.HANDLERS, "random", handle_random)
    run_until_finished(store, [good, bad], timeout=10)
    assert result(store, good) == ":good"
    assert status(store, bad) == "failed"
    failed = [e for e in log_entries(store, bad) if e["kind"] == "failed"]
    assert len(failed) == 1
    assert ":internal-error" in failed[0]["error"]
    assert "no randomness today" in failed[0]["error"]


def test_a_worker_keeps_a_bounded_number_of_sleeping_tasks_machines(store, tmp_path):
    # A worker keeps the machines of tasks it let go of while they wait (to take them
    # back without decoding), but never those of every sleeping task in the store.
    from flowmetal.runtime import worker as worker_module

    many = worker_module.PARKED_MAX + 100
    ids = [api.start(store, f"(sleep 600) {i}", str(tmp_path / "sleepy.fm"))
           for i in range(many)]
    worker = Worker(store, batch=200)
    while worker.round():
        pass
    assert {status(store, t) for t in ids} == {"waiting"}
    assert len(worker.parked) == worker_module.PARKED_MAX
