"""The command line as a new user meets it, run as real processes on stores in temporary
directories: where a task's output goes (worker, output), what run runs, the default
wait and the limits, store paths that cannot be stores, task ids by prefix or suffix,
rm and prune, mistyped commands, JSON output, and bytes that are not UTF-8."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from flowmetal import cli

from .test_task_cli import TIMEOUT, env, fm, popen, program, script_path, show, stop

ID = r"[0-9a-f]{21}"


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def fm_in(cwd: Path, store: Path, *args: str) -> subprocess.CompletedProcess:
    """``flowmetal --store STORE ARGS`` run in ``cwd``."""
    return subprocess.run([str(script_path()), "--store", str(store), *args], env=env(),
                          cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def start(store: Path, *args: str) -> str:
    return ok(fm(store, "start", *args)).strip()


def tasks(store: Path) -> list[dict]:
    return json.loads(ok(fm(store, "tasks", "--json", "--all")))


# --- where the output goes ------------------------------------------------------------------


def test_a_worker_shows_its_tasks_output_by_id_and_a_line_for_each_end(tmp_path):
    store = tmp_path / "store"
    hello = start(store, program(tmp_path, """
        (print "hel")
        (sleep 0)
        (println "lo")
        (println "two" "lines\\nhere")
        {:n (+ 1 2)}
        """, "hello.fm"))
    boom = start(store, program(tmp_path, '(print "half a line") (error "boom")\n', "boom.fm"))
    r = fm(store, "worker", "--until-idle")
    assert (r.returncode, r.stderr) == (0, "")
    lines = r.stdout.splitlines()
    assert [line for line in lines if line.startswith(f"[{hello}]")] == [
        f"[{hello}] hello", f"[{hello}] two lines", f"[{hello}] here",
        f"[{hello}] hello.fm done: {{:n 3}}"]
    assert [line for line in lines if line.startswith(f"[{boom}]")] == [
        f"[{boom}] half a line",
        f"[{boom}] boom.fm failed: boom (:error) at boom.fm:1:23"]
    # The output is the task's: flowmetal output shows it all, as often as asked.
    assert ok(fm(store, "output", hello)) == "hello\ntwo lines\nhere\n"
    assert ok(fm(store, "output", hello)) == "hello\ntwo lines\nhere\n"
    assert ok(fm(store, "output", boom)) == "half a line"

    quiet = start(store, program(tmp_path, '(println "shh")\n', "quiet.fm"))
    r = fm(store, "worker", "--until-idle", "--quiet")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")
    assert ok(fm(store, "output", quiet)) == "shh\n"


def test_output_follows_a_running_task_until_it_ends(tmp_path):
    store = tmp_path / "store"
    task = start(store, program(tmp_path, """
        (doseq [i (range 3)] (println "tick" i) (sleep 0.2))
        (error "the end")
        """))
    follower = popen(store, "output", task[:8], "-f")
    worker = popen(store, "worker", "--quiet")
    try:
        out, err = follower.communicate(timeout=TIMEOUT)
    finally:
        stop(worker, signal.SIGTERM)
        if follower.poll() is None:
            follower.kill()
    assert follower.returncode == 1
    assert out == "tick 0\ntick 1\ntick 2\n"
    assert err.startswith("error: the end (:error)\n")
    r = fm(store, "output", task, "--follow")  # ended: at once
    assert (r.returncode, r.stdout, r.stderr) == (1, out, err)


# --- what run runs --------------------------------------------------------------------------


def test_run_runs_only_its_own_task_and_the_tasks_it_spawned(tmp_path):
    store = tmp_path / "store"
    other = start(store, program(tmp_path, '(println "other") :other\n', "other.fm"))
    name = program(tmp_path, """
        (def kid (spawn (fn [] (println "kid") :kid)))
        (println "main" (join kid))
        """, "main.fm")
    r = fm(store, "run", name)
    assert (r.returncode, r.stdout, r.stderr) == (0, "kid\nmain :kid\n", "")
    assert show(store, other)["status"] == "runnable"
    assert show(store, other)["steps"] == 0


# --- the default wait and the limits ---------------------------------------------------------


def test_the_default_wait_is_shown_and_set_on_start_and_run(tmp_path):
    store = tmp_path / "store"
    waits = program(tmp_path, "(receive)\n", "waits.fm")
    default = start(store, waits)
    longer = start(store, "--wait", "2h", waits)
    forever = start(store, "--wait=none", waits)
    explicit = start(store, program(tmp_path, "(receive :timeout nil)\n", "nil.fm"))
    ok(fm(store, "worker", "--until-idle", "--quiet"))  # only waiting tasks are left

    for task, seconds in [(default, 86400.0), (longer, 7200.0), (forever, None)]:
        d = show(store, task)
        assert d["limits"]["wait_seconds"] == seconds
        assert d["waiting"]["op"] == "receive" and d["waiting"]["default_wait"]
        assert (d["waiting"]["until"] is None) == (seconds is None)
        if seconds is not None:
            assert seconds - 5 < d["waiting"]["until"] - d["updated"] <= seconds
    d = show(store, explicit)
    assert (d["waiting"]["until"], d["waiting"]["default_wait"]) == (None, False)

    text = ok(fm(store, "show", longer))
    assert re.search(r"  status      waiting: receive until \S+( \S+)? \(the default wait\)",
                     text), text
    assert "wait 2h (waits without :timeout)" in text
    assert re.search(r"fuel none, depth [0-9,]+ frames, state [0-9.]+ MiB, deadline none",
                     text), text
    assert "waiting: receive, forever" in ok(fm(store, "show", explicit))
    table = ok(fm(store, "tasks"))
    row = next(line for line in table.splitlines() if line.startswith(default))
    assert row.endswith("(the default wait)"), row
    row = next(line for line in table.splitlines() if line.startswith(forever))
    assert row.endswith("receive, forever"), row


def test_limits_on_the_command_line_bound_the_task(tmp_path):
    store = tmp_path / "store"
    spin = program(tmp_path, "(defn spin [n] (spin (inc n))) (spin 0)\n", "spin.fm")
    r = fm(store, "run", "--fuel", "5_000", spin)
    assert r.returncode == 1
    assert r.stderr.startswith("error: fuel of 5000 reductions used up (:limit-error)\n")
    deep = program(tmp_path, "(defn f [n] (+ 1 (f n))) (f 0)\n", "deep.fm")
    r = fm(store, "run", "--depth", "500", deep)
    assert r.returncode == 1 and "continuation deeper than 500 frames" in r.stderr
    r = fm(store, "run", "--deadline", "300ms", program(tmp_path, "(sleep 30)\n", "s.fm"))
    assert r.returncode == 1 and "task deadline of 0.3 s passed" in r.stderr
    r = fm(store, "run", "--wait", "0.2s", program(tmp_path, "(receive)\n", "r.fm"))
    assert r.returncode == 1 and "receive timed out after 0.2 s" in r.stderr
    task = start(store, "--fuel", "100", "--depth", "1000", "--state", "1M",
                 "--deadline", "1d", spin)
    assert show(store, task)["limits"] == {
        "fuel_reductions": 100, "depth_frames": 1000, "state_bytes": 1 << 20,
        "deadline_seconds": 86400.0, "wait_seconds": 86400.0,
        "response_body_bytes": 1 << 20}
    for args, message in [(["--wait", "soon"], "--wait: expected a duration such as 30s"),
                          (["--fuel", "-3"], "--fuel: expected a positive whole number"),
                          (["--state", "big"], "--state: expected a size such as 1000"),
                          (["--depth"], "--depth needs a value")]:
        r = fm(store, "start", *args, *([spin] if len(args) == 2 else []))
        assert r.returncode == 2 and r.stderr.startswith(f"flowmetal: {message}"), r.stderr


def test_until_idle_returns_when_only_waiting_and_blocked_tasks_remain(tmp_path):
    store = tmp_path / "store"
    receiver = start(store, program(tmp_path, "(receive)\n", "receiver.fm"))
    joiner = start(store, program(tmp_path, "(join (spawn (fn [] (receive))))\n", "j.fm"))
    sleeper = start(store, program(tmp_path, "(sleep 0.3) :slept\n", "sleeper.fm"))
    timed = start(store, program(tmp_path, "(try (receive :timeout 0.3) (catch :timeout e "
                                 ":timed-out))\n", "timed.fm"))
    began = time.monotonic()
    r = fm(store, "worker", "--until-idle", "--quiet")
    assert r.returncode == 0 and time.monotonic() - began < 20
    assert show(store, sleeper)["result"] == ":slept"  # its sleep was waited out
    assert show(store, timed)["result"] == ":timed-out"  # and so was a given :timeout
    assert show(store, receiver)["status"] == "waiting"
    assert show(store, joiner)["status"] == "waiting"


# --- store paths that are no stores ------------------------------------------------------


def test_a_store_path_that_is_a_file_is_refused_clearly(tmp_path):
    name = program(tmp_path, "(+ 1 2)\n")
    (tmp_path / "afile").write_text("not a store")
    for args in (["run", name], ["start", name], ["tasks"], ["worker", "--until-idle"],
                 ["show", "abc"]):
        r = fm(tmp_path / "afile", *args)
        assert (r.returncode, r.stderr) == (
            2, f"flowmetal: the store path {tmp_path / 'afile'} is a file, not a store "
               "directory\n"), args
    r = fm_in(tmp_path, tmp_path / "afile" / "inside", "run", name)
    assert (r.returncode, r.stderr) == (
        2, f"flowmetal: cannot create the store at {tmp_path / 'afile' / 'inside'}: "
           f"{tmp_path / 'afile'} is a file\n")


def test_reading_commands_never_make_a_directory_a_store(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    for args in (["tasks"], ["show", "abc"], ["log", "abc"], ["output", "abc"],
                 ["rm", "abc"], ["prune", "--done"], ["attach", "abc"]):
        r = fm(plain, *args)
        assert (r.returncode, r.stderr) == (2, f"flowmetal: no store at {plain}\n"), args
    assert sorted(os.listdir(plain)) == ["notes.txt"]


@contextlib.contextmanager
def read_only(path: Path):
    """Make ``path`` read-only for the flowmetal processes the tests start: by its
    permissions, or (for root, whom permissions do not stop) a read-only bind mount."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a read-only store with")
    r = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {r.stderr.decode().strip()}")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


