"""Automatic entropy response: low diversity triggers exactly one response (budget boost, quarantine
revisits, recorded and broadcast) per cooldown, however many entropy replicas run; healthy diversity none.

Real server, real store file, in-process services; every wait is a deadline poll.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pheromone import Pheromone
from pheromone.contracts import (
    AdjustmentType,
    EntropyResponseRecord,
    PatternApplied,
    PatternEntropyMetrics,
    PatternObserved,
    PatternTransitioned,
    pattern_id,
)
from pheromone.contracts.broadcast import BroadcastKind, DriftAlert, EntropyResponseNotice
from pheromone.contracts.streams import GROUP_ENTROPY, GROUP_STORE, Keys
from pheromone.services.entropy.response import plan_response
from pheromone.services.entropy.service import EntropyService
from pheromone.services.settings import CoordinationSettings, LearningSettings
from pheromone.services.store.reader import Reader
from tests.coordination.conftest import StartRuntime
from tests.coordination.helpers import Collector, count, eventually, query
from tests.support import OpenClient

PATTERNS = [f"pattern {i}" for i in range(8)]
FAST_ENTROPY = {
    "entropy_check_every": 25,
    "entropy_check_interval_s": 0.3,
    "entropy_cooldown_s": 120.0,
    "max_quarantine_revisits": 2,
}
FEW_APPLICATIONS = {"entropy_min_applications": 50}
"""Learning settings with which the tests' populations are large enough to be judged."""


def pid(name: str) -> str:
    return pattern_id("retry_pattern", name)


def observe(client: Pheromone, names: list[str]) -> None:
    for name in names:
        client.emit(PatternObserved(pattern_type="retry_pattern", pattern_name=name, context_tags=["api"]))


def apply(client: Pheromone, shares: dict[str, int], success: bool = True) -> int:
    """Applications round-robin over `shares` (name -> how many), interleaved like a fleet's."""
    left, n = dict(shares), 0
    while any(left.values()):
        for name in shares:
            if left[name]:
                client.emit(PatternApplied(pattern_id=pid(name), success=success, grounding_confidence=0.9))
                left[name] -= 1
                n += 1
    return n


async def last_metrics(redis: aioredis.Redis, prefix: str) -> PatternEntropyMetrics | None:
    raw = await redis.get(Keys(prefix).entropy("last"))
    return None if raw is None else PatternEntropyMetrics.model_validate_json(raw)


async def evaluated_all(
    redis: aioredis.Redis, prefix: str, db: Path, total: int
) -> PatternEntropyMetrics | None:
    """The entropy service's latest evaluation, once it has seen all `total` applications in the store."""
    if count(db, "pattern_applications") < total:
        return None
    metrics = await last_metrics(redis, prefix)
    return metrics if metrics is not None and metrics.total_applications == total else None


async def store_caught_up(redis: aioredis.Redis, stream: str) -> bool:
    """The store group has read every entry of `stream` and acked them all."""
    return any(g["name"].decode() == GROUP_STORE and g["lag"] == 0 and g["pending"] == 0
               for g in await redis.xinfo_groups(stream))


def responses(db: Path) -> list[EntropyResponseRecord]:
    return [
        EntropyResponseRecord.model_validate_json(json.dumps(json.loads(body)["payload"]))
        for (body,) in query(db, "SELECT body FROM ledger WHERE kind = 'entropy_response' ORDER BY seq")
    ]


def ledger_kinds(db: Path, correlation_id: str) -> list[str]:
    return [
        k
        for (k,) in query(db, "SELECT kind FROM ledger WHERE correlation_id = ? ORDER BY seq", correlation_id)
    ]


async def test_a_healthy_workload_triggers_no_response(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, redis: aioredis.Redis, prefix: str
) -> None:
    await start_runtime(["store", "entropy", "broadcaster"], coordination=FAST_ENTROPY, learning=FEW_APPLICATIONS)
    job, watcher = await open_client("job-a"), await open_client("watcher", workspace="ws-w")
    col = Collector(watcher.subscribe(kinds=["entropy_response"]))
    observe(job, PATTERNS)
    total = apply(job, {name: 40 for name in PATTERNS})
    await job.flush()

    metrics = await eventually(lambda: evaluated_all(redis, prefix, db, total), what="evaluated everything")
    assert metrics.diversity_index > 0.95 and not metrics.threshold_exceeded
    assert responses(db) == [] and count(db, "exploration_budget") == 0 and col.messages == []
    assert count(db, "ledger", "workspace = 'pheromone'") == 0  # routine evaluations record nothing
    await col.stop()


