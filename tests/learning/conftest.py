"""Fixtures for the learning tests that need the services: an in-process runtime on the session's server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pheromone import Pheromone
from pheromone.services.runtime import Runtime
from pheromone.services.settings import Settings
from tests.support import runtimes

StartRuntime = Callable[..., Awaitable[Runtime]]
OpenClient = Callable[..., Awaitable[Pheromone]]


@pytest.fixture
def learning_settings(tmp_path: Path, prefix: str, redis_url: str) -> Settings:
    """Settings for this test: its own data dir and key prefix, quick upkeep loops."""
    return Settings(
        redis_url=SecretStr(redis_url),
        data_dir=tmp_path / "data",
        prefix=prefix,
        claim_idle_ms=300,
        group_check_s=0.2,
        poll_ms=20,
    )


@pytest.fixture
async def runtime(learning_settings: Settings, redis_url: str) -> AsyncIterator[StartRuntime]:
    """`await runtime(services=("store", "query"))`: a started Runtime, stopped at teardown."""
    async with runtimes() as pool:

        async def start(services: Sequence[str] = ("store", "query")) -> Runtime:
            return await pool.start(learning_settings, redis_url, services)

        yield start


@pytest.fixture
async def open_client(learning_settings: Settings, redis_url: str) -> AsyncIterator[OpenClient]:
    """`await open_client(job, workspace=...)`: an open client with its own spool, closed at teardown."""
    opened: list[Pheromone] = []

    async def open_(job: str, *, workspace: str = "ws-1", **kw: Any) -> Pheromone:
        s = learning_settings
        client = Pheromone(
            redis_url,
            workspace=workspace,
            job=job,
            prefix=s.prefix,
            data_dir=s.data_dir,
            spool_dir=s.data_dir / "spool" / job,
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
