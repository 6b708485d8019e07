"""Code that survives upgrades, through the real command line: a waiting task outlives a
change of an installed Flowmetal's standard library; ``flowmetal upgrade`` moves a task
onto new code only when its continuation maps, and changes nothing otherwise; a task
whose code a worker cannot load waits, blocked, instead of failing."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cbor2
import pytest

from flowmetal.store import open_store

from .test_wheel import build_wheel

TIMEOUT = 60


def env() -> dict:
    out = dict(os.environ)
    out.pop("FLOWMETAL_HOME", None)
    out.pop("PYTHONPATH", None)
    return out


def fm(store: Path, *args: str, python: str = sys.executable, timeout: float = TIMEOUT
       ) -> subprocess.CompletedProcess:
    """``PYTHON -m flowmetal --store STORE ARGS``, run beside the store."""
    return subprocess.run([python, "-m", "flowmetal", "--store", str(store), *args],
                          env=env(), cwd=store.parent, capture_output=True, text=True,
                          timeout=timeout)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def program(where: Path, name: str, source: str) -> str:
    (where / name).write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return name


def detail(store: Path, task_id: str, python: str = sys.executable) -> dict:
    return json.loads(ok(fm(store, "show", task_id, "--json", python=python)))


def wait_for(test, seconds: float = 15, what: str = "the condition"):
    deadline = time.monotonic() + seconds
    while True:
        value = test()
        if value:
            return value
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


@contextlib.contextmanager
def worker(store: Path, python: str = sys.executable):
    """A ``flowmetal worker`` process, stopped with SIGTERM (it exits 0) on leaving."""
    p = subprocess.Popen([python, "-m", "flowmetal", "--store", str(store), "worker",
                          "--quiet"],
                         env=env(), cwd=store.parent, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        yield p
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=TIMEOUT)
        assert (p.returncode, out) == (0, ""), (p.returncode, out, err)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()


def run_until_waiting(store: Path, task_ids: list[str], python: str = sys.executable) -> None:
    """Run a worker process until every task waits (a timer is armed, so a worker with
    --until-idle would not stop)."""
    with worker(store, python):
        for task_id in task_ids:
            wait_for(lambda t=task_id: detail(store, t, python)["status"] == "waiting",
                     what=f"task {task_id} to wait")


def raw(store: Path, task_id: str) -> tuple[bytes, bytes]:
    """The task's record and continuation as stored."""
    with open_store(str(store)).backend.read() as t:
        return t.get_task(task_id), t.get_cont(task_id)


# -- 1. a real installed copy whose standard library changes -----------------------------


def installed_copy(tmp_path: Path) -> Path:
    """A venv whose flowmetal is a wheel built from this checkout (its dependencies come
    from this Python's site-packages); its python."""
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True, capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    return python


STDLIB_HASH = "from flowmetal.interpreter import base; print(base().hash)"


