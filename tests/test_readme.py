"""README.md says only what is true: its tour's values, its commands, its files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from flowmetal.interpreter import Session
from flowmetal.printer import to_string

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(lang: str) -> list[str]:
    """The text of README's fenced code blocks tagged ``lang`` ("" for untagged ones)."""
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    for line in README.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
                blocks.append((line[3:].strip(), current))
            else:
                current = None
        elif current is not None:
            current.append(line + "\n")
    return ["".join(body) for tag, body in blocks if tag == lang]


def test_the_tour_shows_the_values_flowmetal_computes():
    (tour,) = code_blocks("clojure")
    session = Session()
    pending: list[str] = []
    checked = 0
    for line in tour.splitlines():
        code, arrow, expected = line.partition(";=>")
        pending.append(code)
        if arrow:
            source = "\n".join(pending)
            assert to_string(session.eval_string(source, "README.md")) == expected.strip(), source
            pending = []
            checked += 1
    assert checked >= 5


def test_there_are_exactly_two_setup_commands():
    assert [block.strip() for block in code_blocks("sh")] == [
        "python3 -m venv .venv && . .venv/bin/activate && pip install . "
        "&& flowmetal examples/hello.fm",
        "python3 -m venv .venv && . .venv/bin/activate && pip install -e '.[test]' "
        "&& python -m pytest",
    ]


def test_the_files_it_names_exist():
    named = set(re.findall(r"`((?:examples|tests)/[\w./]+|\.ci/run)`", README))
    named |= {f"examples/{n}" for n in re.findall(r"`(\w+\.fm)`", README)}
    assert "examples/error.fm" in named
    for name in sorted(named):
        assert (ROOT / name).exists(), name


def test_the_error_transcript_is_what_error_fm_prints(tmp_path):
    (block,) = [b for b in code_blocks("") if b.startswith("$ flowmetal examples/error.fm")]
    lines = block.splitlines()[1:]
    shown = lines[:lines.index("  ...")]
    r = subprocess.run([sys.executable, "-m", "flowmetal", "examples/error.fm"], cwd=ROOT,
                       env=dict(os.environ, FLOWMETAL_HOME=str(tmp_path / "store")),
                       capture_output=True, text=True, timeout=60)
    assert (r.stdout + r.stderr).splitlines()[:len(shown)] == shown
