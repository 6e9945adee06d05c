"""Logs: one line per lifecycle event, nothing per message at INFO. Processing many events in many batches logs
no more lines than processing a few; losing Redis is one line however many loops notice, and so is getting it
back; a batch with poison entries is one summary line."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone.contracts import Envelope, ExecutionRecord
from pheromone.contracts.streams import FIELD, GROUP_STORE, Keys
from pheromone.plumbing.embedded import EmbeddedServer
from pheromone.services.consumer import GroupWorker
from tests.ops.conftest import StartRuntime
from tests.support import eventually


def line(n: int) -> str:
    done = datetime.now(UTC)
    return Envelope(workspace="ws-l", job="job-l", payload=ExecutionRecord(
        workspace_hash="ws-l", job_hash="job-l", sheet_num=n, started_at=done - timedelta(seconds=1),
        completed_at=done, duration_seconds=1.0, status="completed", retry_count=0, success_without_retry=True,
        validation_pass_rate=1.0, confidence_score=0.9, model="claude-sonnet",
    )).model_dump_json()


def ledger(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])


async def send(r: aioredis.Redis, stream: str, values: list[str | bytes]) -> None:
    async with r.pipeline(transaction=False) as pipe:
        for v in values:
            pipe.xadd(stream, {FIELD: v})
        await pipe.execute()


def info_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.INFO]


async def test_processing_n_events_logs_o1_lines_at_info(
    start_runtime: StartRuntime, redis: aioredis.Redis, prefix: str, tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    keys, db = Keys(prefix), tmp_path / "store.db"
    await start_runtime(["store", "entropy", "query"], batch_size=10)
    assert any("services started" in m for m in info_lines(caplog))  # lifecycle events are logged

    counts = []
    total = 0
    for n in (20, 600):  # 2 batches, then at least 60
        caplog.clear()
        await send(redis, keys.ingest, [line(total + i) for i in range(n)])
        total += n
        await eventually(lambda: ledger(db) == total, what=f"{total} events applied")  # noqa: B023
        counts.append(len(info_lines(caplog)))
    assert counts[1] <= counts[0] <= 2, counts  # not per event, nor per batch

    caplog.clear()
    await send(redis, keys.ingest, [b"junk 1", b"junk 2", b"junk 3"])

    async def all_dead() -> bool:
        return await redis.xlen(keys.dead) == 3

    await eventually(all_dead, what="three dead letters")
    summaries = [m for m in info_lines(caplog) if "dead-lettered" in m]
    assert 1 <= len(summaries) <= 3 and sum(int(m.split("dead-lettered ")[1].split()[0]) for m in summaries) == 3


async def test_redis_lost_and_regained_are_one_line_each(
    start_runtime: StartRuntime, private_server: EmbeddedServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the loops' own retries are DEBUG lines: count them too
    runtime = await start_runtime(["store", "coordinator"], url=private_server.url, heartbeat_ttl_s=2.0)
    caplog.clear()
    private_server.kill()

    def lost() -> list[str]:
        return [m for m in info_lines(caplog) if "pheromone.services.runtime: redis lost" in m]

    await eventually(lost, what="redis lost logged")
    # Every upkeep loop (retriers, watchdog, trimmer) keeps failing meanwhile; wait for several rounds of them.
    assert runtime.metrics.registry.get_sample_value("pheromone_redis_up") == 0  # the gauge says so too
    await eventually(lambda: len([r for r in caplog.records if "redis unavailable" in r.getMessage()]) >= 10,
                     what="loops kept failing")
    private_server.start()  # same port, same AOF
    await eventually(lambda: [m for m in info_lines(caplog) if "pheromone.services.runtime: redis regained" in m],
                     what="redis regained logged")
    assert len(lost()) == 1
    assert len([m for m in info_lines(caplog) if "redis regained" in m]) == 1
    assert runtime.metrics.registry.get_sample_value("pheromone_redis_up") == 1
    # The subscribers' own failed reads (FastStream logs each with its traceback) are not lines of their own:
    # the outage and the recovery are the two lines above, and nothing else is logged at INFO or above.
    assert [r.getMessage() for r in caplog.records if r.exc_info] == []
    # The test's own server logs under pheromone.plumbing.embedded.
    service_lines = [m for m in info_lines(caplog) if not m.startswith("pheromone.plumbing.embedded")]
    # The store's writer lease expired during the outage: taking it back is a lifecycle line of its own, once.
    retaken = [m for m in service_lines if m.startswith("pheromone.services.writer") and "writer lease taken" in m]
    assert len(retaken) <= 1, retaken
    service_lines = [m for m in service_lines if m not in retaken]
    assert service_lines == [*lost(), *[m for m in info_lines(caplog) if "redis regained" in m]]


async def test_a_batch_whose_ack_meets_a_lost_redis_is_not_a_warning_of_its_own(
    private_server: EmbeddedServer, prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis dies between a batch's commit and its ack: the entries stay pending (the retrier takes them
    later) and the loss is the runtime's one "redis lost" line, not a warning per batch in flight."""
    caplog.set_level(logging.DEBUG, logger="pheromone.services.consumer")
    keys = Keys(prefix)
    r = aioredis.Redis.from_url(private_server.url)

    async def handler(events: Sequence[tuple[Envelope, bytes]]) -> list[tuple[int, str]]:
        await asyncio.to_thread(private_server.kill)  # after the "commit", before the ack
        return []

    worker = GroupWorker(service="store", stream=keys.ingest, group=GROUP_STORE, handler=handler, redis=r,
                         dead_stream=keys.dead, consumer="c", records_poison=True)
    try:
        await worker.on_batch([(b"1-1", {FIELD.encode(): line(1).encode()})])
        await worker.drain()
    finally:
        await r.aclose()
    assert worker.stats.applied == 0  # nothing was acked
    assert [rec.getMessage() for rec in caplog.records if rec.levelno >= logging.WARNING] == []
    assert [rec.getMessage() for rec in caplog.records if "batch left pending" in rec.getMessage()]
