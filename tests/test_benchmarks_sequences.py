"""``python -m benchmarks.sequences --quick`` runs (LMDB only) and prints its figures (no
timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_sequences_benchmark_quick_prints_every_figure(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks.sequences", "--quick",
                           "--no-postgres", "--dir", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    ms = r"[\d.]+ ms / [\d.]+ ms \(n=\d+\)"
    for figure in (r"\(a\) \d+ runs of one \(1 task\): runs/s\s+[\d,.]+",
                   r"\(a\) \d+ runs of one: task events/s\s+[\d,.]+",
                   r"\(a\) \d+ runs of three \(3 tasks\): runs/s\s+[\d,.]+",
                   r"\(a\) \d+ runs of three: task events/s\s+[\d,.]+",
                   r"\(a\) \d+ runs of three: triggers accepted/s\s+[\d,.]+",
                   r"\(b\) during the bursts of one: \.triggered to \.started p50 / p99\s+"
                   + ms,
                   r"\(b\) during the bursts of three: POST to first \.triggered p50 / p99\s+"
                   + ms,
                   r"\(b\) one run of three at a time: \.triggered to \.started p50 / p99\s+"
                   + ms,
                   r"\(c\) a claim finding nothing, [\d,]+ entries in the outbox\s+[\d.]+ ms"):
        assert re.search(figure, out), f"missing {figure!r} in:\n{out}"
    assert "PostgreSQL" not in out
    assert not list(tmp_path.iterdir()), "the store was not removed"