async def test_a_low_diversity_workload_triggers_one_response_recorded_and_broadcast(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, redis: aioredis.Redis, prefix: str
) -> None:
    await start_runtime(["store", "entropy", "broadcaster"], coordination=FAST_ENTROPY, learning=FEW_APPLICATIONS)
    job, watcher = await open_client("job-a"), await open_client("watcher", workspace="ws-w")
    col = Collector(watcher.subscribe(kinds=["entropy_response"]))
    observe(job, PATTERNS)
    # Four quarantined patterns, quarantined in this order: the two oldest are revisited (N = 2).
    quarantined = [f"bad {i}" for i in range(4)]
    observe(job, quarantined)
    for name in quarantined:
        job.emit(
            PatternTransitioned(pattern_id=pid(name), to_status="quarantined", reason="test", actor="tests"),
            occurred_at=datetime.now(UTC) + timedelta(milliseconds=quarantined.index(name)),
        )
    total = apply(job, {PATTERNS[0]: 380, **{name: 3 for name in PATTERNS[1:]}})
    await job.flush()

    await eventually(lambda: responses(db), what="an entropy response in the ledger")
    metrics = await eventually(lambda: evaluated_all(redis, prefix, db, total), what="evaluated everything")
    assert metrics.threshold_exceeded and metrics.diversity_index < LearningSettings().entropy_alert_threshold
    [response] = responses(db)  # many evaluations below the threshold, one response (cooldown)
    learning = LearningSettings()
    assert response.job_hash == "entropy" and response.threshold_used == learning.entropy_alert_threshold
    assert response.entropy_at_trigger < learning.entropy_alert_threshold
    assert response.budget_boosted and response.actions_taken == ["budget_boost", "quarantine_revisit"]
    assert response.patterns_revisited == [pid("bad 0"), pid("bad 1")] and response.quarantine_revisits == 2

    # Recorded together: the triggering metrics, the budget boost and the response share a correlation id.
    [(correlation,)] = query(db, "SELECT correlation_id FROM ledger WHERE kind = 'entropy_response'")
    assert ledger_kinds(db, correlation) == ["entropy_metrics", "budget", "entropy_response"]
    [(budget, kind)] = query(db, "SELECT budget_value, adjustment_type FROM exploration_budget")
    assert kind == AdjustmentType.BOOST and budget == pytest.approx(
        learning.budget_initial + learning.budget_boost
    )
    # The store applied the revisits with their grace period; the others stay quarantined.
    status = dict(query(db, "SELECT id, quarantine_status FROM patterns"))
    assert [status[pid(n)] for n in quarantined] == ["pending", "pending", "quarantined", "quarantined"]
    assert count(db, "pattern_transitions", "actor = 'entropy_response'") == 2

    await eventually(lambda: col.messages, what="response broadcast")
    [msg] = col.messages
    assert msg.kind is BroadcastKind.ENTROPY_RESPONSE and isinstance(msg.body, EntropyResponseNotice)
    assert msg.body.response == response and msg.body.budget_value == pytest.approx(budget)
    await col.stop()


async def test_two_entropy_replicas_make_one_response_per_crossing(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, redis: aioredis.Redis, prefix: str
) -> None:
    await start_runtime(["store", "broadcaster"])
    replicas = [
        await start_runtime(["entropy"], consumer=f"replica-{i}", coordination=FAST_ENTROPY,
                            learning=FEW_APPLICATIONS)
        for i in range(2)
    ]
    watcher = await open_client("watcher", workspace="ws-w")
    col = Collector(watcher.subscribe(kinds=["entropy_response"]))
    jobs = [await open_client(f"job-{i}", workspace=f"ws-{i % 5}") for i in range(10)]
    observe(jobs[0], PATTERNS)
    total = 0
    for _ in range(3):  # waves, so both replicas see applications and evaluate several times
        for job in jobs:
            total += apply(job, {PATTERNS[0]: 30, PATTERNS[1]: 1})
        await asyncio.gather(*(job.flush() for job in jobs))
        await asyncio.sleep(0)
    await eventually(lambda: evaluated_all(redis, prefix, db, total), what="evaluated everything")
    ingest = Keys(prefix).ingest
    consumers = {c["name"].decode(): c for c in await redis.xinfo_consumers(ingest, GROUP_ENTROPY)}
    assert len(consumers) == 2  # both replicas read the stream
    await eventually(lambda: col.messages, what="response broadcast")
    # The broadcast can come before the store commits the response's ledger event: wait until the store group
    # has read and acked all of ingest, so a second response, if a replica made one, would be counted too.
    await eventually(lambda: store_caught_up(redis, ingest), what="the store caught up on ingest")
    assert len(responses(db)) == 1
    assert len(col.messages) == 1
    for runtime in replicas:
        await runtime.stop()
    await col.stop()


