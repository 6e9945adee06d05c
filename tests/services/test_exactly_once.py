"""At-least-once delivery, exactly-once effect: an event that reaches the store twice is applied once."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from pheromone.contracts import pattern_id
from pheromone.contracts.streams import GROUP_STORE, Keys
from pheromone.services import transport
from pheromone.services.settings import StoreLocation
from pheromone.services.store.location import open_backend
from tests.services import helpers as h
from tests.services.conftest import StartRuntime


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both store backends."""
    param: str = request.param
    return param


NAME = "back off on 429"
PID = pattern_id("retry_pattern", NAME)


def pattern_counts(db: StoreLocation) -> tuple[int, int, int] | None:
    rows = h.query(db, "SELECT occurrence_count, led_to_success_count, led_to_failure_count FROM patterns "
                       "WHERE id = ?", PID)
    return rows[0] if rows else None


def assert_applied_once(db: StoreLocation, event_id: str) -> None:
    assert h.count(db, "ledger", "event_id = ?", event_id) == 1
    assert h.count(db, "pattern_applications", "event_id = ?", event_id) == 1
    assert pattern_counts(db) == (1, 1, 0)


async def test_same_envelope_added_twice_is_applied_once(
    start_runtime: StartRuntime, db: StoreLocation, prefix: str, redis: aioredis.Redis
) -> None:
    ingest = Keys(prefix).ingest
    await start_runtime()
    seen = h.envelope(h.observed(NAME))
    await h.xadd_raw(redis, ingest, [h.entry(seen)])
    await h.eventually(lambda: h.count(db, "ledger", "event_id = ?", seen.event_id) == 1, what="observation")

    used = h.envelope(h.applied(NAME, success=True))
    # Two separate deliveries (two XADDs), as a producer that resent after a dropped connection would make.
    await h.xadd_raw(redis, ingest, [h.entry(used)])
    await h.eventually(lambda: h.group_caught_up(redis, ingest), what="first copy consumed")
    await h.xadd_raw(redis, ingest, [h.entry(used)])
    await h.eventually(lambda: h.group_caught_up(redis, ingest), what="second copy consumed")

    assert await redis.xlen(ingest) == 3
    assert_applied_once(db, used.event_id)
    assert h.ledger_count(db) == 2
    assert await h.dead_letters(redis, prefix) == []


async def test_duplicates_inside_one_batch_are_applied_once(
    start_runtime: StartRuntime, db: StoreLocation, prefix: str, redis: aioredis.Redis
) -> None:
    ingest = Keys(prefix).ingest
    seen, used = h.envelope(h.observed(NAME)), h.envelope(h.applied(NAME, success=True))
    # Written before any consumer runs, so the first read takes all of them in one batch.
    await h.xadd_raw(redis, ingest, [h.entry(e) for e in (used, seen, used, seen, used)])
    await start_runtime()
    await h.eventually(lambda: h.group_caught_up(redis, ingest), what="all five entries consumed")

    assert_applied_once(db, used.event_id)
    assert h.ledger_count(db) == 2
    assert await h.dead_letters(redis, prefix) == []


async def test_entry_left_pending_after_commit_is_redelivered_and_not_reapplied(
    start_runtime: StartRuntime, db: StoreLocation, prefix: str, redis: aioredis.Redis
) -> None:
    """A consumer committed its batch and died before XACK: the retrier redelivers, the store skips it."""
    ingest = Keys(prefix).ingest
    seen, used = h.envelope(h.observed(NAME)), h.envelope(h.applied(NAME, success=True))
    await transport.ensure_group(redis, ingest, GROUP_STORE)
    ids = await h.xadd_raw(redis, ingest, [h.entry(seen), h.entry(used)])
    # The dead consumer read both entries...
    read = await redis.xreadgroup(GROUP_STORE, "dead-consumer", {ingest: ">"}, count=10)
    assert [eid for eid, _ in read[0][1]] == ids
    # ... and committed them to the store, but never acked.
    async with open_backend(db) as store:
        result = await store.apply([(seen, seen.model_dump_json()), (used, used.model_dump_json())])
    assert result.inserted == [seen.event_id, used.event_id]
    assert await h.pending(redis, ingest) == 2

    runtime = await start_runtime()
    await h.eventually(lambda: h.group_caught_up(redis, ingest), what="pending entries claimed and acked")

    worker = next(w for p in runtime.parts for w in p.workers if w.stream == ingest)
    # Redelivered by the retrier, not read anew. Waited for: Redis answers the XACK, and so shows the group
    # caught up, before the worker's task resumes from it and counts the claim.
    await h.eventually(lambda: worker.stats.claimed == 2, what="the worker counting the two claimed entries")
    assert_applied_once(db, used.event_id)
    assert h.ledger_count(db) == 2
    assert await h.dead_letters(redis, prefix) == []


async def test_entry_left_pending_before_commit_is_redelivered_and_applied(
    start_runtime: StartRuntime, db: StoreLocation, prefix: str, redis: aioredis.Redis
) -> None:
    """A consumer died between read and commit: the retrier redelivers and the event is applied, once."""
    ingest = Keys(prefix).ingest
    seen, used = h.envelope(h.observed(NAME)), h.envelope(h.applied(NAME, success=True))
    await transport.ensure_group(redis, ingest, GROUP_STORE)
    await h.xadd_raw(redis, ingest, [h.entry(seen), h.entry(used)])
    await redis.xreadgroup(GROUP_STORE, "dead-consumer", {ingest: ">"}, count=10)
    assert await h.pending(redis, ingest) == 2

    await start_runtime()
    await h.eventually(lambda: h.group_caught_up(redis, ingest), what="pending entries claimed and acked")

    assert_applied_once(db, used.event_id)
    assert h.ledger_count(db) == 2
    assert await h.dead_letters(redis, prefix) == []