def test_a_read_only_store_can_be_read_but_not_written(tmp_path):
    store = tmp_path / "store"
    name = program(tmp_path, '(println "hi") (receive)\n')
    task = start(store, name)
    with read_only(store):
        table = ok(fm(store, "tasks"))
        assert task in table
        assert show(store, task)["status"] == "runnable"
        assert ok(fm(store, "log", task[:6])).startswith("SEQ")
        for args in (["run", name], ["start", name], ["worker", "--until-idle"],
                     ["send", task, "1"], ["cancel", task]):
            r = fm(store, *args)
            assert r.returncode == 2, (args, r.stderr)
            assert r.stderr.startswith(f"flowmetal: the store at {store} cannot be written ("), \
                (args, r.stderr)
            assert "commands that only read (tasks, show, log, output) still work" in r.stderr
        r = fm_in(tmp_path, store / "new", "run", name)
        assert r.returncode == 2 and "internal error" not in r.stderr, r.stderr
        assert r.stderr.startswith(f"flowmetal: cannot create the store at {store / 'new'}: ")


# --- task ids --------------------------------------------------------------------------------


def test_every_command_takes_a_unique_prefix_or_suffix_of_an_id(tmp_path):
    store = tmp_path / "store"
    name = program(tmp_path, '(println "got" (receive)) :done\n')
    a, b = start(store, name), start(store, name)
    common = os.path.commonprefix([a, b])
    prefix = a[:len(common) + 1]
    suffix = b[-4:] if a[-4:] != b[-4:] else b[-8:]
    ok(fm(store, "worker", "--until-idle", "--quiet"))
    assert show(store, prefix)["id"] == a
    assert show(store, suffix)["id"] == b
    assert ok(fm(store, "log", prefix)).startswith("SEQ")
    r = fm(store, "send", prefix, '"hello"')
    assert (r.returncode, r.stdout) == (
        0, f"message 1 sent to task {a}: it wakes the receive waiting for it\n")
    r = fm(store, "resume", prefix)
    assert (r.returncode, r.stdout) == (0, "got hello\n")
    assert ok(fm(store, "output", prefix)) == "got hello\n"
    assert json.loads(ok(fm(store, "upgrade", "--dry-run", "--json", suffix)))["ok"]
    assert fm(store, "upgrade", "--dry-run", "nosuchtask").returncode == 2
    r = fm(store, "cancel", suffix)
    assert (r.returncode, r.stdout) == (
        0, f"task {b} cancelled: its wait raised {{:type :cancelled}} (it ends cancelled "
           "unless it catches that)\n")
    assert ok(fm(store, "tasks", "--parent", prefix)) == f"no tasks in {store}\n"
    r = fm(store, "show", common)
    assert r.returncode == 2
    assert r.stderr == (f"flowmetal: {common} names more than one task ({a}, {b}): give "
                        "more of the id\n")
    r = fm(store, "show", "zzz")
    assert (r.returncode, r.stderr) == (2, "flowmetal: no task zzz\n")
    r = fm(store, "rm", suffix, prefix)
    assert (r.returncode, r.stderr) == (
        2, f"flowmetal: cannot remove task {b}: it is runnable (cancel it first)\n")
    ok(fm(store, "worker", "--until-idle", "--quiet"))
    r = fm(store, "rm", suffix, prefix)
    assert r.stdout == f"removed task {b} (prog.fm, cancelled)\nremoved task {a} (prog.fm, done)\n"
    assert tasks(store) == []


