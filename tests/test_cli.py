"""The ``flowmetal`` command, run as a real process."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

import flowmetal
from flowmetal import cli
from flowmetal.report import format_error
from flowmetal.source import strip_shebang
from flowmetal.values import Map, Vector, kw

from .cli_helpers import readable

TIMEOUT = 30


@pytest.fixture(autouse=True)
def store_in_tmp(tmp_path, monkeypatch):
    """Scripts run as tasks in a store: keep it in the test's directory."""
    monkeypatch.setenv("FLOWMETAL_HOME", str(tmp_path / "store"))


def flowmetal_cmd(*args: str, cwd: Path | None = None, stdin: str = "",
                  env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m flowmetal ARGS`` and capture its output."""
    return subprocess.run([sys.executable, "-m", "flowmetal", *args], cwd=cwd, env=env,
                          input=stdin, capture_output=True, text=True, timeout=TIMEOUT)


def script(tmp_path: Path, source: str, name: str = "prog.fm") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(source).lstrip("\n"), encoding="utf-8")
    return path


def scripts_dir() -> Path:
    """Where pip put the ``flowmetal`` console script for this interpreter."""
    return Path(sysconfig.get_path("scripts"))


def installed_script() -> Path:
    path = scripts_dir() / "flowmetal"
    if not path.exists():
        pytest.fail(f"the flowmetal console script is not installed in {path.parent}")
    return path


def _sigint_default() -> None:
    # A parent that ignores SIGINT (a background job) would pass that on to the child.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def read_line_soon(stream, seconds: float = 10) -> str:
    """The next line of a pipe, failing instead of hanging if none arrives in time."""
    assert readable(stream, seconds), "no output arrived while the program was running"
    return stream.readline()


# --- help, version, usage ----------------------------------------------------------------


def test_help_exits_0_and_describes_the_command():
    r = flowmetal_cmd("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: flowmetal [--store DIR] FILE.fm [ARGS...]\n")
    for text in ("-e, --eval EXPR", "*command-line-args*", "REPL", "130", "resume ID",
                 "worker", "export ID"):
        assert text in r.stdout
    assert r.stderr == ""


def test_version_comes_from_the_installed_metadata():
    r = flowmetal_cmd("--version")
    expected = f"flowmetal {metadata.version('flowmetal')}\n"
    assert (r.returncode, r.stdout, r.stderr) == (0, expected, "")
    assert flowmetal.__version__ == metadata.version("flowmetal")


def test_no_arguments_opens_the_repl_which_reads_piped_input():
    r = flowmetal_cmd(stdin="(def x 40)\n(+ x 2)\n")
    assert (r.returncode, r.stdout, r.stderr) == (0, "x\n42\n", "")
    assert flowmetal_cmd().returncode == 0  # no input at all: nothing to do


@pytest.mark.parametrize("args, message", [
    (["--frobnicate"], "flowmetal: unknown option --frobnicate\n"),
    (["-e"], "flowmetal: -e needs an expression\n"),
    (["run"], "flowmetal: run needs a FILE\n"),
    (["--store"], "flowmetal: --store needs a directory or a URL\n"),
    (["run", "--slice", "0", "x.fm"], "flowmetal: --slice needs a positive integer, got '0'\n"),
    (["tasks", "--frobnicate"], "flowmetal: tasks: unrecognized arguments: --frobnicate\n"),
    (["show"], "flowmetal: show: the following arguments are required: ID\n"),
])
def test_usage_errors_exit_2(args, message):
    r = flowmetal_cmd(*args)
    assert r.returncode == 2
    assert r.stderr.startswith(message)
    assert "usage: flowmetal" in r.stderr


# --- -e ------------------------------------------------------------------------------------


def test_eval_prints_the_last_value_readably():
    r = flowmetal_cmd("-e", '(def x 40) (+ x 2) (str "a" "b")')
    assert (r.returncode, r.stdout, r.stderr) == (0, '"ab"\n', "")


def test_eval_prints_nothing_for_nil():
    r = flowmetal_cmd("-e", '(println "side effect")')
    assert (r.returncode, r.stdout) == (0, "side effect\n")


def test_eval_runs_as_a_task_so_effects_work():
    r = flowmetal_cmd("-e", "(sleep 0.1) (def t (spawn (fn [x] (* x 2)) 21)) [(join t) (task? t)]")
    assert (r.returncode, r.stdout, r.stderr) == (0, "[42 true]\n", "")


def test_eval_sees_the_arguments_after_the_expression():
    r = flowmetal_cmd("-e", "[*command-line-args* *file*]", "a", "b c")
    assert r.stdout == '[["a" "b c"] nil]\n'


# --- running files -------------------------------------------------------------------------


ARGS_PROGRAM = """
    (println *file*)
    (prn *command-line-args*)
    """


@pytest.mark.parametrize("prefix", [[], ["run"]])
def test_a_script_gets_its_path_and_arguments(tmp_path, prefix):
    path = script(tmp_path, ARGS_PROGRAM)
    r = flowmetal_cmd(*prefix, str(path), "one", "--two", "")
    assert (r.returncode, r.stderr) == (0, "")
    assert r.stdout == f'{path}\n["one" "--two" ""]\n'


def test_without_arguments_the_vector_is_empty(tmp_path):
    script(tmp_path, ARGS_PROGRAM)
    r = flowmetal_cmd("prog.fm", cwd=tmp_path)
    assert r.stdout == "prog.fm\n[]\n"


def test_a_script_does_not_print_its_value(tmp_path):
    path = script(tmp_path, "(+ 1 2)\n")
    r = flowmetal_cmd(str(path))
    assert (r.returncode, r.stdout, r.stderr) == (0, "", "")


@pytest.mark.parametrize("make, reason", [
    (lambda d: d / "missing.fm", "No such file or directory"),
    (lambda d: d, "Is a directory"),
])
def test_an_unreadable_file_exits_2(tmp_path, make, reason):
    path = make(tmp_path)
    r = flowmetal_cmd(str(path))
    assert r.returncode == 2
    assert r.stderr == f"flowmetal: cannot read {path}: {reason}\n"


def test_a_file_that_is_not_utf8_exits_2(tmp_path):
    path = tmp_path / "latin1.fm"
    path.write_bytes(b'(println "caf\xe9")\n')
    r = flowmetal_cmd(str(path))
    assert r.returncode == 2
    assert r.stderr == f"{path}:1:14: not UTF-8 text (byte 0xe9)\n"


# --- source errors (exit 2) ----------------------------------------------------------------


def test_a_read_error_names_file_line_and_column(tmp_path):
    script(tmp_path, """
        (println "never runs")
        (defn broken [x]
          (+ x 1)
        """)
    r = flowmetal_cmd("prog.fm", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == ("prog.fm:2:1: unterminated list opened at prog.fm:2:1: "
                        "expected `)` before the end of input\n")


def test_a_syntax_error_names_file_line_and_column(tmp_path):
    script(tmp_path, """
        (println "never runs")
        (let [a] 1)
        """)
    r = flowmetal_cmd("prog.fm", cwd=tmp_path)
    assert (r.returncode, r.stdout) == (2, "")
    assert r.stderr == "prog.fm:2:6: binding vector needs an even number of forms\n"


def test_an_error_in_a_macro_expansion_exits_2():
    r = flowmetal_cmd("-e", "(cond 1)")
    assert r.returncode == 2
    assert r.stderr.startswith("<expr>:1:1: ")
    assert "cond needs an even number of forms" in r.stderr


# --- uncaught errors (exit 1) --------------------------------------------------------------


def test_an_uncaught_error_prints_a_flowmetal_backtrace(tmp_path):
    script(tmp_path, """
        (defn inner [x]
          (+ 1 (throw (ex-info "bad thing" {:x x} :oops))))
        (defn outer [x]
          (* 2 (inner x)))
        (println "before")
        (outer 7)
        """)
    r = flowmetal_cmd("prog.fm", cwd=tmp_path)
    assert r.returncode == 1
    assert r.stdout == "before\n"
    lines = r.stderr.splitlines()
    assert lines[:2] == ["error: bad thing (:oops)", "  data: {:x 7}"]
    assert_frames(lines[2:], ["  at inner (prog.fm:2:8)", "  at outer (prog.fm:4:3)"])


FRAME = re.compile(r"^  at \S+ \([^()]+:\d+:\d+\)$")


def assert_frames(lines: list[str], expected: list[str]) -> None:
    """Every line is a frame, and the expected frames appear among them in order."""
    for line in lines:
        assert FRAME.match(line), line
    found = iter(lines)
    for frame in expected:
        assert frame in found, f"{frame!r} missing or out of order in {lines}"


def test_an_error_without_data_shows_no_data_line():
    r = flowmetal_cmd("-e", "(defn f [] (+ 1 (/ 1 0))) (f)")
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert lines[0] == "error: division by zero (:arithmetic-error)"
    assert_frames(lines[1:], ["  at f (<expr>:1:17)"])


def test_a_thrown_non_map_is_reported_too():
    r = flowmetal_cmd("-e", "(throw [1 2])")
    assert (r.returncode, r.stderr) == (1, "error: uncaught [1 2]\n")


def test_output_before_an_error_comes_first(tmp_path):
    path = script(tmp_path, '(print "partial line, ") (println "then more") (error "stop")\n')
    r = subprocess.run([sys.executable, "-m", "flowmetal", str(path)], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)
    assert r.returncode == 1
    assert r.stdout.startswith("partial line, then more\nerror: stop (:error)\n")


# --- streaming, Ctrl-C, closed pipes -------------------------------------------------------


def test_output_streams_while_the_program_runs_and_ctrl_c_exits_130(tmp_path):
    path = script(tmp_path, """
        (println "started")
        (defn spin [] (spin))
        (spin)
        """)
    proc = subprocess.Popen([sys.executable, "-m", "flowmetal", str(path)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_sigint_default)
    try:
        assert read_line_soon(proc.stdout) == "started\n"
        assert proc.poll() is None, "the program should still be running"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert out == ""
    assert re.fullmatch(r"flowmetal: task (\w+) left in the store; finish it with: "
                        r"flowmetal resume \1\n", err), err


def test_ctrl_c_during_eval_exits_130_and_leaves_nothing(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "flowmetal", "-e",
                             '(println "started") (defn spin [] (spin)) (spin)'],
                            text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_sigint_default)
    try:
        assert read_line_soon(proc.stdout) == "started\n"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, out, err) == (130, "", "flowmetal: interrupted\n")
    assert not (tmp_path / "store").exists()


def test_a_closed_stdout_stops_the_program_quietly(tmp_path):
    path = script(tmp_path, """
        (defn loud [i] (println "line" i) (loud (inc i)))
        (loud 0)
        """)
    proc = subprocess.Popen([sys.executable, "-m", "flowmetal", str(path)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert read_line_soon(proc.stdout) == "line 0\n"
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 141
    assert err == ""


# --- internal errors -----------------------------------------------------------------------


def _explode(*args, **kwargs):
    raise RuntimeError("boom")


def test_an_internal_error_is_one_line_without_a_python_traceback(monkeypatch, capsys):
    monkeypatch.setattr(cli, "run_source", _explode)
    monkeypatch.delenv("FLOWMETAL_TRACEBACK", raising=False)
    assert cli.main(["-e", "1"]) == cli.EXIT_INTERNAL
    assert capsys.readouterr().err == "internal error: RuntimeError: boom\n"


def test_flowmetal_traceback_shows_the_python_traceback(monkeypatch, capsys):
    monkeypatch.setattr(cli, "run_source", _explode)
    monkeypatch.setenv("FLOWMETAL_TRACEBACK", "1")
    assert cli.main(["-e", "1"]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.endswith("internal error: RuntimeError: boom\n")


# --- the installed script and #! -----------------------------------------------------------


def test_the_installed_console_script_runs():
    r = subprocess.run([str(installed_script()), "-e", "(map inc [1 2])"], capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert (r.returncode, r.stdout, r.stderr) == (0, "(2 3)\n", "")


def test_a_shebang_script_runs_directly_and_keeps_its_line_numbers(tmp_path):
    path = script(tmp_path, """
        #!/usr/bin/env flowmetal
        ; an executable script
        (println "args:" *command-line-args*)
        (str "never" (error "on line four"))
        """, name="tool.fm")
    path.chmod(0o755)
    env = dict(os.environ, PATH=f"{scripts_dir()}{os.pathsep}{os.environ.get('PATH', '')}")
    assert shutil.which("flowmetal", path=env["PATH"]) == str(installed_script())
    r = subprocess.run(["./tool.fm", "x", "y"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=TIMEOUT)
    assert r.returncode == 1
    assert r.stdout == 'args: ["x" "y"]\n'
    lines = r.stderr.splitlines()
    assert lines[0] == "error: on line four (:error)"
    assert_frames(lines[1:], ["  at <toplevel> (./tool.fm:4:14)"])


# --- the helpers, in process ---------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("#!/usr/bin/env flowmetal\n(foo)\n", "\n(foo)\n"),
    ("#!/usr/bin/env flowmetal", ""),
    ("(foo)\n#!not-first\n", "(foo)\n#!not-first\n"),
    (" #!x\n", " #!x\n"),
])
def test_strip_shebang_blanks_only_a_first_line_shebang(text, expected):
    assert strip_shebang(text) == expected


def test_format_error_of_a_bare_map():
    error = Map({kw("type"): kw("oops"), kw("message"): "it broke"})
    assert format_error(error) == "error: it broke (:oops)"


def test_format_error_lists_frames_innermost_first():
    frame = Map({kw("proc"): "f", kw("file"): "a.fm", kw("line"): 3, kw("col"): 5})
    outer = Map({kw("proc"): "g", kw("file"): "b.fm", kw("line"): 9, kw("col"): 1})
    error = Map({kw("type"): kw("oops"), kw("message"): "it broke", kw("data"): Vector([1]),
                 kw("backtrace"): Vector([frame, outer])})
    assert format_error(error) == ("error: it broke (:oops)\n  data: [1]\n"
                                   "  at f (a.fm:3:5)\n  at g (b.fm:9:1)")
