"""Redis goes away and comes back: emit() never waits, events spool to disk and are replayed, the in-process
services ride it out, and a client closed during the outage leaves its events to the next one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone import Pheromone
from pheromone.contracts import Payload
from pheromone.contracts.streams import Keys
from pheromone.plumbing.embedded import EmbeddedServer
from pheromone.services.settings import StoreLocation
from pheromone.spool import Spool
from tests.services import helpers as h
from tests.services.conftest import StartRuntime
from tests.support import OpenClient

pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both store backends."""
    param: str = request.param
    return param


def spooled_records(directory: Path) -> int:
    """Records waiting in a spool directory nobody holds (opening adopts its files, closing releases them)."""
    with Spool(directory) as spool:
        return len(spool.read_batch(1_000_000)[0])


def mixed(i: int) -> Payload:
    return (h.execution, h.recovery, h.rate_limit, h.discovery)[i % 4]()  # all three store streams


async def test_producers_and_store_ride_out_a_redis_outage(
    private_server: EmbeddedServer, start_runtime: StartRuntime, open_client: OpenClient, db: StoreLocation,
    prefix: str, tmp_path: Path,
) -> None:
    url = private_server.url
    runtime = await start_runtime(url=url)
    clients = [await open_client(f"job-{i}", url=url, buffer_size=500) for i in range(3)]
    emitted: list[str] = []
    for i in range(300):
        emitted += [c.emit(mixed(i)) for c in clients]
    await asyncio.gather(*(c.flush() for c in clients))
    await h.eventually(lambda: h.ledger_count(db) == len(emitted), what="events before the outage")

    await asyncio.to_thread(private_server.stop)
    # emit() neither raises nor waits on the dead server (its latency is measured in bench/, not asserted).
    during: list[str] = []
    for i in range(3_000):
        for c in clients:
            during.append(c.emit(mixed(i)))
        if i % 100 == 0:
            await asyncio.sleep(0)  # let the flushers try, fail and spool
    assert len(set(during)) == 9_000
    await h.eventually(lambda: all(c.spool_bytes > 0 for c in clients), what="events spooled to disk")
    assert all(c.stats.send_failures > 0 for c in clients)
    assert all(list((tmp_path / "spool" / "ws-t" / f"job-{i}").glob("spool-*.jsonl")) for i in range(3))
    assert not set(during) & set(h.ledger_ids(db))

    await asyncio.to_thread(private_server.start)  # same port, same AOF
    after = [c.emit(mixed(i)) for i in range(100) for c in clients]
    everything = emitted + during + after
    await asyncio.gather(*(c.flush(timeout=60) for c in clients))
    assert all(c.spool_bytes == 0 and c.stats.replayed > 0 for c in clients)
    await h.eventually(lambda: h.ledger_count(db) >= len(everything), timeout=60, what="every event stored")

    ids = h.ledger_ids(db)
    assert len(ids) == len(everything) and set(ids) == set(everything)
    assert all(not task.done() for task in runtime._tasks), "a service loop ended during the outage"
    r = aioredis.Redis.from_url(url)
    try:
        await h.eventually(lambda: _none_pending(r, prefix), what="nothing pending")
        assert await h.dead_letters(r, prefix) == []
    finally:
        await r.aclose()


async def _none_pending(r: aioredis.Redis, prefix: str) -> bool:
    return await h.all_pending(r, prefix) == 0


async def test_client_closed_during_an_outage_leaves_its_events_to_the_next_client(
    private_server: EmbeddedServer, start_runtime: StartRuntime, db: StoreLocation, prefix: str, tmp_path: Path
) -> None:
    url = private_server.url
    await start_runtime(url=url)
    spool_dir = tmp_path / "spool" / "job-a"

    def client() -> Pheromone:
        return Pheromone(url, workspace="ws-a", job="job-a", prefix=prefix, data_dir=tmp_path,
                         spool_dir=spool_dir, close_timeout=0.5)

    first = client()
    await first.open()
    sent = [first.emit(h.execution()) for _ in range(50)]
    await first.flush()
    await asyncio.to_thread(private_server.stop)
    stranded = [first.emit(mixed(i)) for i in range(400)]
    await first.close()  # cannot deliver: what it could not send stays on disk
    assert spooled_records(spool_dir) == len(stranded)

    await asyncio.to_thread(private_server.start)
    await h.eventually(lambda: set(h.ledger_ids(db)) >= set(sent), what="events sent before the outage")
    assert not set(stranded) & set(h.ledger_ids(db))

    second = client()  # a new process's client on the same spool directory
    await second.open()
    try:
        await second.flush(timeout=30)
        assert second.stats.replayed == len(stranded)
    finally:
        await second.close()
    await h.eventually(lambda: h.ledger_count(db) >= len(sent) + len(stranded), what="stranded events stored")
    ids = h.ledger_ids(db)
    assert len(ids) == len(sent) + len(stranded) and set(ids) == set(sent + stranded)
    assert spooled_records(spool_dir) == 0
    keys = Keys(prefix)
    r = aioredis.Redis.from_url(url)
    try:
        entries = [await r.xlen(s) for s in (keys.ingest, keys.ratelimits, keys.discoveries)]
        assert sum(entries) >= len(ids)  # replayed into the streams the restarted server kept
    finally:
        await r.aclose()
