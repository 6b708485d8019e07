"""Every program in examples/ runs and prints exactly what is expected of it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .cli_helpers import readable

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

# name -> (arguments, exit status, stdout, stderr).  In stderr, frames inside the
# standard library are compared as one "  at <stdlib>" line (see normalize_stdlib).
EXPECTED: dict[str, tuple[list[str], int, str, str]] = {
    "hello.fm": ([], 0, "Hello, world!\n", ""),
    "fib.fm": ([], 0, (
        "fib of 0 to 20: [0 1 1 2 3 5 8 13 21 34 55 89 144 233 377 610 987 1597 2584 4181 6765]\n"
        "fib(300) = 222232244629420445529739893461909967206666939096499764990979600\n"
    ), ""),
    "generator.fm": ([], 0, "1 2 3\n4 5 6\n:done :done\ntrue\nfalse\n", ""),
    "recursion.fm": ([], 0, "sum of 1..100000 = 5000050000\nis 100001 even? false\n", ""),
    "args.fm": (["alpha", "two words"], 0, (
        "script: examples/args.fm\n"
        "got 2 arguments\n"
        "  0: alpha\n"
        "  1: two words\n"
    ), ""),
    "error.fm": ([], 1, "loading users...\n", (
        "error: age must not be negative (:invalid-age)\n"
        '  data: {:input "-4"}\n'
        "  at parse-age (examples/error.fm:8:7)\n"
        "  at parse-age (examples/error.fm:6:3)\n"
        "  at load-user (examples/error.fm:12:3)\n"
        "  at <stdlib>\n"
        "  at <toplevel> (examples/error.fm:18:1)\n"
    )),
    "countdown.fm": ([], 0, "5\n4\n3\n2\n1\nliftoff\n", ""),
    "ping_pong.fm": ([], 0, (
        "ping 1\n  pong 1\nping 2\n  pong 2\nping 3\n  pong 3\ndone after 3 rounds\n"
    ), ""),
    "fan_out.fm": ([], 0, "squares: [1 4 9 16 25]\nsum: 55\n", ""),
    "receive_timeout.fm": ([], 0, (
        "no answer: receive timed out after 0.3 s\n"
        "config: {:retries 3}\n"
    ), ""),
}

STDLIB_FRAME = re.compile(r"^  at \S+ \(stdlib/[^)]*\)$")


def normalize_stdlib(stderr: str) -> str:
    """Fold each run of standard-library frames into one line, so that editing the
    standard library does not change an example's expected backtrace."""
    out: list[str] = []
    for line in stderr.splitlines(keepends=True):
        if STDLIB_FRAME.match(line.rstrip("\n")):
            if not out or out[-1] != "  at <stdlib>\n":
                out.append("  at <stdlib>\n")
        else:
            out.append(line)
    return "".join(out)


def example_names() -> list[str]:
    """The examples that run on their own (those that need servers are run by
    test_connector_examples.py)."""
    from .test_connector_examples import SERVED_EXAMPLES

    return sorted(p.name for p in EXAMPLES.glob("*.fm") if p.name not in SERVED_EXAMPLES)


def test_every_expectation_has_an_example():
    assert sorted(EXPECTED) == [n for n in example_names() if n in EXPECTED]


@pytest.fixture(autouse=True)
def store_in_tmp(tmp_path, monkeypatch):
    """Examples run as tasks in a store: keep it in the test's directory."""
    monkeypatch.setenv("FLOWMETAL_HOME", str(tmp_path / "store"))


def flowmetal(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flowmetal", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, **kwargs)


@pytest.mark.parametrize("name", example_names())
def test_example(name):
    assert name in EXPECTED, f"examples/{name} has no expected output in {__file__}"
    args, status, stdout, stderr = EXPECTED[name]
    r = flowmetal(f"examples/{name}", *args)
    assert normalize_stdlib(r.stderr) == stderr
    assert r.stdout == stdout
    assert r.returncode == status


@pytest.mark.parametrize("name", example_names())
def test_example_is_an_executable_script(name):
    path = EXAMPLES / name
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "#!/usr/bin/env flowmetal"
    assert lines[1].startswith("; "), "the second line should say what the example shows"
    assert os.access(path, os.X_OK), f"chmod +x examples/{name}"


def test_countdown_survives_kill_9_and_resume_prints_the_rest_once():
    proc = subprocess.Popen([sys.executable, "-m", "flowmetal", "examples/countdown.fm"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        while len(seen) < 3:
            assert readable(proc.stdout, 10), f"the countdown stopped printing after {seen}"
            seen.append(proc.stdout.readline())
        proc.kill()
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert seen == ["5\n", "4\n", "3\n"]
    listed = json.loads(flowmetal("tasks", "--json").stdout)
    (task,) = [t for t in listed if t["name"] == "countdown.fm"]
    assert task["status"] in ("waiting", "runnable")
    r = flowmetal("resume", task["id"])
    assert (r.returncode, r.stderr) == (0, "")
    assert "".join(seen) + r.stdout == "5\n4\n3\n2\n1\nliftoff\n"
    listed = json.loads(flowmetal("tasks", "--json").stdout)
    assert [t["status"] for t in listed if t["id"] == task["id"]] == ["done"]
