"""Fixtures for the session tests: in-process runtimes against the session's real Valkey, a real SQLite file,
and helpers to feed a simulated fleet and read sessions back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from pheromone.services.runtime import Runtime
from tests.support import runtimes, settings

StartRuntime = Callable[..., Awaitable[Runtime]]
SERVICES = ("store", "query", "consolidator")
QUIET = {"schedule_interval_s": 0, "cluster_trigger_runs": 10_000}
"""No scheduled or cluster triggers unless a test asks: sessions start when the test triggers them."""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture
async def start_runtime(tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[StartRuntime]:
    """`await start_runtime(services=SERVICES, sessions={...}, **settings)`: a started Runtime, stopped at
    teardown; session settings default to QUIET."""
    async with runtimes() as pool:

        async def start(services: Sequence[str] = SERVICES, **overrides: Any) -> Runtime:
            sessions = overrides.pop("sessions", {})
            return await pool.start(settings(tmp_path, prefix, sessions={**QUIET, **sessions}, **overrides),
                                    redis_url, services)

        yield start


@pytest.fixture
def client_options(tmp_path: Path, prefix: str) -> dict[str, Any]:
    return {"workspace": "ws-fleet", "prefix": prefix, "data_dir": tmp_path}