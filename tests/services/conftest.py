"""Fixtures for the service tests: in-process runtimes and clients that are always stopped and closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pheromone.services.runtime import Runtime
from pheromone.services.settings import StoreLocation
from pheromone.services.store.location import is_postgres
from tests.services.helpers import settings
from tests.support import runtimes

StartRuntime = Callable[..., Awaitable[Runtime]]
BACKBONE = ("store", "query")


@pytest.fixture
def store_backend() -> str:
    """The store backend of this folder's tests: SQLite. A module that proves a fault on both backends overrides
    this fixture with one parametrized over "sqlite" and "postgres"."""
    return "sqlite"


@pytest.fixture
def db(tmp_path: Path, store_backend: str, request: pytest.FixtureRequest) -> StoreLocation:
    """This test's store: the runtime's default SQLite file `<data_dir>/store.db`, or a fresh PostgreSQL
    database (the runtimes the test starts get it as `store_url`)."""
    if store_backend == "postgres":
        url: str = request.getfixturevalue("pg_url")
        return url
    return tmp_path / "store.db"


def store_overrides(db: StoreLocation) -> dict[str, Any]:
    """The settings that point a runtime at `db`."""
    return {"store_url": db} if is_postgres(db) else {}


@pytest.fixture
async def start_runtime(
    tmp_path: Path, prefix: str, redis_url: str, db: StoreLocation
) -> AsyncIterator[StartRuntime]:
    """`await start_runtime(url=None, services=BACKBONE, **settings)`: a started Runtime, stopped at teardown.

    The backbone (store and query) by default: these tests prove delivery, not the services built on it.
    """
    async with runtimes() as pool:

        async def start(url: str | None = None, services: Sequence[str] = BACKBONE, **overrides: Any) -> Runtime:
            overrides = {**store_overrides(db), **overrides}
            return await pool.start(settings(tmp_path, prefix, **overrides), url or redis_url, services)

        yield start


