"""The server loses every key under running services (FLUSHALL): the watchdog recreates the groups, the
subscribers FastStream stopped on NOGROUP are restarted, and events emitted afterwards are stored."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone.contracts.streams import GROUP_STORE, Keys
from pheromone.plumbing.embedded import EmbeddedServer
from tests.services import helpers as h
from tests.services.conftest import StartRuntime
from tests.support import OpenClient


async def groups_of(r: aioredis.Redis, stream: str) -> set[str]:
    try:
        return {g["name"].decode() for g in await r.xinfo_groups(stream)}
    except aioredis.ResponseError:  # no such key
        return set()


async def test_flushall_under_a_running_runtime(
    private_server: EmbeddedServer, start_runtime: StartRuntime, open_client: OpenClient, db: Path,
    prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    # A private server: FLUSHALL on the session's server would wipe other tests' keys.
    caplog.set_level(logging.WARNING, logger="pheromone.services.runtime")
    url = private_server.url
    keys = Keys(prefix)
    streams = (keys.ingest, keys.ratelimits, keys.discoveries)
    runtime = await start_runtime(url=url)
    client = await open_client("job-flush", url=url)
    r = aioredis.Redis.from_url(url)
    try:
        before = [client.emit(h.execution()) for _ in range(100)] + [client.emit(h.rate_limit())]
        await client.flush()
        await h.eventually(lambda: set(h.ledger_ids(db)) == set(before), what="events before the flush")

        await r.flushall()
        assert await r.exists(*streams) == 0

        async def groups_back() -> bool:
            return all([GROUP_STORE in await groups_of(r, s) for s in streams])

        await h.eventually(groups_back, what="store groups recreated by the watchdog")
        # Enough rounds of reads for every subscriber to have hit NOGROUP and been restarted.
        after: list[str] = []
        for i in range(5):
            after += [client.emit(h.execution()) for _ in range(20)] + [client.emit(h.discovery())]
            await client.flush()
            want = set(after)
            await h.eventually(lambda w=want: set(h.ledger_ids(db)) >= w, what=f"round {i} after the flush")

        everything = before + after
        await h.eventually(lambda: h.ledger_count(db) == len(everything), what="exact count")
        assert set(h.ledger_ids(db)) == set(everything)
        for stream in streams:
            await h.eventually(lambda s=stream: h.group_caught_up(r, s), what=f"{stream} caught up")
        assert all(not task.done() for task in runtime._tasks), "a service loop ended"
        assert all(sub.running for _, sub in runtime._subscribers), "a subscriber is still stopped"
        assert await h.dead_letters(r, prefix) == []
        # The path under test was taken: each subscriber blocked in XREADGROUP got NOGROUP, FastStream stopped
        # it, and the watchdog started it again.
        restarted = {rec.getMessage() for rec in caplog.records if rec.name == "pheromone.services.runtime"}
        assert {f"restarting subscriber {GROUP_STORE} on {s}" for s in streams} <= restarted, restarted
    finally:
        await r.aclose()