def test_cancel_of_a_runnable_task_and_send_to_a_busy_one_say_so(tmp_path):
    store = tmp_path / "store"
    task = start(store, program(tmp_path, "(receive)\n"))
    r = fm(store, "send", task, "[:early]")
    assert (r.returncode, r.stdout) == (
        0, f"message 1 queued in the inbox of task {task} (runnable)\n")
    r = fm(store, "cancel", task)
    assert (r.returncode, r.stdout) == (
        0, f"task {task} asked to cancel: {{:type :cancelled}} is raised at its next step "
           "(it ends cancelled unless it catches that)\n")
    worker = fm(store, "worker", "--until-idle")
    assert f"[{task}] prog.fm cancelled: task {task} was cancelled (:cancelled)" in \
        worker.stdout


# --- rm and prune ---------------------------------------------------------------------------


def test_rm_and_prune_delete_finished_tasks_only(tmp_path):
    store = tmp_path / "store"
    done = start(store, program(tmp_path, ':ok\n', "ok.fm"))
    failed = start(store, program(tmp_path, '(error "no")\n', "no.fm"))
    waiting = start(store, program(tmp_path, "(receive)\n", "w.fm"))
    ok(fm(store, "worker", "--until-idle", "--quiet"))
    r = fm(store, "rm", waiting)
    assert (r.returncode, r.stderr) == (
        2, f"flowmetal: cannot remove task {waiting}: it is waiting (cancel it first)\n")
    r = fm(store, "prune", "--older-than", "1h")
    assert r.returncode == 2 and "say which tasks: --done, --failed" in r.stderr
    r = fm(store, "prune", "--done", "--older-than", "soon")
    assert r.returncode == 2 and "--older-than: expected a duration" in r.stderr
    assert ok(fm(store, "prune", "--done", "--older-than", "7d")) == \
        "removed 0 done tasks that ended more than 7d ago\n"
    assert ok(fm(store, "prune", "--done", "--older-than", "0s")) == \
        "removed 1 done tasks that ended more than 0s ago\n"
    assert sorted(t["id"] for t in tasks(store)) == sorted([failed, waiting])
    r = fm(store, "log", done)
    assert (r.returncode, r.stderr) == (2, f"flowmetal: no task {done}\n")
    assert ok(fm(store, "prune", "--finished")).startswith("removed 1 done or failed or ")
    assert [t["id"] for t in tasks(store)] == [waiting]


