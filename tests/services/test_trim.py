"""Trimming by age: old, finished entries go; an entry some group has not read or not acked never does; the
dead stream is trimmed by age alone; the runtime's trimmer does it on its interval.

Old entries are written with explicit ids a minute in the past: "older than the retention" needs no waiting.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pheromone.contracts.streams import FIELD, Keys
from pheromone.services import transport
from tests.services import helpers as h
from tests.services.conftest import StartRuntime

RETENTION_S = 30.0


def old_ids(n: int, start: int = 0) -> list[str]:
    """Ids of entries written a minute ago: older than RETENTION_S."""
    ms = int(time.time() * 1000) - 60_000
    return [f"{ms}-{i}" for i in range(start, start + n)]


async def add(r: aioredis.Redis, stream: str, ids: list[str] | None = None, fresh: int = 0) -> list[bytes]:
    out = [await r.xadd(stream, {FIELD: b"x"}, id=i) for i in ids or []]
    return out + [await r.xadd(stream, {FIELD: b"x"}) for _ in range(fresh)]


async def read(r: aioredis.Redis, stream: str, group: str, count: int) -> list[bytes]:
    got = await r.xreadgroup(group, f"{group}-c", {stream: ">"}, count=count)
    return [entry_id for entry_id, _ in got[0][1]] if got else []


async def remaining(r: aioredis.Redis, stream: str) -> list[bytes]:
    return [entry_id for entry_id, _ in await r.xrange(stream)]


async def test_acked_old_entries_are_removed_and_recent_ones_kept(redis: aioredis.Redis, prefix: str) -> None:
    stream = f"{{{prefix}}}:s"
    ids = await add(redis, stream, old_ids(10), fresh=3)
    await transport.ensure_group(redis, stream, "g")
    await redis.xack(stream, "g", *await read(redis, stream, "g", 100))

    assert await transport.trim(redis, stream, RETENTION_S) == 10
    assert await remaining(redis, stream) == ids[10:]
    assert await transport.trim(redis, stream, RETENTION_S) == 0


async def test_entries_pending_in_a_group_are_kept(redis: aioredis.Redis, prefix: str) -> None:
    stream = f"{{{prefix}}}:s"
    ids = await add(redis, stream, old_ids(10))
    await transport.ensure_group(redis, stream, "g")
    delivered = await read(redis, stream, "g", 100)
    await redis.xack(stream, "g", *delivered[:4])  # 4..9 read but not acked: a consumer still on them

    assert await transport.trim(redis, stream, RETENTION_S) == 4
    assert await remaining(redis, stream) == ids[4:]
    await redis.xack(stream, "g", *delivered[4:])
    assert await transport.trim(redis, stream, RETENTION_S) == 6
    assert await redis.xlen(stream) == 0


async def test_entries_a_lagging_group_has_not_read_are_kept(redis: aioredis.Redis, prefix: str) -> None:
    stream = f"{{{prefix}}}:s"
    ids = await add(redis, stream, old_ids(10))
    for group in ("fast", "slow", "idle"):
        await transport.ensure_group(redis, stream, group)
    await redis.xack(stream, "fast", *await read(redis, stream, "fast", 100))

    # "idle" has read nothing: not one entry may go.
    assert await transport.trim(redis, stream, RETENTION_S) == 0
    assert await remaining(redis, stream) == ids
    await redis.xgroup_destroy(stream, "idle")

    # "slow" has read and acked three: only those go.
    await redis.xack(stream, "slow", *await read(redis, stream, "slow", 3))
    assert await transport.trim(redis, stream, RETENTION_S) == 3
    assert await remaining(redis, stream) == ids[3:]

    # "slow" read the rest but acked none: still kept.
    rest = await read(redis, stream, "slow", 100)
    assert await transport.trim(redis, stream, RETENTION_S) == 0
    await redis.xack(stream, "slow", *rest)
    assert await transport.trim(redis, stream, RETENTION_S) == 7


async def test_dead_stream_is_trimmed_by_age_alone(redis: aioredis.Redis, prefix: str) -> None:
    dead = Keys(prefix).dead
    ids = await add(redis, dead, old_ids(5), fresh=2)
    assert await transport.trim(redis, dead, RETENTION_S, respect_groups=False) == 5
    assert await remaining(redis, dead) == ids[5:]


async def test_trimming_a_missing_stream_removes_nothing(redis: aioredis.Redis, prefix: str) -> None:
    assert await transport.trim(redis, f"{{{prefix}}}:nothing", RETENTION_S) == 0
    assert await transport.trim(redis, f"{{{prefix}}}:nothing", RETENTION_S, respect_groups=False) == 0


async def test_runtime_trimmer_runs_on_its_interval_and_respects_lagging_groups(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    keys = Keys(prefix)
    events = [h.envelope(h.execution()) for _ in range(20)]
    for entry_id, env in zip(old_ids(20), events, strict=True):
        await redis.xadd(keys.ingest, h.entry(env), id=entry_id)  # type: ignore[arg-type]
    await transport.ensure_group(redis, keys.ingest, "lagging")  # a service that has read nothing yet
    await add(redis, keys.dead, old_ids(5))

    runtime = await start_runtime(trim_interval_s=0.1, ingest_retention_s=RETENTION_S,
                                  dead_retention_s=RETENTION_S)
    await h.eventually(lambda: h.ledger_count(db) == 20, what="old events stored")
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), what="store group acked them")
    await h.eventually(lambda: _xlen_is(redis, keys.dead, 0), what="old dead letters trimmed")

    # Another old dead letter, trimmed by a pass that starts after the store acked every ingest entry: by then
    # only the lagging group can be keeping the ingest entries.
    await add(redis, keys.dead, old_ids(1, start=100))
    await h.eventually(lambda: _xlen_is(redis, keys.dead, 0), what="a later trimmer pass")
    assert await redis.xlen(keys.ingest) == 20

    fresh = h.envelope(h.execution())
    await redis.xadd(keys.ingest, h.entry(fresh))  # type: ignore[arg-type]
    await h.eventually(lambda: h.ledger_count(db) == 21, what="fresh event stored")
    await redis.xgroup_destroy(keys.ingest, "lagging")
    await h.eventually(lambda: _xlen_is(redis, keys.ingest, 1), what="old ingest entries trimmed")
    assert [env.decode() for _, f in await redis.xrange(keys.ingest) for env in [f[FIELD.encode()]]] == [
        fresh.model_dump_json()]
    assert all(not task.done() for task in runtime._tasks), "an upkeep loop ended"


async def _xlen_is(r: aioredis.Redis, stream: str, n: int) -> bool:
    return int(await r.xlen(stream)) == n


async def test_entries_acked_while_the_trimmer_looks_do_not_break_it(
    redis: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XINFO GROUPS says entries are pending; by the XPENDING that follows, their consumer acked them all."""
    stream = f"{{{prefix}}}:s"
    await add(redis, stream, old_ids(10))
    await transport.ensure_group(redis, stream, "g")
    delivered = await read(redis, stream, "g", 100)
    real_xpending = redis.xpending

    async def acked_meanwhile(name: str, groupname: str) -> Any:
        await redis.xack(stream, "g", *delivered)
        return await real_xpending(name, groupname)

    monkeypatch.setattr(redis, "xpending", acked_meanwhile)
    assert await transport.trim(redis, stream, RETENTION_S) == 10
