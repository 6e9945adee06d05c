"""Fixtures for the operations tests: in-process runtimes (stopped at teardown) and the real console script,
run without blocking the event loop, so the runtimes under test keep beating while a command runs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pheromone.services.runtime import Runtime
from tests.cli.helpers import PHEROMONE, Run
from tests.support import runtimes, settings

StartRuntime = Callable[..., Awaitable[Runtime]]
Cli = Callable[..., Awaitable[Run]]


@pytest.fixture
async def start_runtime(tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[StartRuntime]:
    """`await start_runtime(services, url=None, **settings)`: a started Runtime, stopped at teardown."""
    async with runtimes() as pool:

        async def start(services: Sequence[str], url: str | None = None, **overrides: Any) -> Runtime:
            return await pool.start(settings(tmp_path, prefix, **overrides), url or redis_url, services)

        yield start


@pytest.fixture
def cli_env(tmp_path: Path, prefix: str, redis_url: str) -> dict[str, str]:
    """A clean environment pointing at the session server, this test's prefix and data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHEROMONE_") and k != "COLUMNS"}
    env.update(PHEROMONE_DATA_DIR=str(tmp_path), PHEROMONE_PREFIX=prefix, PHEROMONE_REDIS_URL=redis_url,
               XDG_DATA_HOME=str(tmp_path / "xdg"))
    return env


@pytest.fixture
def cli(cli_env: dict[str, str], tmp_path: Path) -> Cli:
    """`await cli(*args, env={...}, timeout=60)`: run `pheromone ARGS…` as a subprocess; `env` adds variables
    (a value of None removes one). The timeout bounds the run: a command that hangs fails the test."""

    async def run(*args: str, env: dict[str, str | None] | None = None, timeout: float = 60.0) -> Run:
        full = dict(cli_env)
        for key, value in (env or {}).items():
            if value is None:
                full.pop(key, None)
            else:
                full[key] = value
        proc = await asyncio.create_subprocess_exec(
            str(PHEROMONE), *args, env=full, cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        try:
            async with asyncio.timeout(timeout):
                out, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError(f"pheromone {' '.join(args)} did not finish within {timeout:g}s") from None
        assert proc.returncode is not None
        return Run(tuple(args), proc.returncode, out.decode(), err.decode())

    return run
