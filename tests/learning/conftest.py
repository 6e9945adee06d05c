"""Fixtures for the learning tests that need the services: an in-process runtime on the session's server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from pheromone.services.runtime import Runtime
from pheromone.services.settings import Settings
from tests.support import runtimes

StartRuntime = Callable[..., Awaitable[Runtime]]


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
def client_options(learning_settings: Settings) -> dict[str, Any]:
    return {"workspace": "ws-1", "prefix": learning_settings.prefix, "data_dir": learning_settings.data_dir}