"""Fixtures for the service tests: in-process runtimes and clients that are always stopped and closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pheromone.services.runtime import Runtime
from tests.services.helpers import settings
from tests.support import runtimes

StartRuntime = Callable[..., Awaitable[Runtime]]
BACKBONE = ("store", "query")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """This test's SQLite store file (the runtime's default `<data_dir>/store.db`)."""
    return tmp_path / "store.db"


@pytest.fixture
async def start_runtime(tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[StartRuntime]:
    """`await start_runtime(url=None, services=BACKBONE, **settings)`: a started Runtime, stopped at teardown.

    The backbone (store and query) by default: these tests prove delivery, not the services built on it.
    """
    async with runtimes() as pool:

        async def start(url: str | None = None, services: Sequence[str] = BACKBONE, **overrides: Any) -> Runtime:
            return await pool.start(settings(tmp_path, prefix, **overrides), url or redis_url, services)

        yield start


