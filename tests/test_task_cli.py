"""The task commands of the ``flowmetal`` console script, run as real processes on stores
in temporary directories: start, worker, tasks, show, log, send, cancel, resume, export
and import."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest

from flowmetal import cli
from flowmetal.runtime import api
from flowmetal.runtime.worker import Worker
from flowmetal.store import open_store

from .cli_helpers import readable

TIMEOUT = 30


def script_path() -> Path:
    path = Path(sysconfig.get_path("scripts")) / "flowmetal"
    if not path.exists():
        pytest.fail(f"the flowmetal console script is not installed in {path.parent}")
    return path


def env() -> dict:
    out = dict(os.environ)
    out.pop("FLOWMETAL_HOME", None)
    return out


def fm(store: Path, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``flowmetal --store STORE ARGS`` and capture its output."""
    return subprocess.run([str(script_path()), "--store", str(store), *args], env=env(),
                          cwd=store.parent, capture_output=True, text=True, timeout=TIMEOUT,
                          **kwargs)


def popen(store: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(script_path()), "--store", str(store), *args], env=env(),
                            cwd=store.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_default_signals)


def _default_signals() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> tuple[str, str]:
    """Send ``sig`` and collect the rest of the output."""
    try:
        proc.send_signal(sig)
        return proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def read_line(proc: subprocess.Popen, seconds: float = 10) -> str:
    assert readable(proc.stdout, seconds), "no output arrived while the program was running"
    return proc.stdout.readline()


def program(tmp_path: Path, source: str, name: str = "prog.fm") -> str:
    (tmp_path / name).write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return name


