"""Every program in examples/ runs and prints exactly what is expected of it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

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
    return sorted(p.name for p in EXAMPLES.glob("*.fm"))


def test_every_expectation_has_an_example():
    assert sorted(EXPECTED) == [n for n in example_names() if n in EXPECTED]


@pytest.mark.parametrize("name", example_names())
def test_example(name):
    assert name in EXPECTED, f"examples/{name} has no expected output in {__file__}"
    args, status, stdout, stderr = EXPECTED[name]
    r = subprocess.run([sys.executable, "-m", "flowmetal", f"examples/{name}", *args],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
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
