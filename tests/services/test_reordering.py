"""An event that names a record not stored yet (a crash's redelivery can reorder a stream) waits for it."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from contracts.streams import Keys
from tests.services import helpers as h
from tests.services.conftest import StartRuntime


async def test_an_outcome_that_arrives_before_its_escalation_is_applied_once_it_exists(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    keys = Keys(prefix)
    await start_runtime()
    decision = h.escalation()
    late = h.envelope(h.outcome(decision.id, "success"))
    transition = h.envelope(h.transitioned("back off", "validated"))
    await h.xadd_raw(redis, keys.ingest, [h.entry(late), h.entry(transition)])
    # Both are refused for now (their records are unknown) and stay pending instead of being dead-lettered.
    await h.eventually(lambda: h.pending(redis, keys.ingest), what="refused entries left pending")

    await h.xadd_raw(redis, keys.ingest, [h.entry(h.envelope(decision)), h.entry(h.envelope(h.observed("back off")))])
    await h.eventually(
        lambda: h.scalar(db, "SELECT outcome_after_action FROM escalation_decisions WHERE id = ?", decision.id)
        == "success",
        what="the outcome applied by the retrier",
    )
    await h.eventually(
        lambda: h.count(db, "pattern_transitions", "event_id = ?", transition.event_id) == 1,
        what="the transition applied by the retrier",
    )
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), what="nothing left pending")
    assert await h.dead_letters(redis, prefix) == []
    assert set(h.ledger_ids(db)) >= {late.event_id, transition.event_id}
