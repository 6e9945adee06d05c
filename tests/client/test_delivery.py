"""Delivery: every emitted event reaches its stream exactly once and in order, through flush, close, a Redis
outage and a full buffer."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from redis.asyncio import Redis

from pheromone import ClientClosedError, FlushTimeout
from pheromone.contracts import PatternObserved
from pheromone.contracts.streams import Keys
from pheromone.plumbing.embedded import EmbeddedServer
from tests.client.helpers import eventually, listing, read_envelopes
from tests.support import OpenClient


def observed(name: str) -> PatternObserved:
    return PatternObserved(pattern_type="delivery", pattern_name=name)


async def test_concurrent_emitters_each_see_their_events_once_and_in_order(
    open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    client = await open_client(batch_size=16)  # many small batches interleave with the emitters
    tasks, per_task = 50, 40

    async def emitter(task: int) -> list[str]:
        ids = []
        for i in range(per_task):
            ids.append(client.emit(observed(f"{task}:{i}"), correlation_id=f"task-{task}"))
            if i % 3 == 0:
                await asyncio.sleep(0)  # let the other emitters and the sender run in between
        return ids

    emitted = await asyncio.gather(*(emitter(t) for t in range(tasks)))
    await client.flush()

    envelopes = await read_envelopes(redis, Keys(prefix).ingest)
    ids = [e.event_id for e in envelopes]
    assert len(ids) == len(set(ids)) == tasks * per_task
    assert set(ids) == {i for task_ids in emitted for i in task_ids}
    for task, task_ids in enumerate(emitted):
        mine = [e for e in envelopes if e.correlation_id == f"task-{task}"]
        assert [e.event_id for e in mine] == task_ids
        names = [e.payload.pattern_name for e in mine if isinstance(e.payload, PatternObserved)]
        assert names == [f"{task}:{i}" for i in range(per_task)]
        assert {(e.workspace, e.job) for e in mine} == {("ws-t", "job-t")}

    s = client.stats
    assert (s.emitted, s.sent, s.spooled, s.replayed, s.send_failures) == (2000, 2000, 0, 0, 0)
    assert client.backlog == 0 and client.spool_bytes == 0


async def test_flush_returns_only_when_everything_is_in_the_stream(
    open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    client = await open_client(batch_size=7)
    ids = [client.emit(observed(str(i))) for i in range(100)]
    await client.flush()
    assert await redis.xlen(Keys(prefix).ingest) == 100  # no polling: flush() itself promised this
    assert [e.event_id for e in await read_envelopes(redis, Keys(prefix).ingest)] == ids
    await client.flush()  # nothing pending: returns at once, sends nothing again
    assert await redis.xlen(Keys(prefix).ingest) == 100


async def test_close_drains_then_refuses_more(
    open_client: OpenClient, redis: Redis, prefix: str, spool_dir: Path
) -> None:
    client = await open_client(batch_size=50)
    ids = [client.emit(observed(str(i))) for i in range(500)]
    await client.close()  # no flush() first: closing must send what was emitted
    assert [e.event_id for e in await read_envelopes(redis, Keys(prefix).ingest)] == ids
    assert client.stats.sent == 500
    assert listing(spool_dir) == []  # nothing left behind
    with pytest.raises(ClientClosedError):
        client.emit(observed("late"))


async def test_redis_down_emit_keeps_working_events_spool_and_arrive_once_after_restart(
    open_client: OpenClient, private_server: EmbeddedServer, prefix: str
) -> None:
    client = await open_client(url=private_server.url, batch_size=25)
    private_server.stop()

    ids = [client.emit(observed(str(i))) for i in range(60)]  # never raises, Redis or not
    with pytest.raises(FlushTimeout, match="not yet sent"):
        await client.flush(timeout=0.2)

    async def spooled_after_a_failed_send() -> bool:
        return client.stats.send_failures > 0 and client.backlog == 0 and client.spool_bytes > 0

    await eventually(spooled_after_a_failed_send, what="the failed send moved the buffer to the spool")
    ids += [client.emit(observed(str(i))) for i in range(60, 100)]  # emits after the failure too
    await eventually(spooled_after_a_failed_send, what="later emits spooled after the next failed send")
    with pytest.raises(FlushTimeout):
        await client.flush(timeout=0.05)

    private_server.start()
    await client.flush(timeout=15)

    redis = Redis.from_url(private_server.url)
    try:
        assert await redis.xlen(Keys(prefix).ingest) == 100
        assert [e.event_id for e in await read_envelopes(redis, Keys(prefix).ingest)] == ids
    finally:
        await redis.aclose()
    stats = client.stats
    assert (stats.emitted, stats.spooled, stats.replayed, stats.sent) == (100, 100, 100, 0)
    assert client.backlog == 0 and client.spool_bytes == 0


async def test_a_full_buffer_spills_to_the_spool_and_loses_nothing(
    open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    client = await open_client(buffer_size=10, batch_size=8)
    ids: list[str] = []
    for chunk in range(30):
        ids += [client.emit(observed(f"{chunk}:{i}")) for i in range(37)]  # 37 > buffer_size: spills
        assert client.backlog < 10  # the buffer never holds buffer_size events after emit() returns
        await asyncio.sleep(0)  # let the sender send some while later chunks overflow
    await client.flush()

    assert [e.event_id for e in await read_envelopes(redis, Keys(prefix).ingest)] == ids
    stats = client.stats
    assert stats.spooled > 0  # the spill path really ran
    assert stats.emitted == 1110 and stats.sent + stats.replayed == 1110 and stats.replayed == stats.spooled
    assert client.spool_bytes == 0
