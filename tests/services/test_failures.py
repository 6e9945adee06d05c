"""Handler failures: a store that is unavailable for a while keeps entries pending (never dead-lettered), and
an event whose projection fails is dead-lettered alone, at once, while the rest of its batch is committed."""

from __future__ import annotations

import functools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

import pheromone.services.store.db
from pheromone.contracts import Envelope, pattern_id
from pheromone.contracts.streams import GROUP_STORE, Keys
from pheromone.services.store import projections, schema
from tests.services import helpers as h
from tests.services.conftest import StartRuntime
from tests.support import OpenClient

NAME = "retry with jitter"


async def max_deliveries_seen(r: aioredis.Redis, stream: str) -> int:
    rows = await r.xpending_range(stream, GROUP_STORE, min="-", max="+", count=1000)
    return max((int(row["times_delivered"]) for row in rows), default=0)


async def test_locked_store_keeps_entries_pending_and_stores_each_once_when_back(
    monkeypatch: pytest.MonkeyPatch, start_runtime: StartRuntime, open_client: OpenClient, db: Path,
    prefix: str, redis: aioredis.Redis,
) -> None:
    # The store waits 50 ms for a lock instead of 30 s, so a held lock fails batches quickly (StoreBusyError).
    monkeypatch.setattr(pheromone.services.store.db, "connect", functools.partial(schema.connect, timeout_s=0.05))
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


async def test_event_whose_projection_raises_is_refused_alone_at_once_and_its_batch_committed(
    monkeypatch: pytest.MonkeyPatch, start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    """A valid event whose projection fails (a value SQLite cannot take, a bug) after it has written rows and
    changed the batch's in-memory pattern state: that event alone is dead-lettered on its first delivery,
    and the others of its batch are committed without waiting for the retrier (claim_idle_ms is a minute)."""
    poisoned = h.applied(NAME, success=True, execution_id=f"exec-poison-{prefix}")
    original = projections.PROJECTIONS["pattern_applied"]
    calls: list[str] = []

    def exploding(conn: sqlite3.Connection, env: Envelope, *rest: Any) -> None:
        original(conn, env, *rest)  # writes, and changes the batch's pattern state, before failing
        if env.payload == poisoned:
            calls.append(env.event_id)
            raise OverflowError("Python int too large to convert to SQLite INTEGER")

    monkeypatch.setitem(projections.PROJECTIONS, "pattern_applied", exploding)
    await start_runtime(claim_idle_ms=60_000)
    ingest = Keys(prefix).ingest

    bad = h.envelope(poisoned)
    batch = [h.envelope(h.observed(NAME))] + [h.envelope(h.execution()) for _ in range(8)]
    batch += [h.envelope(h.applied(NAME, success=True)), bad, h.envelope(h.applied(NAME, success=False))]
    batch += [h.envelope(h.execution()) for _ in range(8)]
    ids = await h.xadd_raw(redis, ingest, [h.entry(e) for e in batch])
    bad_entry = ids[batch.index(bad)]

    await h.eventually(lambda: h.group_caught_up(redis, ingest), timeout=10, what="the batch acked or refused")

    good = {e.event_id for e in batch} - {bad.event_id}
    assert set(h.ledger_ids(db)) == good  # the others in its batch were stored, once
    assert h.count(db, "executions") == 16
    assert h.count(db, "pattern_applications") == 2
    assert h.query(db, "SELECT led_to_success_count, led_to_failure_count FROM patterns WHERE id = ?",
                   pattern_id("retry_pattern", NAME)) == [(1, 1)]
    letters = await h.dead_letters(redis, prefix)
    assert len(letters) == 1
    letter = letters[0][1]
    assert letter[b"id"] == bad_entry
    assert letter[b"error"].decode() == (
        "cannot be stored: OverflowError: Python int too large to convert to SQLite INTEGER")
    assert letter[b"deliveries"] == b"1"
    assert letter[b"f:e"].decode() == bad.model_dump_json()
    assert len(calls) == 2  # once in the batch's pass, once in its own savepoint; never by the retrier


@pytest.mark.parametrize("on_loop", [False, True], ids=["writer-thread", "on-loop"])
async def test_batch_with_a_failing_event_leaves_the_state_of_the_batch_without_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, on_loop: bool
) -> None:
    """The isolated pass (savepoint per event, pattern state written back per event) reaches exactly the state
    the fast pass reaches on the same batch without the failing event."""
    other = "jitter without retry"
    events = [h.envelope(h.observed(NAME)), h.envelope(h.observed(other))]
    events += [h.envelope(h.applied(n, success=i % 3 != 0)) for i in range(30) for n in (NAME, other)]
    events += [h.envelope(h.execution()) for _ in range(5)]
    bad = events[31]
    original = projections.PROJECTIONS["pattern_applied"]

    def exploding(conn: sqlite3.Connection, env: Envelope, *rest: Any) -> None:
        original(conn, env, *rest)
        if env.event_id == bad.event_id:
            raise OverflowError("Python int too large to convert to SQLite INTEGER")

    pairs = [(e, e.model_dump_json()) for e in events]
    async with pheromone.services.store.db.Store(tmp_path / "without.db", on_loop=on_loop) as store:
        clean = await store.apply([p for p in pairs if p[0] is not bad])
        expected = await store.checksum()
    monkeypatch.setitem(projections.PROJECTIONS, "pattern_applied", exploding)
    async with pheromone.services.store.db.Store(tmp_path / "with.db", on_loop=on_loop) as store:
        result = await store.apply(pairs)
        assert await store.checksum() == expected
    assert result.inserted == clean.inserted
    assert [(r.index, r.retry) for r in result.rejected] == [(31, False)]
    assert h.query(tmp_path / "with.db", "SELECT COUNT(*) FROM ledger WHERE event_id = ?", bad.event_id) == [(0,)]
