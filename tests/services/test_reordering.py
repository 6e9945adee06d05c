"""Events that arrive ahead of what they need (a crash's redelivery can reorder a stream) wait for it: an outcome
for a record not stored yet, a lifecycle move ahead of its predecessor."""

from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis

from pheromone.contracts import Envelope
from pheromone.contracts.sessions import SessionTransitioned
from pheromone.contracts.streams import GROUP_STORE, Keys
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


async def test_a_lifecycle_move_ahead_of_its_predecessor_waits_without_holding_back_its_batch(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    keys = Keys(prefix)

    def move(to: str, prev: str | None) -> Envelope:
        return h.envelope(SessionTransitioned(session_id="s-1", scope="ws-t", to_status=to, from_status=prev,  # type: ignore[arg-type]
                                              trigger="on_demand" if prev is None else None))

    early, record, first = move("harvesting", "triggered"), h.envelope(h.execution()), move("triggered", None)
    await start_runtime(claim_idle_ms=1_000)
    async with redis.pipeline(transaction=True) as pipe:  # one batch: the early move, a record, its predecessor
        for e in (early, record, first):
            pipe.xadd(keys.ingest, h.entry(e))  # type: ignore[arg-type]
        ids = await pipe.execute()
    # The rest of the batch is committed and acked at once; only the early move waits, pending.
    await h.eventually(lambda: h.count(db, "ledger", "event_id = ?", first.event_id), what="the batch committed")

    async def rest_acked() -> bool:  # the ack follows the commit; the early move alone may stay pending
        pending = {r["message_id"] for r in await redis.xpending_range(keys.ingest, GROUP_STORE, "-", "+", 10)}
        return not pending & {ids[1], ids[2]}

    await h.eventually(rest_acked, what="the rest of the batch acked")
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), what="the early move applied by the retrier")
    assert h.query(db, "SELECT event_id FROM ledger ORDER BY seq") == [(record.event_id,), (first.event_id,),
                                                                       (early.event_id,)]
    assert h.scalar(db, "SELECT status FROM session_state WHERE session_id = 's-1'") == "harvesting"
    assert await h.dead_letters(redis, prefix) == []
