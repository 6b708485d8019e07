"""``spawn`` by name through the real command line: a file beside the parent (found in the
program store, not on the worker's disk), a file with a ``#!`` line, and a deployed name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from flowmetal.reader import read_one
from flowmetal.values import kw

TIMEOUT = 60


def env() -> dict:
    out = dict(os.environ)
    out.pop("FLOWMETAL_HOME", None)
    return out


def fm(store: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowmetal", "--store", str(store), *args],
                          env=env(), cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.args, r.returncode, r.stdout, r.stderr)
    return r.stdout


def program(where: Path, name: str, source: str) -> Path:
    path = where / name
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def tasks(store: Path, cwd: Path) -> dict[str, dict]:
    """The store's tasks by name."""
    return {row["name"]: row for row in json.loads(ok(fm(store, "tasks", "--all", "--json",
                                                          cwd=cwd)))}


def result(store: Path, task_id: str, cwd: Path) -> str:
    detail = json.loads(ok(fm(store, "show", task_id, "--json", cwd=cwd)))
    assert detail["status"] == "done", detail
    return detail["result"]


def test_spawned_files_come_from_the_program_store(tmp_path):
    app, elsewhere = tmp_path / "app", tmp_path / "elsewhere"
    app.mkdir()
    elsewhere.mkdir()
    store = tmp_path / "store"
    program(app, "parent.fm", """
        (def c (spawn "child.fm" "x" "y"))
        (def s (spawn "script.fm" "z"))
        (println "parent has" (join c) (join s))
        :parent-done
        """)
    child = program(app, "child.fm", """
        (println "child" *file* *command-line-args*)
        [*file* *command-line-args*]
        """)
    script = program(app, "script.fm", """
        #!/usr/bin/env flowmetal
        (println "script" *command-line-args*)
        [:script (first *command-line-args*)]
        """)
    assert script.read_text().startswith("#!/usr/bin/env flowmetal\n")
    parent_id = ok(fm(store, "start", "parent.fm", cwd=app)).strip()
    child.unlink()  # the worker must not need the files
    script.unlink()

    r = fm(store, "worker", "--until-idle", cwd=elsewhere)
    assert (r.returncode, r.stderr) == (0, "")
    assert "parent.fm done: :parent-done" in r.stdout  # the worker shows what they print
    assert list(elsewhere.iterdir()) == []
    by_name = tasks(store, elsewhere)
    assert set(by_name) == {"parent.fm", "child.fm", "script.fm"}
    want_child = f'["{app / "child.fm"}" ["x" "y"]]'
    assert result(store, by_name["child.fm"]["id"], elsewhere) == want_child
    assert result(store, by_name["script.fm"]["id"], elsewhere) == '[:script "z"]'
    assert result(store, parent_id, elsewhere) == ":parent-done"
    assert by_name["child.fm"]["parent"] == by_name["script.fm"]["parent"] == parent_id
    assert ok(fm(store, "resume", parent_id, cwd=elsewhere)) == (
        f'parent has {want_child} [:script "z"]\n'
        f'child {app / "child.fm"} ["x" "y"]\n'
        'script ["z"]\n')


def test_a_deployed_name_spawns_and_an_unknown_one_is_a_catchable_error(tmp_path):
    store = tmp_path / "store"
    greeter = program(tmp_path, "worker.fm", """
        (println "greeter got" *command-line-args*)
        (str "hello " (first *command-line-args*))
        """)
    digest = ok(fm(store, "deploy", "worker.fm", "greeter", cwd=tmp_path)).strip()
    assert len(digest) == 64
    greeter.unlink()
    program(tmp_path, "main.fm", """
        (def greeting (join (spawn "greeter" 1)))
        (def problem (try (spawn "no-such-program" 2)
                          (catch :spawn-error e [(:type e) (:message e)])))
        [greeting problem]
        """)
    task_id = ok(fm(store, "start", "main.fm", cwd=tmp_path)).strip()
    r = fm(store, "worker", "--until-idle", cwd=tmp_path)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    greeting, (kind, message) = read_one(result(store, task_id, tmp_path), "<result>")
    assert greeting == "hello 1"
    assert kind == kw("spawn-error")
    assert "'no-such-program'" in message, message
    by_name = tasks(store, tmp_path)
    assert set(by_name) == {"main.fm", "greeter"}
    assert by_name["greeter"]["program"] == digest
    assert ok(fm(store, "resume", by_name["greeter"]["id"], cwd=tmp_path)) == \
        'greeter got ["1"]\n'
