"""The REPL's commands on a task (``,eval`` in a frame, ``,watch``) and on files
(``,load``), driven through ``Repl.submit`` on a real LMDB store in a temporary
directory."""

from __future__ import annotations

import io
import re
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flowmetal.repl.console import Console
from flowmetal.repl.repl import Repl
from flowmetal.runtime import api
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store

WAIT = 20


def eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Session:
    """A REPL on the store in ``tmp_path``, and what each input printed."""

    def __init__(self, tmp_path: Path):
        self.out = io.StringIO()
        self.repl = Repl(Console(self.out), str(tmp_path / "store"))

    def says(self, text: str) -> str:
        start = len(self.out.getvalue())
        self.repl.submit(text)
        return self.out.getvalue()[start:]


@pytest.fixture
def session(tmp_path):
    s = Session(tmp_path)
    yield s
    s.repl.close()


WAITER = """
(def greeting "hello")
(defn make-counter [start]
  (let [n start]
    (fn [] (set! n (+ n 1)) n)))
(defn wait-in [who tally]
  (let [bump (make-counter 10)
        reply (receive (fn [m] true) :timeout 600)]
    [who tally reply (bump)]))
(defn outer [who]
  (let [tally [1 2 3]]
    (conj (wait-in who tally) :done)))
(outer "ann")
"""


def waiting_task(tmp_path: Path) -> tuple[object, str]:
    store = open_store(str(tmp_path / "store"))
    task_id = api.start(store, textwrap.dedent(WAITER), "waiter.fm")
    worker = Worker(store)
    eventually(lambda: (worker.round(), api.get(store, task_id).status == "waiting")[1],
               "the task to wait")
    worker.round(stopping=True)
    return store, task_id


def table_contents(store: object) -> dict:
    """Every key and value of every table of the LMDB store."""
    with store.backend.env.begin() as txn:
        return {name: [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
                for name, db in store.backend.dbs.items()}


def test_eval_runs_in_the_frame_in_view_on_a_copy(tmp_path, session):
    store, task_id = waiting_task(tmp_path)
    before = table_contents(store)
    session.says(f",attach {task_id}")
    # The innermost frames are receive's (the standard library's), with locals of their
    # own; then wait-in's, waiting in receive: its arguments and the let's first binding.
    frames = re.findall(r"#(\d+) (\S+)", session.says(",bt"))
    index = {name: int(n) for n, name in frames}
    assert index["outer"] == index["wait-in"] + 1
    assert "unbound symbol: who" in session.says(",eval who")
    assert f"#{index['wait-in']} wait-in" in session.says(f",frame {index['wait-in']}")
    assert session.says(',eval [who tally (count tally) greeting]') == \
        '["ann" [1 2 3] 3 "hello"]\n'
    # Calling a closure of the task that changes its own state changes only a copy:
    # each ,eval starts again from the task's state.
    assert session.says(",eval (bump)") == "11\n"
    assert session.says(",eval (bump)") == "11\n"
    assert session.says(",eval (def greeting 1)") == "greeting\n"
    assert session.says(",eval greeting") == '"hello"\n'
    # The frame further out sees its own locals, not the inner frame's.
    shown = session.says(",up")
    assert f"#{index['outer']} outer" in shown and "tally = [1 2 3]" in shown
    assert session.says(",eval [who tally]") == '["ann" [1 2 3]]\n'
    assert session.says("*1") == '["ann" [1 2 3]]\n'  # at the prompt, as any value
    assert "unbound symbol: bump" in session.says(",eval bump")
    # Errors come as at the prompt; effects that need a task are refused.
    assert "needs a durable task" in session.says(",eval (receive)")
    assert session.says(",eval") == "usage: ,eval EXPR\n"
    # Nothing of it reached the store: the task waits as it did.
    assert table_contents(store) == before
    api.send(store, task_id, "bob")
    worker = Worker(store)
    eventually(lambda: (worker.round(), api.get(store, task_id).status == "done")[1],
               "the task to finish")
    worker.round(stopping=True)
    session.says(",show")
    assert session.says(",eval 1") == "no continuation: the task has finished\n"


def test_eval_needs_an_attached_task(session):
    assert session.says(",eval (+ 1 2)") == \
        ",eval needs a task: ,attach ID first (,tasks lists them)\n"


def test_watch_shows_each_output_line_once(session):
    session.says(',spawn (do (sleep 0.2) (println "one") (sleep 0.1) (println "two") :end)')
    task_id = session.repl.last_task
    session.says(",attach")
    watched = session.says(",watch 10")
    eventually(lambda: "done: :end" in session.out.getvalue(), "the task's end")
    text = session.out.getvalue()
    tag = f"[{task_id[-6:]}]"
    for line in ("one", "two"):
        # The REPL's worker shows the output of the tasks started here; ,watch does not
        # show it again.
        assert text.count(f"{tag} {line}\n") == 1, text
        assert f"| {line}" not in text, text
    assert "the task finished: done" in watched


def test_watch_shows_the_output_of_a_task_the_repl_did_not_start(tmp_path, session):
    store = open_store(str(tmp_path / "store"))
    task_id = api.start(store, '(sleep 0.2) (println "one") (sleep 0.1) (println "two")\n',
                        "printer.fm")
    session.says(f",attach {task_id}")
    worker = Worker(store)
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set() and api.get(store, task_id).status != "done":
            worker.round()
            time.sleep(0.01)
        worker.round(stopping=True)

    thread = threading.Thread(target=work)
    thread.start()
    try:
        watched = session.says(",watch 10")
    finally:
        stop.set()
        thread.join(WAIT)
    assert watched.count("  | one\n") == 1 and watched.count("  | two\n") == 1, watched


def test_load_of_a_file_that_is_not_utf8_says_where(tmp_path, session):
    path = tmp_path / "latin1.fm"
    path.write_bytes(b'(def a 1)\n(def b "caf\xe9")\n')
    assert session.says(f",load {path}") == f"{path}:2:12: not UTF-8 text (byte 0xe9)\n"
    assert session.repl.failures == 1
    assert session.says(f",load {tmp_path / 'missing.fm'}") == \
        f"cannot read {tmp_path / 'missing.fm'}: No such file or directory\n"