@pytest.mark.slow
def test_a_waiting_task_survives_a_change_of_the_installed_standard_library(tmp_path):
    python = str(installed_copy(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run([python, "-c", "import flowmetal; print(flowmetal.__file__)"],
                           env=env(), cwd=work, capture_output=True, text=True, timeout=60)
    installed = Path(ok(where).strip()).parent
    assert installed.is_relative_to(tmp_path / "venv"), installed  # not the checkout
    store = work / "store"

    def run(*args: str) -> str:
        return ok(fm(store, *args, python=python))

    def stdlib_hash() -> str:
        return ok(subprocess.run([python, "-c", STDLIB_HASH], env=env(), cwd=work,
                                 capture_output=True, text=True, timeout=60)).strip()

    program(work, "wait.fm", '(println "got" (receive :timeout 600))')
    task_id = run("start", "wait.fm").strip()
    run_until_waiting(store, [task_id], python)
    before = stdlib_hash()

    with open(installed / "stdlib" / "seq.fm", "a", encoding="utf-8") as f:
        f.write(";; a comment added by an upgrade of Flowmetal\n")
    assert stdlib_hash() != before  # the installed standard library is another one now

    run("send", task_id, '"hello"')
    r = fm(store, "worker", "--until-idle", python=python)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert detail(store, task_id, python)["status"] == "done"
    assert run("resume", task_id) == "got hello\n"  # the output it printed

    # A task started by the changed install, on the new standard library, runs too.
    program(work, "after.fm", """
        (println "sum" (reduce + (map inc [1 2 3])))
        (println "got" (receive :timeout 600))
        """)
    new_id = run("start", "after.fm").strip()
    run_until_waiting(store, [new_id], python)
    run("send", new_id, '"again"')
    r = fm(store, "worker", "--until-idle", python=python)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert run("resume", new_id) == "sum 9\ngot again\n"
    assert detail(store, new_id, python)["status"] == "done"


# -- 2. flowmetal upgrade -----------------------------------------------------------------

OFF_STACK = """
    (defn greet [x] (str "{word} " x))
    (def m (receive :timeout 600))
    (println (greet m))
    """
ON_STACK = """
    (defn ask []
      (let [m (receive :timeout 600)]
        (str "{word} " m)))
    (println (ask))
    """


def test_upgrade_moves_a_task_when_its_stack_maps_and_refuses_otherwise(tmp_path):
    store = tmp_path / "store"
    for name, source in (("greet", OFF_STACK), ("ask", ON_STACK)):
        for version, word in (("1", "old"), ("2", "new")):
            program(tmp_path, f"{name}{version}.fm", source.format(word=word))
    moving = ok(fm(store, "start", "greet1.fm")).strip()
    staying = ok(fm(store, "start", "ask1.fm")).strip()
    run_until_waiting(store, [moving, staying])
    stored = raw(store, moving)

    # --dry-run: the report, and nothing changes.
    r = fm(store, "upgrade", moving, "--to", "greet2.fm", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("upgrade possible")
    assert "global greet: takes the new definition (greet2.fm:1:1)" in r.stdout
    assert "moved" not in r.stdout
    assert raw(store, moving) == stored
    log_before = ok(fm(store, "log", moving, "--json"))

    r = fm(store, "upgrade", moving, "--to", "greet2.fm")
    assert r.returncode == 0, r.stderr
    assert f"task {moving} moved onto the new code" in r.stdout
    assert raw(store, moving) != stored
    assert json.loads(ok(fm(store, "log", moving, "--json")))[-1]["kind"] == "upgraded"
    assert log_before != ok(fm(store, "log", moving, "--json"))

    # Waiting inside the changed function: refused, naming the frame; nothing changes.
    stored = raw(store, staying)
    for extra in (["--dry-run"], []):
        r = fm(store, "upgrade", staying, "--to", "ask2.fm", *extra)
        assert r.returncode == 1, (extra, r.returncode, r.stderr)
        assert r.stdout.startswith("upgrade refused"), r.stdout
        assert re.search(r"frame in ask \(ask1\.fm:2:\d+\): definition ask changed",
                         r.stdout), r.stdout
        assert "moved onto" not in r.stdout
        assert raw(store, staying) == stored

    for task_id in (moving, staying):
        ok(fm(store, "send", task_id, '"hello"'))
    ok(fm(store, "worker", "--until-idle"))
    assert ok(fm(store, "resume", moving)) == "new hello\n"   # the new function
    assert ok(fm(store, "resume", staying)) == "old hello\n"  # still the old code
    assert detail(store, moving)["status"] == detail(store, staying)["status"] == "done"


# -- 3. code a worker cannot load ----------------------------------------------------------


def test_a_task_whose_code_is_missing_is_blocked_not_failed(tmp_path):
    store = tmp_path / "store"
    program(tmp_path, "now.fm", '(println "hi" (reduce + (range 10))) :finished')
    program(tmp_path, "later.fm", '(println "got" (receive :timeout 600)) :answered')
    later = ok(fm(store, "start", "later.fm")).strip()
    run_until_waiting(store, [later])
    now = ok(fm(store, "start", "now.fm")).strip()

    # Take both programs out of the program store (LMDB has no delete in the protocol).
    s = open_store(str(store))
    missing = {}
    for task_id in (now, later):
        digest = s.get(task_id).program
        with s.view() as view:
            missing[digest] = view.program(digest)
        assert missing[digest] is not None
        with s.backend.write() as t:
            t.txn.delete(digest.encode(), db=t.dbs["programs"])
    ok(fm(store, "send", later, '"hello"'))  # answered while its code is missing

    with worker(store):
        rows = wait_for(lambda: all(r["blocked"] and not r["running"]
                                    for r in rows_of(store)) and
                        rows_of(store), what="both tasks to be blocked")
    for row in rows:
        assert row["status"] == "runnable"
        assert row["blocked"].startswith("program ") and \
            "is not in the program store" in row["blocked"], row
    table = ok(fm(store, "tasks"))
    for task_id in (now, later):
        line = next(line for line in table.splitlines() if line.startswith(task_id))
        assert line.split()[2] == "blocked" and "not in the program store" in line, line
    text = ok(fm(store, "show", later))
    assert "status      blocked: code: program" in text, text
    assert detail(store, later)["error"] is None

    s.put_programs(cbor2.loads(cbor2.dumps(missing)))
    r = fm(store, "worker", "--until-idle")
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert detail(store, now)["result"] == ":finished"
    assert detail(store, later)["result"] == ":answered"
    assert ok(fm(store, "resume", now)) == "hi 45\n"
    assert ok(fm(store, "resume", later)) == "got hello\n"  # its answer was kept


def rows_of(store: Path) -> list[dict]:
    return json.loads(ok(fm(store, "tasks", "--json")))
