"""Fixtures for the coordination tests: in-process runtimes and clients, always stopped and closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pheromone import Pheromone
from pheromone.services.runtime import Runtime
from tests.coordination.helpers import settings
from tests.support import runtimes

StartRuntime = Callable[..., Awaitable[Runtime]]
OpenClient = Callable[..., Awaitable[Pheromone]]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
async def start_runtime(tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[StartRuntime]:
    """`await start_runtime(services=[...], url=None, **settings)`: a started Runtime, stopped at teardown."""
    async with runtimes() as pool:

        async def start(services: list[str] | None = None, *, url: str | None = None, **overrides: Any) -> Runtime:
            return await pool.start(settings(tmp_path, prefix, **overrides), url or redis_url, services)

        yield start


@pytest.fixture
async def open_client(tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[OpenClient]:
    """`await open_client(job, workspace=..., url=None, **kwargs)`: an open client with its own spool dir."""
    opened: list[Pheromone] = []

    async def open_(job: str, *, workspace: str = "ws-0", url: str | None = None, **kw: Any) -> Pheromone:
        client = Pheromone(
            url or redis_url,
            workspace=workspace,
            job=job,
            prefix=prefix,
            data_dir=tmp_path,
            spool_dir=tmp_path / "spool" / workspace / job,
            **kw,
        )
        await client.open()
        opened.append(client)
        return client

    try:
        yield open_
    finally:
        for client in opened:
            await client.close()
