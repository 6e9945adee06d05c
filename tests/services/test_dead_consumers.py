"""Dead consumers are deleted from their groups (services.reaper): a consumer that holds nothing, has no live
heartbeat and has been idle `consumer_expiry_s`; one that holds entries only once they are claimed; never a
live one. A clean stop deletes the runtime's own consumers."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from pheromone.contracts.streams import GROUP_STORE, Keys
from pheromone.services import transport
from tests.services import helpers as h
from tests.services.conftest import StartRuntime


async def consumers(r: aioredis.Redis, stream: str, group: str = GROUP_STORE) -> dict[str, int]:
    """Each consumer's name and pending count."""
    return {row["name"].decode(): int(row["pending"]) for row in await r.xinfo_consumers(stream, group)}


async def test_dead_consumers_are_deleted_live_ones_kept_and_a_clean_stop_leaves_none(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    keys = Keys(prefix)
    ingest = keys.ingest
    await transport.ensure_group(redis, ingest, GROUP_STORE)
    # A store that stopped without deleting itself, a consumer nobody of ours named, a live store on another
    # host that is idle but beating (each made by reading an empty stream), and a store killed while it held
    # two entries.
    for name in ("store-deadhost-2", "someone-else", "store-livehost-3"):
        assert await redis.xreadgroup(GROUP_STORE, name, {ingest: ">"}, count=1) == []
    await redis.set(keys.heartbeat("store:livehost-3"), "{}", ex=60)
    events = [h.envelope(h.execution()) for _ in range(3)]
    await h.xadd_raw(redis, ingest, [h.entry(e) for e in events])
    await redis.xreadgroup(GROUP_STORE, "store-deadhost-1", {ingest: ">"}, count=2)
    assert (await consumers(redis, ingest)).keys() == {"store-deadhost-1", "store-deadhost-2", "someone-else",
                                                       "store-livehost-3"}

    runtime = await start_runtime(consumer="me", consumer_expiry_s=0.3, trim_interval_s=0.1)
    await h.eventually(lambda: h.ledger_count(db) == 3, what="the dead consumer's entries claimed and stored")

    async def only_the_living() -> bool:
        return (await consumers(redis, ingest)).keys() == {"store-me", "store-livehost-3"}

    await h.eventually(only_the_living, what="dead consumers deleted")
    assert (await consumers(redis, ingest))["store-me"] == 0

    await runtime.stop()
    assert await consumers(redis, ingest) == {"store-livehost-3": 0}
    for stream in (keys.ratelimits, keys.discoveries):
        assert await consumers(redis, stream) == {}
