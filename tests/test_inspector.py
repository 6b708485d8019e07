"""The task inspector: ``flowmetal attach`` on a task a separate worker process runs, on a
waiting task (which attaching must not change), through a trace-mode task's history,
and from the REPL (``,spawn``, ``,send``, ``,attach``, ``,watch``)."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from flowmetal.repl.console import Console
from flowmetal.repl.inspector import Inspector
from flowmetal.repl.repl import Repl
from flowmetal.runtime import api
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store
from flowmetal.values import Vector, kw

WAIT = 20


def eventually(check, what: str, seconds: float = WAIT) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def flowmetal(store: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_HOME"}
    return subprocess.run([sys.executable, "-m", "flowmetal", *args, "--store", str(store)],
                          input=stdin, capture_output=True, text=True, timeout=60, env=env,
                          cwd=store.parent)


def start(store: Any, tmp_path: Path, source: str, trace: bool = False) -> str:
    path = tmp_path / "prog.fm"
    path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return api.start(store, path.read_text(encoding="utf-8"), "prog.fm", trace=trace)


def run_until(store: Any, task_id: str, statuses: tuple[str, ...],
              worker: Worker | None = None) -> dict:
    worker = worker or Worker(store)
    eventually(lambda: (worker.round(), api.get(store, task_id).status in statuses)[1],
               f"task {task_id} to be {statuses}")
    worker.round(stopping=True)
    return api.get(store, task_id)


TICKS = """
(defn tick [n total]
  (let [square (* n n)]
    (println "tick" n square)
    (sleep 0.05)
    (if (< n total)
      (+ square (tick (+ n 1) total))
      square)))
(tick 1 40)
"""


def test_attach_follows_a_task_that_a_worker_process_runs(tmp_path):
    store_path = tmp_path / "store"
    store = open_store(str(store_path))
    task_id = start(store, tmp_path, TICKS)
    env = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_HOME"}
    worker = subprocess.Popen([sys.executable, "-m", "flowmetal", "worker", "--store",
                               str(store_path)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        eventually(lambda: api.get(store, task_id).steps >= 3, "the worker to run steps")
        r = flowmetal(store_path, "attach", task_id[-8:],
                      stdin=",up\n,locals\n,bt\n,outbox\n,watch 30\n")
        assert r.returncode == 0, r.stderr
        out = r.stdout
        # The task's summary and its innermost frame: the sleep it waits in (or is about
        # to make), with the source line, the form highlighted, and the locals.
        assert out.startswith(f"task {task_id} (prog.fm)\n  status   ")
        first = re.search(r"#0 tick at prog\.fm:4:5\n     4 \|     \(sleep 0\.05\)\n"
                          r" {13}\^{12}\n  square = (\d+)\n  n = (\d+)\n  total = 40\n", out)
        assert first, out
        n = int(first.group(2))
        assert int(first.group(1)) == n * n
        # ,up: the caller, waiting for the recursive call's value, one n lower.
        assert (f"#1 tick at prog.fm:6:7\n     6 |       (+ square (tick (+ n 1) total))\n"
                f"{' ' * 15}{'^' * 31}\n  square = {(n - 1) ** 2}\n  n = {n - 1}\n"
                "  total = 40\n") in out
        # ,bt: a frame per pending call (the top-level call is a tail call: no frame).
        assert "> #1 tick at prog.fm:6:7\n  #2 tick at prog.fm:6:7\n" in out
        assert f"  #{n - 1} tick at prog.fm:6:7\nthe store keeps no outbox yet" in out
        # ,watch: the steps as they commit, the output, and the end.
        assert re.search(r"\d\d:\d\d:\d\d\.\d{3} step \d+: waiting: sleep until [\d:]+ "
                         r"at tick \(prog\.fm:4:5\)\n", out), out
        assert "  | tick 40 1600\n" in out
        assert "the task finished: done\n" in out
        assert "  result   22140\n" in out  # the sum of the squares of 1..40
        assert api.get(store, task_id).status == "done"
    finally:
        worker.send_signal(signal.SIGINT)
        try:
            worker.communicate(timeout=WAIT)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()


def dump(store: Any) -> dict:
    """Every key and value of every table of the store."""
    with store.backend.env.begin() as txn:
        return {name: [(bytes(k), bytes(v)) for k, v in txn.cursor(db=db)]
                for name, db in store.backend.dbs.items()}


def test_attaching_never_changes_the_task(tmp_path):
    store_path = tmp_path / "store"
    store = open_store(str(store_path))
    task_id = start(store, tmp_path, """
        (defn wait-for-ok [patience]
          (let [pred (fn [m] (= (first m) :ok))]
            [:got (receive pred :timeout patience)]))
        (println "got" (wait-for-ok 600))
    """)
    run_until(store, task_id, ("waiting",))
    api.send(store, task_id, Vector([kw("other"), 1]))  # passed over: stays queued
    rec = run_until(store, task_id, ("waiting",))
    assert rec.waiting.op == "next-message"
    before = dump(store)
    data_file = (store_path / "data.mdb").read_bytes()
    r = flowmetal(store_path, "attach", task_id, stdin=(
        ",bt\n,up\n,down\n,frame 2\n,locals\n,inbox\n,outbox\n,log\n,watch 0.3\n,step\n"
        ",back\n,show\n,detach\n,up\n"))
    assert r.returncode == 0, r.stderr
    assert dump(store) == before
    assert (store_path / "data.mdb").read_bytes() == data_file  # not even rewritten
    out = r.stdout
    assert "status   waiting: receive until " in out
    assert "inbox: 1 messages, oldest first\n  #1 from outside at " in out
    assert out.count(": [:other 1]\n") == 1
    assert re.search(r"  request #\d+ \(next-message, until [\d:.]+\)\n", out)
    assert "#2 wait-for-ok at prog.fm:3:5\n" in out
    assert "  pred = #<fn pred>\n  patience = 600\n" in out
    assert "watching task" in out and "stopped watching after 0.3 s" in out
    assert "does not run in trace mode" in out
    assert "created   program=" in out and "message   seq=1" in out
    assert ",up needs a task: ,attach ID first" in r.stderr


FACT = """
(defn fact [n]
  (if (< n 2)
    1
    (* n (fact (- n 1)))))
