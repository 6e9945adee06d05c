"""Handler failures: a store that is unavailable for a while keeps entries pending (never dead-lettered), and
an event whose projection keeps failing is retried alone and dead-lettered after `max_deliveries`."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import services.store.db
from contracts import Envelope, pattern_id
from contracts.streams import GROUP_STORE, Keys
from services.store import projections, schema
from tests.services import helpers as h
from tests.services.conftest import OpenClient, StartRuntime

NAME = "retry with jitter"


async def max_deliveries_seen(r: aioredis.Redis, stream: str) -> int:
    rows = await r.xpending_range(stream, GROUP_STORE, min="-", max="+", count=1000)
    return max((int(row["times_delivered"]) for row in rows), default=0)


async def test_locked_store_keeps_entries_pending_and_stores_each_once_when_back(
    monkeypatch: pytest.MonkeyPatch, start_runtime: StartRuntime, open_client: OpenClient, db: Path,
    prefix: str, redis: aioredis.Redis,
) -> None:
    # The store waits 50 ms for a lock instead of 30 s, so a held lock fails batches quickly (StoreBusyError).
    monkeypatch.setattr(services.store.db, "connect", functools.partial(schema.connect, timeout_s=0.05))
    max_deliveries = 2
    await start_runtime(max_deliveries=max_deliveries)
    ingest = Keys(prefix).ingest
    client = await open_client("job-lock")
    emitted = [client.emit(h.observed(NAME))] + [client.emit(h.execution()) for _ in range(50)]
    await client.flush()
    await h.eventually(lambda: h.ledger_count(db) == len(emitted), what="events before the lock")

    locker = sqlite3.connect(db, isolation_level=None, timeout=10)
    try:
        locker.execute("BEGIN EXCLUSIVE")  # another process holding the write lock
        during = [client.emit(h.applied(NAME, success=True)) for _ in range(3)]
        during += [client.emit(h.execution()) for _ in range(5)]
        await client.flush()
        # The retrier keeps claiming them, past max_deliveries: a busy store is not held against an entry.
        await h.eventually(lambda: _over(redis, ingest, max_deliveries + 2), timeout=20,
                           what="entries redelivered past max_deliveries while locked")
        assert await h.pending(redis, ingest) == len(during)
        assert not set(during) & set(h.ledger_ids(db))
        assert await h.dead_letters(redis, prefix) == []
    finally:
        locker.execute("ROLLBACK")
        locker.close()

    after = [client.emit(h.execution()) for _ in range(50)]
    await client.flush()
    everything = emitted + during + after
    await h.eventually(lambda: set(h.ledger_ids(db)) == set(everything), what="every event stored")
    await h.eventually(lambda: h.group_caught_up(redis, ingest), what="nothing pending")
    assert h.ledger_count(db) == len(everything)
    assert h.count(db, "executions") == len(everything) - 4
    assert h.query(db, "SELECT led_to_success_count FROM patterns WHERE id = ?",
                   pattern_id("retry_pattern", NAME)) == [(3,)]
    assert await h.dead_letters(redis, prefix) == []


async def _over(r: aioredis.Redis, stream: str, deliveries: int) -> bool:
    return await max_deliveries_seen(r, stream) >= deliveries


async def test_event_whose_projection_raises_is_retried_alone_then_dead_lettered(
    monkeypatch: pytest.MonkeyPatch, start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    poisoned = h.execution(id=f"exec-poison-{prefix}")
    original = projections.PROJECTIONS["execution"]
    calls: list[str] = []

    def exploding(conn: sqlite3.Connection, env: Envelope, *rest: Any) -> None:
        if env.payload.id == poisoned.id:  # type: ignore[union-attr]
            calls.append(env.event_id)
            raise RuntimeError(f"projection exploded on {poisoned.id}")
        original(conn, env, *rest)

    monkeypatch.setitem(projections.PROJECTIONS, "execution", exploding)
    max_deliveries = 3
    await start_runtime(max_deliveries=max_deliveries)
    ingest = Keys(prefix).ingest

    bad = h.envelope(poisoned)
    batch = [h.envelope(h.observed(NAME))] + [h.envelope(h.execution()) for _ in range(8)]
    batch += [h.envelope(h.applied(NAME, success=True)), bad] + [h.envelope(h.execution()) for _ in range(8)]
    ids = await h.xadd_raw(redis, ingest, [h.entry(e) for e in batch])
    bad_entry = ids[batch.index(bad)]

    await h.eventually(lambda: h.dead_letters(redis, prefix), what="the poisoned event dead-lettered")
    await h.eventually(lambda: h.group_caught_up(redis, ingest), what="nothing pending")

    good = {e.event_id for e in batch} - {bad.event_id}
    assert set(h.ledger_ids(db)) == good  # the others in its batch were stored, once
    assert h.count(db, "executions") == 16
    assert h.query(db, "SELECT led_to_success_count FROM patterns WHERE id = ?",
                   pattern_id("retry_pattern", NAME)) == [(1,)]
    letters = await h.dead_letters(redis, prefix)
    assert len(letters) == 1
    letter = letters[0][1]
    assert letter[b"id"] == bad_entry
    assert letter[b"error"].decode() == f"RuntimeError: projection exploded on {poisoned.id}"
    assert int(letter[b"deliveries"]) >= max_deliveries
    assert letter[b"f:e"].decode() == bad.model_dump_json()
    assert len(calls) >= max_deliveries  # tried with its batch first, then alone by the retrier
