"""The tree stays clean: ruff with the settings in pyproject.toml over every package and the tests, and
mypy --strict (pyproject.toml's [tool.mypy]) over the pheromone package, contracts and services included."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def test_ruff_finds_nothing() -> None:
    result = subprocess.run(
        [str(BIN / "ruff"), "check", "--no-cache", "contracts", "services", "pheromone", "bench", "tests"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    # The cache lives in the venv, not the tree: a fresh clone starts cold, a developer's second run is quick.
    cache = Path(sys.prefix) / ".mypy_cache"
    result = subprocess.run(
        [str(BIN / "mypy"), "--cache-dir", str(cache)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode == 0 and "Success" in result.stdout, result.stdout + result.stderr
