"""A wheel built from this checkout works without it (builds a wheel: a few seconds)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "flowmetal", "stdlib")


def build_wheel(tmp_path: Path) -> Path:
    """A wheel of this checkout, built from a copy of it (so the build leaves no build/
    or egg-info in the checkout)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy(path, src / name)
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q",
                    "-w", str(dist)], check=True, capture_output=True, timeout=300)
    (wheel,) = dist.glob("flowmetal-*.whl")
    return wheel


@pytest.mark.slow
def test_a_built_wheel_carries_the_standard_library(tmp_path):
    wheel = build_wheel(tmp_path)
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)

    # Run from outside the checkout, with the unpacked wheel ahead of any other install.
    env = dict(os.environ, PYTHONPATH=str(site))
    where = subprocess.run(
        [sys.executable, "-c",
         "import flowmetal.interpreter as i; print(i.__file__); print(i.stdlib_dir())"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert where.stdout.splitlines() == [str(site / "flowmetal" / "interpreter.py"),
                                         str(site / "flowmetal" / "stdlib")]
    r = subprocess.run([sys.executable, "-m", "flowmetal", "-e", "(map inc [1 2])"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout, r.stderr) == (0, "(2 3)\n", "")
