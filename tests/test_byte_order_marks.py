"""Byte order marks in program files, through the real command line: one at the start of
a file is skipped; one anywhere else is a read error naming its file, line and column."""

from __future__ import annotations

import subprocess
import sys


def run(tmp_path, text: str) -> subprocess.CompletedProcess:
    path = tmp_path / "prog.fm"
    path.write_bytes(text.encode("utf-8"))
    return subprocess.run([sys.executable, "-m", "flowmetal", "--store",
                           str(tmp_path / "store"), str(path)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)


def test_a_leading_byte_order_mark_is_skipped(tmp_path):
    done = run(tmp_path, '\ufeff(println "ok")\n')
    assert done.returncode == 0, done.stderr
    assert done.stdout == "ok\n"


def test_a_byte_order_mark_inside_a_file_is_an_error_with_its_position(tmp_path):
    done = run(tmp_path, '(println "a")\n  \ufeff(println "b")\n')
    assert done.returncode != 0
    assert "prog.fm:2:3: invalid character U+FEFF (a byte order mark)" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_files_joined_with_their_marks_are_refused_not_misread(tmp_path):
    done = run(tmp_path, '\ufeff(def x 1)\n\ufeff(println x)\n')
    assert done.returncode != 0
    assert "prog.fm:2:1: invalid character U+FEFF" in done.stderr