def show(store: Path, task_id: str) -> dict:
    r = fm(store, "show", task_id, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def log_kinds(store: Path, task_id: str) -> list[str]:
    r = fm(store, "log", task_id, "--json")
    assert r.returncode == 0, r.stderr
    return [e["kind"] for e in json.loads(r.stdout)]


def wait_until(store: Path, task_id: str, test, seconds: float = 10) -> dict:
    deadline = time.time() + seconds
    while True:
        detail = show(store, task_id)
        if test(detail):
            return detail
        assert time.time() < deadline, f"gave up waiting; the task is {detail['status']}"
        time.sleep(0.05)


# --- start, worker, tasks, show, log -------------------------------------------------------


def test_start_submits_and_a_worker_runs_it_to_the_end(tmp_path):
    store = tmp_path / "store"
    name = program(tmp_path, """
        (println "hello from" (first *command-line-args*))
        (sleep 0.05)
        {:sum (+ 1 2) :args *command-line-args*}
        """)
    r = fm(store, "start", name, "x", "--flag")
    assert r.returncode == 0 and r.stderr == ""
    task_id = r.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{21}", task_id)

    (row,) = json.loads(fm(store, "tasks", "--json").stdout)
    assert (row["id"], row["name"], row["status"]) == (task_id, "prog.fm", "runnable")

    r = fm(store, "worker", "--until-idle")
    assert (r.returncode, r.stdout, r.stderr) == (
        0, f"[{task_id}] hello from x\n"
           f'[{task_id}] prog.fm done: {{:sum 3, :args ["x" "--flag"]}}\n', "")

    detail = show(store, task_id)
    assert detail["status"] == "done"
    assert detail["result"] == '{:sum 3, :args ["x" "--flag"]}'
    assert detail["steps"] >= 2 and detail["frames"] == []
    assert detail["limits"]["depth_frames"] > 0 and detail["error"] is None
    assert log_kinds(store, task_id) == ["created", "request", "answer", "done"]

    text = fm(store, "show", task_id).stdout
    assert f"task {task_id} (prog.fm)" in text
    assert '  result      {:sum 3, :args ["x" "--flag"]}' in text
    table = fm(store, "tasks").stdout.splitlines()
    assert table[0].split() == ["ID", "PROGRAM", "STATUS", "AGE", "WAITING", "ON"]
    assert table[1].split()[:3] == [task_id, "prog.fm", "done"]
    log = fm(store, "log", task_id).stdout.splitlines()
    assert log[0].split() == ["SEQ", "TIME", "KIND", "DETAILS"]
    assert "op=sleep" in log[2]
    # A worker's showing is not a run's: resume shows the output once, then no more.
    r = fm(store, "resume", task_id)
    assert (r.returncode, r.stdout) == (0, "hello from x\n")
    assert fm(store, "resume", task_id).stdout == ""


def test_a_waiting_task_shows_its_frames_and_wakes_when_sent_a_message(tmp_path):
    store = tmp_path / "store"
    name = program(tmp_path, """
        (defn handle [order]
          (let [qty (* 2 (:qty order))
                reply (receive (fn [m] (= (first m) :ok)) :timeout 60)]
            (println "reply" reply "for" qty)
            qty))
        (println "total" (handle {:qty 21}))
        """)
    task_id = fm(store, "start", name).stdout.strip()
    worker = popen(store, "worker")
    try:
        wait_until(store, task_id, lambda d: d["status"] == "waiting")
    finally:
        out, err = stop(worker, signal.SIGTERM)
    assert (worker.returncode, out, err) == (0, "", "")

    detail = show(store, task_id)
    assert detail["waiting"]["op"] == "receive" and detail["waiting"]["until"] > 0
    assert detail["lease"] is None
    assert detail["request"].startswith("{:op :next-message")
    frame = next(f for f in detail["frames"] if f["proc"] == "handle")
    assert (frame["file"], frame["line"]) == ("prog.fm", 3)
    assert "(receive" in frame["source"]
    assert {"name": "qty", "value": "42", "depth": 0} in frame["bindings"]
    assert {"name": "order", "value": "{:qty 21}", "depth": 1} in frame["bindings"]
    assert detail["frames"][-1]["proc"] == "<toplevel>"
    text = fm(store, "show", task_id).stdout
    assert "continuation, innermost first:" in text
    assert "       qty = 42\n" in text

    # A message the receive passes over stays queued; the matching one wakes the task.
    assert fm(store, "send", task_id, "[:noise 1]").returncode == 0
    assert fm(store, "send", task_id, '[:ok "fine"]').returncode == 0
    r = fm(store, "resume", task_id)
    assert (r.returncode, r.stdout, r.stderr) == (0, 'reply [:ok "fine"] for 42\ntotal 42\n',
                                                  "")
    assert log_kinds(store, task_id).count("message") == 2
    assert show(store, task_id)["inbox"] == 1


def test_send_refuses_unknown_and_finished_tasks_and_bad_forms(tmp_path):
    store = tmp_path / "store"
    r = fm(store, "run", program(tmp_path, "(+ 1 2)\n"))
    assert r.returncode == 0
    (done,) = json.loads(fm(store, "tasks", "--json").stdout)
    for args, message in [
        (["send", "nosuchtask", "1"], "flowmetal: no task nosuchtask\n"),
        (["send", done["id"], "1"], f"flowmetal: cannot send to task {done['id']}: it is "
                                    "done\n"),
        (["send", done["id"], "[1 2"], "<send>:1:1: unterminated vector opened at "
                                       "<send>:1:1: expected `]` before the end of input\n"),
        (["cancel", done["id"]], f"flowmetal: cannot cancel task {done['id']}: it is done\n"),
        (["show", "nosuchtask"], "flowmetal: no task nosuchtask\n"),
        (["log", "nosuchtask"], "flowmetal: no task nosuchtask\n"),
        (["resume", "nosuchtask"], "flowmetal: no task nosuchtask\n"),
        (["export", "nosuchtask", "-o", "x.fmt"], "flowmetal: no task nosuchtask\n"),
    ]:
        r = fm(store, *args)
        assert (r.returncode, r.stderr) == (2, message), args
    assert not (tmp_path / "x.fmt").exists()
    r = fm(tmp_path / "nothing-here", "tasks")
    assert (r.returncode, r.stderr) == (2, f"flowmetal: no store at {tmp_path / 'nothing-here'}\n")


# --- cancel ---------------------------------------------------------------------------------


def test_cancel_stops_a_waiting_task_running_in_the_foreground(tmp_path):
    store = tmp_path / "store"
    name = program(tmp_path, """
        (println "working")
        (try (sleep 60) (finally (println "cleaning up")))
        """)
    proc = popen(store, "run", name)
    try:
        assert read_line(proc) == "working\n"
        (row,) = json.loads(fm(store, "tasks", "--json").stdout)
        wait_until(store, row["id"], lambda d: d["status"] == "waiting")
        r = fm(store, "cancel", row["id"])
        assert (r.returncode, r.stderr) == (0, "")
        assert r.stdout.startswith(f"task {row['id']} cancelled: its wait raised")
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    assert out == "cleaning up\n"
    assert err == f"error: task {row['id']} was cancelled (:cancelled)\n"
    assert show(store, row["id"])["status"] == "cancelled"
    assert log_kinds(store, row["id"])[-3:] == ["cancel", "answer", "cancelled"]


# --- Ctrl-C and resume ----------------------------------------------------------------------


def test_ctrl_c_leaves_the_task_and_resume_finishes_it_showing_the_rest(tmp_path):
    store = tmp_path / "store"
    name = program(tmp_path, """
        (doseq [i (range 4)] (println "tick" i) (sleep 0.15))
        (throw (ex-info "the end" {:ticks 4} :finished))
        """)
    proc = popen(store, "run", name)
    assert read_line(proc) == "tick 0\n"
    out, err = stop(proc)
    assert proc.returncode == 130
    match = re.fullmatch(r"flowmetal: task (\w+) left in the store; finish it with: "
                         r"flowmetal resume \1 --store (\S+)\n", err)
    assert match, err
    assert match.group(2) == str(store)
    task_id = match.group(1)
    detail = show(store, task_id)
    assert detail["status"] in ("waiting", "runnable") and detail["lease"] is None
    r = fm(store, "resume", task_id)
    assert r.returncode == 1
    assert out + r.stdout == "tick 1\ntick 2\ntick 3\n"
    assert r.stderr.startswith("error: the end (:finished)\n  data: {:ticks 4}\n"
                               "  at <toplevel> (prog.fm:2:1)\n")
    # A finished task resumes to its end again: nothing more to show, the same status.
    r = fm(store, "resume", task_id)
    assert (r.returncode, r.stdout) == (1, "")


def test_run_with_a_slice_of_one_and_trace_keeps_every_state(tmp_path):
    store = tmp_path / "store"
    name = program(tmp_path, "(defn f [n] (if (= n 0) 0 (+ 1 (f (dec n))))) (println (f 5))\n")
    r = fm(store, "run", "--slice", "1", "--trace", name)
    assert (r.returncode, r.stdout, r.stderr) == (0, "5\n", "")
    (row,) = json.loads(fm(store, "tasks", "--json").stdout)
    events = json.loads(fm(store, "log", row["id"], "--json").stdout)
    steps = [e for e in events if e["kind"] == "step"]
    assert len(steps) == row["steps"] - 1 >= 10  # the last step ends it: no state
    assert all(e["details"]["state_bytes"] > 0 for e in steps)


# --- export and import ----------------------------------------------------------------------


def test_export_moves_a_waiting_task_to_another_store(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    name = program(tmp_path, """
        (println "before")
        (def m (receive (fn [x] (= (first x) :go)) :timeout 30))
        (println "got" m)
        (sleep 0.1)
        (println "after sleep")
        """)
    proc = popen(one, "run", name)
    assert read_line(proc) == "before\n"
    (row,) = json.loads(fm(one, "tasks", "--json").stdout)
    task_id = row["id"]
    wait_until(one, task_id, lambda d: d["status"] == "waiting")
    stop(proc)
    assert fm(one, "send", task_id, "[:noise 1]").returncode == 0

    r = fm(one, "export", task_id, "-o", "task.fmt")
    assert (r.returncode, r.stdout) == (0, "")
    assert r.stderr == f"flowmetal: task {task_id} exported; it is marked moved in {one}\n"
    assert show(one, task_id)["status"] == "moved"
    assert log_kinds(one, task_id)[-1] == "exported"
    for args, message in [
        (["export", task_id, "-o", "again.fmt"], f"task {task_id} has already moved"),
        (["send", task_id, "[:go 1]"], "it moved to another store"),
        (["resume", task_id], "moved to another store; resume it there"),
    ]:
        r = fm(one, *args)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)

    r = fm(two, "import", "task.fmt")
    assert (r.returncode, r.stdout, r.stderr) == (0, task_id + "\n", "")
    r = fm(two, "import", "task.fmt")
    assert r.returncode == 2
    assert r.stderr.startswith(f"flowmetal: task {task_id} is already in this store (")
    detail = show(two, task_id)
    # The message passed over woke the receive, which has not yet run to wait again.
    assert (detail["status"], detail["inbox"]) == ("runnable", 1)
    assert log_kinds(two, task_id)[0] == "created"
    assert log_kinds(two, task_id)[-1] == "imported"
    assert fm(two, "send", task_id, "[:go 7]").returncode == 0
    r = fm(two, "resume", task_id)
    assert (r.returncode, r.stdout, r.stderr) == (0, "got [:go 7]\nafter sleep\n", "")


def test_a_sleeping_task_moves_through_stdout_and_wakes_in_the_new_store(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    name = program(tmp_path, """
        (println "sleeping")
        (sleep 0.4)
        (println "woke")
        """)
    proc = popen(one, "run", name)
    assert read_line(proc) == "sleeping\n"
    stop(proc)
    (row,) = json.loads(fm(one, "tasks", "--json").stdout)
    with open(tmp_path / "task.fmt", "wb") as f:
        r = subprocess.run([str(script_path()), "--store", str(one), "export", row["id"]],
                           stdout=f, stderr=subprocess.PIPE, env=env(), timeout=TIMEOUT)
    assert r.returncode == 0
    r = fm(two, "import", str(tmp_path / "task.fmt"))
    assert r.returncode == 0
    detail = show(two, row["id"])
    assert detail["waiting"]["op"] == "sleep"
    r = fm(two, "resume", row["id"])
    assert (r.returncode, r.stdout, r.stderr) == (0, "woke\n", "")
    r = fm(two, "import", str(tmp_path / "tasks.fm"))
    assert r.returncode == 2 and "cannot read" in r.stderr
    (tmp_path / "junk.fmt").write_bytes(b"\xa1\x66format\x63bad")
    r = fm(two, "import", str(tmp_path / "junk.fmt"))
    assert (r.returncode, r.stderr) == (2, "flowmetal: not a flowmetal-task-export/2 file "
                                           "(it is bad)\n")


def test_a_task_a_live_worker_runs_cannot_be_exported(tmp_path):
    store = tmp_path / "store"
    name = program(tmp_path, "(defn spin [n] (spin (inc n))) (spin 0)\n")
    task_id = fm(store, "start", name).stdout.strip()
    worker = popen(store, "worker", "--slice", "1000")
    try:
        wait_until(store, task_id, lambda d: d["running"])
        r = fm(store, "export", task_id, "-o", "task.fmt")
        assert r.returncode == 2
        assert f"flowmetal: task {task_id} is running on worker " in r.stderr
        assert not (tmp_path / "task.fmt").exists()
    finally:
        out, err = stop(worker, signal.SIGTERM)
    assert (worker.returncode, err) == (0, "")
    detail = show(store, task_id)
    assert (detail["status"], detail["lease"]) == ("runnable", None)
    assert detail["frames"][0]["proc"] == "spin"
    assert fm(store, "export", task_id, "-o", "task.fmt").returncode == 0
    assert show(store, task_id)["status"] == "moved"


# --- the listing's selection, in process ---------------------------------------------------


def test_tasks_lists_recent_finished_tasks_unless_all(tmp_path, capsys):
    store = open_store(str(tmp_path / "store"))
    ids = [api.start(store, f"{i}", "n.fm") for i in range(cli.RECENT_FINISHED + 2)]
    Worker(store).run(idle_exit=True)
    waiting = api.start(store, "(sleep 60)", "w.fm")
    assert cli.main(["--store", store.path, "tasks", "--json"]) == 0
    listed = [t["id"] for t in json.loads(capsys.readouterr().out)]
    assert listed[-1] == waiting
    assert len(listed) == cli.RECENT_FINISHED + 1 and ids[0] not in listed
    assert cli.main(["--store", store.path, "tasks"]) == 0
    assert capsys.readouterr().out.endswith(
        "(2 older finished tasks not listed: flowmetal tasks --all)\n")
    assert cli.main(["tasks", "--all", "--json", "--store", store.path]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(ids) + 1

