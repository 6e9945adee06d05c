"""Fixtures for the CLI tests, which run the real console script so `main()`'s error wrapper is tested too.

Each call gets a clean environment: no `PHEROMONE_*` variable from the caller leaks in, the data directory is
the test's own, and no `COLUMNS` is set, so output is what a pipe or a log file would receive.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest

from pheromone.services.store.db import Store
from pheromone.services.store.location import open_backend
from tests.cli.helpers import PHEROMONE, SAMPLE_EVENTS, Cli, Run


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHEROMONE_") and k != "COLUMNS"}
    env["PHEROMONE_DATA_DIR"] = str(tmp_path / "data")
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")  # the default data dir, should anything fall back to it
    return env


@pytest.fixture
def cli(cli_env: dict[str, str], tmp_path: Path) -> Cli:
    """Run `pheromone ARGS…` in `tmp_path`; keyword `env` adds variables, `timeout` bounds the run (s)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 60.0) -> Run:
        proc = subprocess.run(
            [str(PHEROMONE), *args],
            env={**cli_env, **(env or {})},
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return Run(tuple(args), proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def pg_store(pg_url: str) -> str:
    """`store_db`'s events in a fresh PostgreSQL database, written by `PgStore.apply`."""

    async def fill() -> None:
        async with open_backend(pg_url) as store:
            result = await store.apply([(e, e.model_dump_json()) for e in SAMPLE_EVENTS])
        assert len(result.inserted) == len(SAMPLE_EVENTS), result

    asyncio.run(fill())
    return pg_url


@pytest.fixture
def store_db(tmp_path: Path) -> Path:
    """A real store file holding `SAMPLE_EVENTS`, written by `Store.apply` as the store service writes it."""
    path = tmp_path / "store" / "store.db"

    async def fill() -> None:
        async with Store(path) as store:
            result = await store.apply([(e, e.model_dump_json()) for e in SAMPLE_EVENTS])
        assert len(result.inserted) == len(SAMPLE_EVENTS), result

    asyncio.run(fill())
    return path
