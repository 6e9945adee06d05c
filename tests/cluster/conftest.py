"""Fixtures for the Redis Cluster tests: one three-node cluster per session, and the shared fixtures
(`redis_url`, `redis`, `prefix`) pointed at it, so the client and service fixtures of tests/conftest.py run
against the cluster unchanged."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from uuid import uuid4

import pytest
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from pheromone.plumbing import connection
from tests.cluster.nodes import LocalCluster, slot_of


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture
def redis_url(cluster: LocalCluster) -> str:
    return cluster.url


@pytest.fixture
def prefix(cluster: LocalCluster) -> str:
    """A prefix no other test uses, whose slot the seed node does not serve: every test follows a MOVED."""
    while True:
        candidate = f"t{uuid4().hex[:10]}"
        if cluster.owner(slot_of(candidate)) is not cluster.nodes[0]:
            return candidate


@pytest.fixture(name="redis")
async def routed_client(redis_url: str) -> AsyncIterator[Redis]:
    """A client as pheromone makes one for a cluster URL: it talks to the node serving the test's slot."""
    client = connection.redis_client(redis_url)
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def cluster_client(cluster: LocalCluster) -> AsyncIterator[RedisCluster]:
    """redis-py's own cluster client, to look at the cluster independently of pheromone's routing."""
    host, port = cluster.nodes[0].address
    client = RedisCluster(host=host, port=port)
    try:
        yield client
    finally:
        await client.aclose()
