"""Analysis-time errors as a user meets them on the command line: defmacro where it is
not allowed, runaway macro expansion, recur outside a tail position.  Each is a syntax
error naming the form's position, never an internal error, and never a hang."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowmetal.analyzer import CompileEnv
from flowmetal.interpreter import Session
from flowmetal.values import SyntaxError_, Vector

TIMEOUT = 60


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``python -m flowmetal ARGS`` with its store in ``cwd``."""
    env = dict(os.environ, FLOWMETAL_HOME=str(cwd / "store"))
    return subprocess.run([sys.executable, "-m", "flowmetal", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT)


@pytest.mark.parametrize(("source", "where"), [
    ("(try (do (defmacro m []) 1))", "<expr>:1:10"),
    ("(if true (defmacro m []) 2)", "<expr>:1:10"),
    ("(try (defmacro m []))", "<expr>:1:6"),
    ("(do 1 (try (defmacro m [] 1) (catch e e)))", "<expr>:1:12"),
    ("(let [x 1] (defmacro m []))", "<expr>:1:12"),
])
def test_defmacro_inside_a_form_is_a_syntax_error(tmp_path, source, where):
    r = run("-e", source, cwd=tmp_path)
    assert r.returncode == 2, r
    assert f"{where}: defmacro is allowed only at the top level" in r.stderr
    assert "internal error" not in r.stderr + r.stdout


def test_defmacro_in_a_top_level_do_still_defines_the_macro(tmp_path):
    r = run("-e", "(do (defmacro two [] 2)) (two)", cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, "2"), r


def test_runaway_macro_expansion_stops_with_its_position(tmp_path):
    r = run("-e", "(defmacro m [] (loop [] (recur))) (m)", cwd=tmp_path)
    assert r.returncode == 2, r
    assert "<expr>:1:35: in macro m: the expansion did not finish within" in r.stderr
    assert "internal error" not in r.stderr


def test_runaway_macro_expansion_stops_start(tmp_path):
    path = tmp_path / "spin.fm"
    path.write_text("(defmacro m []\n  (loop [] (recur)))\n(println (m))\n", encoding="utf-8")
    r = run("start", str(path), cwd=tmp_path)
    assert r.returncode == 2, r
    assert "spin.fm:3:10: in macro m: the expansion did not finish within" in r.stderr


def test_a_macro_cannot_wait(tmp_path):
    r = run("-e", "(defmacro m [] (sleep 1)) (m)", cwd=tmp_path)
    assert r.returncode == 2, r
    assert "<expr>:1:27: in macro m: a macro cannot wait" in r.stderr


def test_macro_fuel_is_per_expansion():
    session = Session()
    session.cenv.fuel = 1_000
    session.eval_string("(defmacro small [] (loop [i 0] (if (< i 10) (recur (inc i)) i)))")
    assert session.eval_string("[(small) (small) (small)]") == Vector((10, 10, 10))
    session.eval_string("(defmacro big [] (loop [i 0] (if (< i 10000) (recur (inc i)) i)))")
    with pytest.raises(SyntaxError_, match="did not finish within 1,000 reductions"):
        session.eval_string("(big)")
    assert CompileEnv({}).fuel > 100_000


@pytest.mark.parametrize(("source", "where", "text"), [
    ("(loop [i 0] (+ 1 (recur i)))", "<expr>:1:18", "recur can only be in tail position"),
    ("(defn f [n]\n  (inc (recur n)))", "<expr>:2:8", "recur can only be in tail position"),
    ("(loop [i 0] (recur))", "<expr>:1:13", "recur needs 1 argument here"),
    ("(recur 1)", "<expr>:1:1", "recur needs an enclosing loop or fn"),
])
def test_recur_errors_are_found_before_running(tmp_path, source, where, text):
    r = run("-e", source, cwd=tmp_path)
    assert r.returncode == 2, r
    assert f"{where}: {text}" in r.stderr


def test_recur_in_a_fn_runs_from_the_command_line(tmp_path):
    r = run("-e", "((fn [n] (if (zero? n) :done (recur (dec n)))) 5)", cwd=tmp_path)
    assert (r.returncode, r.stdout.strip()) == (0, ":done"), r
