"""The benchmark commands run and print their figures (no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, timeout: float) -> str:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_lang_benchmark_prints_every_program():
    out = run("benchmarks.lang", "--repeat", "1", timeout=300)
    for name in ("fib(25)", "tak(18,12,6)", "tail loop 1e6", "closures", "call/cc generator"):
        assert re.search(re.escape(name) + r"\s+[\d.]+ms", out), out


@pytest.mark.slow
def test_durable_benchmark_quick_prints_every_figure(tmp_path):
    out = run("benchmarks.durable", "--quick", "--dir", str(tmp_path), timeout=300)
    assert re.search(r"raw LMDB: [\d,]+ synced txns/s", out), out
    for figure in (r"\(a\) 1 task, [\d,]+ effects: steps/s\s+[\d,]+",
                   r"\(a\) step latency p50 / p99\s+[\d.]+ ms / [\d.]+ ms",
                   r"\(b\) 100 tasks x [\d,]+ effects, 1 worker.*steps/s\s+[\d,]+",
                   r"\(b\) 100 tasks x [\d,]+ effects, 2 worker processes: steps/s\s+[\d,]+",
                   r"\(c\) store bytes per sleeping task.*\s+[\d,]+ / [\d,]+",
                   r"\(c\) RSS of fresh worker .* [\d.]+ MB / [\d.]+ MB",
                   r"\(d\) [\d,]+ timers, due at [\d,]+/s: fired late p50 / p99\s+-?[\d.]+ ms",
                   r"\(e\) continuation at depth 100\s+[\d,]+ B",
                   r"\(e\) bytes per frame"):
        assert re.search(figure, out), f"missing {figure!r} in:\n{out}"
    assert not list(tmp_path.iterdir()), "the stores were not removed"


@pytest.mark.slow
def test_connectors_benchmark_quick_prints_every_figure(tmp_path):
    out = run("benchmarks.connectors", "--quick", "--dir", str(tmp_path), timeout=300)
    for figure in (r"\(a\) HTTP requests/s, \d+ tasks x \d+, the connector in the worker"
                   r"\s+[\d,]+",
                   r"\(a\) HTTP requests/s, \d+ tasks x \d+, the connector on its own\s+[\d,]+",
                   r"\(a\) CPU per request, the connector in the worker .*\s+[\d,]+ us\s+"
                   r"[\d,]+ us direct",
                   r"\(b\) task starts/s through the API \(one client\)\s+[\d,]+",
                   r"\(b\) start to first committed step p50 / p99\s+[\d.]+ ms / [\d.]+ ms",
                   r"\(c\) callback requests delivered/s .*\s+[\d,]+"):
        assert re.search(figure, out), (figure, out)