async def test_concurrent_evaluations_in_two_replicas_take_the_lock_once(
    redis: aioredis.Redis,
    prefix: str,
    tmp_path: Path,
    start_runtime: StartRuntime,
    open_client: OpenClient,
) -> None:
    """Both replicas see the same low diversity at the same moment: exactly one responds."""
    db = tmp_path / "store.db"
    await start_runtime(["store"])
    job = await open_client("job-a")
    observe(job, PATTERNS)
    total = apply(job, {PATTERNS[0]: 200, PATTERNS[1]: 2})
    await job.flush()
    await eventually(lambda: count(db, "pattern_applications") == total, what="applications stored")
    settings = CoordinationSettings(**FAST_ENTROPY)
    services = []
    for _ in range(2):
        reader = Reader(db)
        await reader.open()
        services.append(EntropyService(redis, Keys(prefix), reader, LearningSettings(**FEW_APPLICATIONS), settings))
    try:
        results = await asyncio.gather(*(s.evaluate() for s in services for _ in range(5)))
        assert all(m is not None and m.threshold_exceeded for m in results)
        assert sum(s.stats.responses for s in services) == 1
        assert sum(s.stats.cooldown_skips for s in services) == 9
        assert await redis.xlen(Keys(prefix).ingest) >= total + 3  # one response's three events, no more
        await eventually(lambda: len(responses(db)) == 1, what="the one response stored")
    finally:
        for s in services:
            await s.reader.close()


async def test_after_the_cooldown_a_still_low_diversity_gets_another_response(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, redis: aioredis.Redis, prefix: str
) -> None:
    await start_runtime(["store", "entropy"], coordination={**FAST_ENTROPY, "entropy_cooldown_s": 0.5},
                        learning=FEW_APPLICATIONS)
    job = await open_client("job-a")
    observe(job, PATTERNS)
    apply(job, {PATTERNS[0]: 100, PATTERNS[1]: 1})
    await job.flush()
    await eventually(lambda: len(responses(db)) == 1, what="first response")
    cooldown = Keys(prefix).entropy("cooldown")
    await eventually(lambda: _gone(redis, cooldown), what="cooldown over")
    apply(job, {PATTERNS[0]: 50})  # the fleet still relies on one pattern after the cooldown
    await job.flush()
    await eventually(lambda: len(responses(db)) == 2, what="second response, after the cooldown")
    learning = LearningSettings()
    budgets = [b for (b,) in query(db, "SELECT budget_value FROM exploration_budget ORDER BY seq")]
    assert budgets == pytest.approx(
        [learning.budget_initial + learning.budget_boost, learning.budget_initial + 2 * learning.budget_boost]
    )