# --- mistakes and internal errors ------------------------------------------------------------


def test_a_mistyped_command_suggests_the_command(tmp_path):
    store = tmp_path / "store"
    r = fm(store, "taks")
    assert r.returncode == 2
    assert r.stderr.startswith("flowmetal: unknown command taks (did you mean tasks?); "
                               "flowmetal --help lists the commands\n")
    r = fm(store, "frobnicate")
    assert r.returncode == 2 and "unknown command frobnicate;" in r.stderr
    assert "did you mean" not in r.stderr
    r = fm(store, "missing.fm")
    assert (r.returncode, r.stderr) == (
        2, "flowmetal: cannot read missing.fm: No such file or directory\n")
    (tmp_path / "taks").write_text('(println "a file named taks")\n')
    assert ok(fm(store, "taks")) == "a file named taks\n"


def test_an_internal_error_exits_with_its_own_documented_status(monkeypatch, capsys):
    def broken(args, store_path):
        raise ZeroDivisionError("a bug")

    monkeypatch.setitem(cli.COMMANDS, "tasks", broken)
    assert cli.main(["tasks"]) == cli.EXIT_INTERNAL == 70
    assert capsys.readouterr().err == "internal error: ZeroDivisionError: a bug\n"
    assert "  70   an internal error of Flowmetal itself" in cli.HELP


