"""Shutting down mid-flight: a client closed while its sends are in flight, and a runtime stopped while it is
applying batches, both return promptly, and nothing they were handling is lost.

Both used to hang now and then: Python 3.11's asyncio.wait_for (redis-py's socket timeouts) can swallow a
cancellation (bpo-42130), and a task that was cancelled once carried on.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable
from pathlib import Path

import redis.asyncio as aioredis

from pheromone import Pheromone
from pheromone.contracts.streams import Keys
from tests.services import helpers as h
from tests.services.conftest import StartRuntime

DEADLINE_S = 10.0


async def returns_promptly(call: Awaitable[None], what: str) -> None:
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait([task], timeout=DEADLINE_S)
    assert done, f"{what} did not return within {DEADLINE_S:g}s"
    task.result()


async def test_clients_closed_while_sending_return_and_lose_nothing(
    start_runtime: StartRuntime, redis_url: str, db: Path, prefix: str, tmp_path: Path, redis: aioredis.Redis
) -> None:
    await start_runtime()
    spool_dir = tmp_path / "spool" / "job-close"
    rng = random.Random(3)
    emitted: list[str] = []

    def client(close_timeout: float) -> Pheromone:
        return Pheromone(redis_url, workspace="ws-c", job="job-close", prefix=prefix, data_dir=tmp_path,
                         spool_dir=spool_dir, batch_size=50, close_timeout=close_timeout)

    for i in range(15):
        c = client(close_timeout=rng.uniform(0.0, 0.03))  # the flush gives up while batches are being sent
        await c.open()
        emitted += [c.emit(h.execution()) for _ in range(600)]
        await returns_promptly(c.close(), f"close() #{i}")

    last = client(close_timeout=5.0)  # picks up whatever the closed clients left in the spool
    await last.open()
    await last.flush(timeout=30)
    await returns_promptly(last.close(), "the last close()")
    await h.eventually(lambda: h.ledger_count(db) >= len(emitted), timeout=30, what="every event stored")
    await h.eventually(lambda: h.group_caught_up(redis, Keys(prefix).ingest), what="nothing pending")
    ids = h.ledger_ids(db)
    assert len(ids) == len(emitted) and set(ids) == set(emitted)


async def test_runtime_stopped_while_applying_returns_and_a_restart_finishes(
    start_runtime: StartRuntime, redis_url: str, db: Path, prefix: str, tmp_path: Path, redis: aioredis.Redis
) -> None:
    emitted: list[str] = []
    async with Pheromone(redis_url, workspace="ws-s", job="job-stop", prefix=prefix, data_dir=tmp_path,
                         spool_dir=tmp_path / "spool" / "job-stop") as client:
        for i in range(5):
            runtime = await start_runtime(batch_size=100)
            emitted += [client.emit(h.execution()) for _ in range(1_000)]
            await client.flush()
            stored = h.ledger_count(db)
            await h.eventually(lambda s=stored: h.ledger_count(db) > s, what=f"run {i} applying")
            await returns_promptly(runtime.stop(), f"Runtime.stop() #{i}")

    await start_runtime()
    await h.eventually(lambda: h.ledger_count(db) >= len(emitted), timeout=30, what="every event stored")
    await h.eventually(lambda: h.group_caught_up(redis, Keys(prefix).ingest), what="nothing pending")
    ids = h.ledger_ids(db)
    assert len(ids) == len(emitted) and set(ids) == set(emitted)
    assert await h.dead_letters(redis, prefix) == []
