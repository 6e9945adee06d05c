"""Fixtures for the coordination tests: in-process runtimes and clients, always stopped and closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from pheromone.services.runtime import Runtime
from tests.coordination.helpers import settings
from tests.support import runtimes

StartRuntime = Callable[..., Awaitable[Runtime]]


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
def client_options(tmp_path: Path, prefix: str) -> dict[str, Any]:
    return {"workspace": "ws-0", "prefix": prefix, "data_dir": tmp_path}