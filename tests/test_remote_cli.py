"""The command line driving a remote Flowmetal through its control plane (``--server
URL`` or ``$FLOWMETAL_SERVER``, with ``$FLOWMETAL_TOKEN``): the same commands, the same
output, the store behind a real server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flowmetal.store import open_store

from .served import Served, WorkerProcess

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def remote(tmp_path):
    """(environment for the CLI, the store behind the server)."""
    store = open_store(str(tmp_path / "store"))
    served = Served(store).start()
    token, _ = store.token_create("cli", "write")
    worker = WorkerProcess(store.location)
    env = {k: v for k, v in os.environ.items() if k != "FLOWMETAL_HOME"}
    env.update(FLOWMETAL_SERVER=served.url(), FLOWMETAL_TOKEN=token)
    yield env, store, served
    worker.stop()
    served.stop()


def fm(env: dict, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowmetal", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args, r.stdout, r.stderr)
    return r.stdout


def until(check, seconds: float = 30) -> None:
    end = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < end, "it did not happen in time"
        time.sleep(0.05)


def test_start_tasks_show_send_log_output_through_the_server(remote, tmp_path):
    env, store, _ = remote
    program = tmp_path / "greet.fm"
    program.write_text('(println "hello" (first *command-line-args*))\n(receive)\n')
    task = ok(fm(env, "start", str(program), "remote")).strip()
    assert store.get(task).name == "greet.fm"  # it is in the server's store
    until(lambda: store.get(task).status == "waiting")
    rows = json.loads(ok(fm(env, "tasks", "--json")))
    assert [(r["id"], r["status"]) for r in rows] == [(task, "waiting")]
    shown = ok(fm(env, "show", task[:8]))
    assert "receive" in shown and "greet.fm" in shown
    # (the worker may take it before send looks: "sent" or "queued", both say message 1)
    assert "message 1 " in ok(fm(env, "send", task, "[:done 1]"))
    until(lambda: store.get(task).status == "done")
    log = ok(fm(env, "log", task))
    assert "created" in log and "message" in log and "done" in log
    assert ok(fm(env, "output", task)) == "hello remote\n"


def test_the_server_option_names_the_server_and_cancel_works(remote, tmp_path):
    env, store, served = remote
    env = {k: v for k, v in env.items() if k != "FLOWMETAL_SERVER"}
    program = tmp_path / "wait.fm"
    program.write_text("(receive)\n")
    task = ok(fm(env, "--server", served.url(), "start", str(program))).strip()
    until(lambda: store.get(task).status == "waiting")
    assert "cancelled" in ok(fm(env, "--server", served.url(), "cancel", task))
    until(lambda: store.get(task).status == "cancelled")


def test_deploy_through_the_server_then_spawn_by_name(remote, tmp_path):
    env, store, _ = remote
    (tmp_path / "double.fm").write_text("(* 2 (count *command-line-args*))\n")
    ok(fm(env, "deploy", str(tmp_path / "double.fm"), "double"))
    (tmp_path / "main.fm").write_text('(join (spawn "double" "a" "b" "c"))\n')
    task = ok(fm(env, "start", str(tmp_path / "main.fm"))).strip()
    until(lambda: store.get(task).finished)
    assert json.loads(ok(fm(env, "show", task, "--json")))["result"] == "6"


def test_what_needs_the_store_itself_says_so_and_does_nothing(remote, tmp_path):
    env, store, served = remote
    program = tmp_path / "hello.fm"
    program.write_text('(println "hello")\n')
    for args in (["worker", "--until-idle"], ["run", str(program)], [str(program)],
                 ["resume", "0123"], ["prune", "--done"]):
        r = fm(env, *args)
        command = "run" if args[0] == str(program) else args[0]
        assert r.returncode == 2, (args, r.stderr)
        assert f"flowmetal {command} needs the store itself, not the server at " \
               f"{served.url()}" in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    with store.view() as view:
        assert list(view.tasks()) == []  # run started no task before it refused
    r = fm(env, "store", "init", cwd=tmp_path)
    assert r.returncode == 2 and "flowmetal store init needs the store itself" in r.stderr
    assert not (tmp_path / ".flowmetal").exists()


def test_a_missing_or_wrong_token_is_a_clear_error(remote):
    env, _, _ = remote
    r = fm({**env, "FLOWMETAL_TOKEN": "fm_wrong"}, "tasks")
    assert r.returncode == 2 and "refused the token" in r.stderr
    r = fm({k: v for k, v in env.items() if k != "FLOWMETAL_TOKEN"}, "tasks")
    assert r.returncode == 2 and "FLOWMETAL_TOKEN" in r.stderr
    wrong = env["FLOWMETAL_SERVER"] + "/nonsense"
    r = fm({**env, "FLOWMETAL_SERVER": wrong}, "tasks")
    assert r.returncode == 2 and f"no Flowmetal control plane answers at {wrong}" in r.stderr
    r = fm(env, "show", "0123")
    assert r.returncode == 2 and "no task" in r.stderr  # (a 404 of the store's own)


def test_store_operations_refuse_what_does_not_fit_with_400(remote, tmp_path):
    import cbor2
    import requests

    env, store, served = remote
    task = ok(fm(env, "start", str(write(tmp_path, "(receive)")))).strip()
    until(lambda: store.get(task).status == "waiting")
    headers = {"Authorization": f"Bearer {env['FLOWMETAL_TOKEN']}",
               "Content-Type": "application/cbor"}

    def call(op: str, **args) -> requests.Response:
        return requests.post(f"{served.url()}/api/v1/store/{op}", data=cbor2.dumps(args),
                             headers=headers, timeout=30)

    with store.view() as view:
        real = view.program(store.get(task).program)  # a record under another hash:
    for op, args in [("send", {"task": task, "message": b"garbage"}),
                     ("start", {}), ("outbox", {"task": 5}),
                     ("output", {"task": task, "after": 2 ** 70}),
                     ("put_programs", {"programs": {"abc": b"x"}}),
                     ("put_programs", {"programs": {"0" * 64: real}})]:
        r = call(op, **args)
        assert r.status_code == 400, (op, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/problem+json")
    assert store.get(task).status == "waiting"  # the junk message never reached it


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "program.fm"
    path.write_text(source + "\n")
    return path