def test_the_help_lists_every_command():
    commands = cli.HELP.split("Commands:\n", 1)[1].split("\n\n", 1)[0]
    listed = {line.split()[0] for line in commands.splitlines() if line[2:3].isalpha()}
    assert listed >= set(cli.COMMANDS), set(cli.COMMANDS) - listed


# --- JSON ------------------------------------------------------------------------------------


def test_json_output_is_structured_and_names_its_units(tmp_path):
    store = tmp_path / "store"
    task = start(store, program(tmp_path, "(join (spawn (fn [] (receive :timeout nil))))\n"))
    ok(fm(store, "worker", "--until-idle", "--quiet"))
    rows = tasks(store)
    parent = next(r for r in rows if r["id"] == task)
    kid = next(r for r in rows if r["id"] != task)
    assert "state" not in parent and parent["status"] == "waiting"
    assert parent["running"] is False and parent["blocked"] is None
    assert parent["waiting"] == {"op": "join", "until": parent["waiting"]["until"],
                                 "task": kid["id"], "default_wait": True}
    assert kid["waiting"] == {"op": "receive", "until": None, "task": None,
                              "default_wait": False}
    assert parent["age_seconds"] >= 0
    d = show(store, task)
    assert set(d["limits"]) == {"fuel_reductions", "depth_frames", "state_bytes",
                                "deadline_seconds", "wait_seconds", "response_body_bytes"}
    assert "state" not in d and "age" not in d


# --- bytes that are not UTF-8 ----------------------------------------------------------------


def run_bytes(tmp_path: Path, *args: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([os.fsencode(script_path()), *args], env=env(), cwd=tmp_path,
                          capture_output=True, timeout=TIMEOUT)


def test_arguments_and_files_that_are_not_utf8_give_clean_errors(tmp_path):
    r = run_bytes(tmp_path, b"-e", b"\xff")
    assert (r.returncode, r.stderr) == (
        2, b"flowmetal: the expression is not UTF-8 text: byte 0xff at 1:1\n"
           b"usage: flowmetal [--store DIR] FILE.fm [ARGS...]\n"
           b"       flowmetal [--store DIR] COMMAND [OPTIONS...]\n"
           b"       flowmetal [--store DIR] [repl]\n"
           b"       flowmetal -e EXPR [ARGS...]\n"
           b"       flowmetal --help | --version\n")
    r = run_bytes(tmp_path, b"-e", b'(str "ok")\n(+ 1 "\xc3\xa9\xfe")')
    assert r.returncode == 2
    assert r.stderr.startswith(b"flowmetal: the expression is not UTF-8 text: byte 0xfe "
                               b"at 2:8\n")
    r = run_bytes(tmp_path, b"-e", b"*command-line-args*", b"ok", b"b\xffd")
    assert r.returncode == 2
    assert r.stderr.startswith(b"flowmetal: argument 2 of the program is not UTF-8 text: "
                               b"byte 0xff at 1:2\n")
    assert b"internal error" not in r.stderr
    (tmp_path / "bad.fm").write_bytes(b'(println "fine")\n(println "caf\xc3\xa9 \xff")\n')
    r = run_bytes(tmp_path, b"--store", b"s", b"bad.fm")
    assert (r.returncode, r.stderr) == (2, b"bad.fm:2:16: not UTF-8 text (byte 0xff)\n")
    r = run_bytes(tmp_path, b"--store", b"s", b"start", b"bad.fm")
    assert (r.returncode, r.stderr) == (2, b"bad.fm:2:16: not UTF-8 text (byte 0xff)\n")


def test_an_uncaught_error_shows_its_huge_data_cut_short(tmp_path):
    r = fm(tmp_path / "store", "-e", '(throw (ex-info "big" {:xs (vec (range 200000))}))')
    assert r.returncode == 1
    assert r.stderr.startswith("error: big (:error)\n  data: {:xs [0 1 2 3")
    assert len(r.stderr) < 4000  # the data is 1.3 MB printed whole
