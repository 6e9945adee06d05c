"""Shared fixtures: one private Redis-compatible server per session, a key prefix per test.

Tests share the session server and stay apart by key prefix (as FastStream's tests use a stream name per
test); a test that kills, restarts or stops a server takes `private_server` instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from pheromone.plumbing.embedded import EmbeddedServer


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """The session's server: in memory only (no AOF), started once, stopped at the end."""
    with EmbeddedServer(tmp_path_factory.mktemp("redis"), persist=False) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedServer) -> str:
    return redis_server.url


@pytest.fixture
def prefix() -> str:
    """A key/stream prefix no other test uses."""
    return f"t{uuid4().hex[:10]}"


@pytest.fixture
def private_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A fresh persistent server (AOF on) of this test's own, to kill, restart or stop at will."""
    server = EmbeddedServer(tmp_path / "redis", persist=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(name="redis")
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
