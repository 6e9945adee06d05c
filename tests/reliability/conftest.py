"""Fixtures for the reliability tests: a server of the test's own, service processes that are always killed,
and producers that are always closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone.plumbing.embedded import EmbeddedServer
from tests.reliability.fleet import Producer, ServiceFleet


@pytest.fixture
def aof_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A persistent server of this test's own with `appendfsync always`: it may be SIGKILLed and restarted
    and still hold every write it acknowledged (see pheromone.plumbing.embedded.APPENDFSYNC for why not everysec)."""
    server = EmbeddedServer(tmp_path / "redis", persist=True, fsync="always")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def server_redis(aof_server: EmbeddedServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(aof_server.url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def fleet(tmp_path: Path, aof_server: EmbeddedServer, prefix: str) -> Iterator[ServiceFleet]:
    services = ServiceFleet(tmp_path / "data", aof_server.url, prefix)
    services.data_dir.mkdir()
    try:
        yield services
    finally:
        services.cleanup()


@pytest.fixture
async def producers() -> AsyncIterator[list[Producer]]:
    """A list the test fills with its producers; each client is closed at teardown (a no-op if it was)."""
    opened: list[Producer] = []
    try:
        yield opened
    finally:
        for p in opened:
            await p.client.close()