(println (fact 4))
"""


def test_step_and_back_move_through_a_trace_mode_task(tmp_path):
    store = open_store(str(tmp_path / "store"))
    task_id = start(store, tmp_path, FACT, trace=True)
    run_until(store, task_id, ("done",), Worker(store, slice_size=1))
    out = io.StringIO()
    ins = Inspector(store, task_id, Console(out))
    ins.show()
    assert "result   nil" in out.getvalue()
    recorded = len(ins.history)
    assert recorded >= 8
    seen = []  # (position, frames, innermost n) from the last step back to the first
    while True:
        before = ins.position
        ins.back()
        if ins.position == before:
            break
        n = next((b["value"] for b in ins.frames[0]["bindings"] if b["name"] == "n"),
                 None) if ins.frames else None
        seen.append((ins.position, len(ins.frames), n))
    assert "this is the first recorded step" in out.getvalue()
    assert [p for p, _, _ in seen] == list(range(recorded - 1, -1, -1))
    # Forward in time the recursion deepens, then unwinds; the deepest state is the
    # call with the smallest n.
    depths = [frames for _, frames, _ in reversed(seen)]
    top = depths.index(max(depths))
    assert max(depths) >= 3
    assert depths[1:top + 1] == sorted(depths[1:top + 1])
    assert depths[top:] == sorted(depths[top:], reverse=True)
    deepest_n = [n for _, frames, n in seen if frames == max(depths)]
    assert min(deepest_n) == min(n for _, _, n in seen if n is not None)
    assert "viewing recorded step 1 of" in out.getvalue()
    ins.step()
    assert ins.position == 1
    for _ in range(recorded):
        ins.step()
    assert ins.position is None
    ins.step()
    assert out.getvalue().endswith("this is the latest committed step (,watch follows "
                                   "the task)\n")


def test_spawn_send_and_attach_from_the_repl(tmp_path):
    out = io.StringIO()
    repl = Repl(Console(out), str(tmp_path / "store"))
    try:
        repl.submit('(defn greeting [who] (str "hello, " who))')
        repl.submit(',spawn (do (println "waiting") (println (greeting (receive))) :finished)')
        task_id = repl.last_task
        assert task_id is not None
        tag = f"[{task_id[-6:]}]"
        eventually(lambda: f"{tag} waiting\n" in out.getvalue(), "the task's first output")
        repl.submit(f',send {task_id[-6:]} "ann"')
        repl.submit(",attach")
        repl.submit(",watch 20")
        eventually(lambda: f"{tag} done: :finished\n" in out.getvalue(), "the task's end")
        text = out.getvalue()
        assert f"{tag} hello, ann\n" in text
        assert f"message #1 sent to task {task_id}\n" in text
        assert "the task finished: done" in text
        assert repl.prompt() == f"fm[{task_id[-6:]}#0]> "
        repl.submit(",tasks")
        assert re.search(rf"{task_id}  <repl>\s+done\n", out.getvalue())
        repl.submit(",detach")
        assert repl.prompt() == "fm> "
    finally:
        repl.close()


def test_attach_to_an_unknown_task_fails_clearly(tmp_path):
    open_store(str(tmp_path / "store"))
    r = flowmetal(tmp_path / "store", "attach", "nosuch")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "flowmetal: no task nosuch\n")