async def _gone(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.exists(key)


async def test_the_entropy_service_evaluates_what_the_store_holds_when_it_starts(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, redis: aioredis.Redis, prefix: str
) -> None:
    """Applications made while no entropy service ran are in the store's aggregate: the first periodic
    evaluation after the start sees them (no counts to rebuild)."""
    await start_runtime(["store"])
    job = await open_client("job-a")
    observe(job, PATTERNS)
    total = apply(job, {PATTERNS[0]: 120, PATTERNS[1]: 2})
    await job.flush()
    await eventually(lambda: count(db, "pattern_applications") == total, what="stored")
    await redis.delete(Keys(prefix).ingest)  # not even the stream is left to count from
    await start_runtime(["entropy"], coordination=FAST_ENTROPY, learning=FEW_APPLICATIONS)
    job.emit(PatternApplied(pattern_id=pid(PATTERNS[0]), success=True))  # one new application wakes the tick
    await eventually(lambda: responses(db), what="response from the store's state")
    metrics = await last_metrics(redis, prefix)
    assert metrics is not None and metrics.total_applications >= total


async def test_a_drifting_pattern_raises_one_drift_alert_across_replicas(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, redis: aioredis.Redis, prefix: str
) -> None:
    await start_runtime(["store", "broadcaster"])
    for i in range(2):
        await start_runtime(["entropy"], consumer=f"replica-{i}", coordination=FAST_ENTROPY, learning=FEW_APPLICATIONS)
    job, watcher = await open_client("job-a"), await open_client("watcher", workspace="ws-w")
    col = Collector(watcher.subscribe(kinds=["drift_alert"], tags=["api"]))
    observe(job, PATTERNS)
    t0 = datetime.now(UTC)
    name = PATTERNS[2]
    # Five successes then five failures (by event time): effectiveness drifts from ~0.92 to ~0.08.
    for i in range(10):
        job.emit(
            PatternApplied(pattern_id=pid(name), success=i < 5, grounding_confidence=0.9),
            occurred_at=t0 + timedelta(milliseconds=i),
        )
    apply(job, {n: 4 for n in PATTERNS if n != name})  # steady patterns: no drift
    await job.flush()
    await eventually(lambda: col.messages, what="drift alert broadcast")
    for _ in range(3):  # more evaluations in both replicas: the alert is not repeated in its cooldown
        apply(job, {n: 9 for n in PATTERNS if n != name})
        await job.flush()
        await eventually(lambda: _group_done(redis, prefix), what="entropy group caught up")
    [msg] = [
        m for m in col.messages if isinstance(m.body, DriftAlert) and m.body.drift.pattern_id == pid(name)
    ]
    assert isinstance(msg.body, DriftAlert)
    drift = msg.body.drift
    assert drift.threshold_exceeded and drift.drift_direction == "negative" and drift.drift_magnitude > 0.5
    assert msg.body.context_tags == ["api"] and msg.job == "entropy"
    assert count(db, "ledger", "workspace = 'pheromone'") == 0  # alerts are broadcast, not ledger events
    await col.stop()


async def _group_done(redis: aioredis.Redis, prefix: str) -> bool:
    for info in await redis.xinfo_groups(Keys(prefix).ingest):
        if info["name"].decode() in (GROUP_ENTROPY, GROUP_STORE) and (info["lag"] or info["pending"]):
            return False
    return True


def _metrics(diversity: float, total: int = 500) -> PatternEntropyMetrics:
    return PatternEntropyMetrics(
        calculated_at=datetime.now(UTC),
        shannon_entropy=0.5,
        max_possible_entropy=3.0,
        diversity_index=diversity,
        unique_pattern_count=8,
        effective_pattern_count=2,
        total_applications=total,
        dominant_pattern_share=0.9,
        threshold_exceeded=True,
    )


@pytest.mark.parametrize(
    ("current", "expected", "kind", "boosted"),
    [
        (None, 0.25, AdjustmentType.BOOST, True),
        (0.2, 0.3, AdjustmentType.BOOST, True),
        (0.45, 0.5, AdjustmentType.CEILING_ENFORCED, True),
        (0.5, 0.5, AdjustmentType.CEILING_ENFORCED, False),
    ],
)
def test_the_response_boosts_the_budget_within_floor_and_ceiling(
    current: float | None, expected: float, kind: AdjustmentType, boosted: bool
) -> None:
    learning = LearningSettings()
    now = datetime.now(UTC)
    planned = plan_response(_metrics(0.1), current, [], learning, now, ttl_s=60)
    _, budget, response = (e.payload for e in planned.events)
    assert budget.budget_value == pytest.approx(expected) and budget.adjustment_type == kind  # type: ignore[union-attr]
    assert response.budget_boosted is boosted and response.quarantine_revisits == 0  # type: ignore[union-attr]
    assert response.actions_taken == (["budget_boost"] if boosted else [])  # type: ignore[union-attr]
    assert len({e.correlation_id for e in planned.events}) == 1
    assert planned.broadcast.expires_at == now + timedelta(seconds=60)
    assert planned.broadcast.id == planned.events[-1].event_id


def test_settings_validate_the_coordination_constants() -> None:
    from pydantic import ValidationError

    for bad in (
        {"entropy_check_every": 0},
        {"entropy_cooldown_s": 0},
        {"max_quarantine_revisits": -1},
        {"nope": 1},
    ):
        with pytest.raises(ValidationError):
            CoordinationSettings(**bad)  # type: ignore[arg-type]
    _: Any = CoordinationSettings()
