"""Jobs' learning queries over Redis: client -> query service -> store, and one-line errors back."""

from __future__ import annotations

import pytest

from pheromone import QueryError
from pheromone.contracts import ErrorRecoveryRecord, EscalationDecisionRecord, ExecutionRecord
from pheromone.services.settings import Settings
from tests.learning.conftest import StartRuntime
from tests.learning.helpers import T0, applied, at, observed, pid
from tests.learning.test_concurrency import wait_for_ledger
from tests.support import OpenClient


async def test_learning_queries_round_trip(
    runtime: StartRuntime, open_client: OpenClient, learning_settings: Settings
) -> None:
    await runtime()
    client = await open_client("job-q")
    client.emit(observed("use backoff", tags=["api", "rate_limit"]), occurred_at=at(0))
    client.emit(observed("grep first", ptype="tool_pattern", tags=["files"]), occurred_at=at(0))
    for i in range(6):
        client.emit(applied("use backoff", True, 0.9), occurred_at=at(1 + i))
        client.emit(applied("grep first", i % 2 == 0, ptype="tool_pattern"), occurred_at=at(1 + i))
        client.emit(
            ErrorRecoveryRecord(
                error_code="429",
                suggested_wait=10,
                actual_wait=20 + i,
                recovery_success=True,
                recorded_at=at(i),
                model="m1",
                time_of_day=9,
            ),
            occurred_at=at(i),
        )
        client.emit(
            ExecutionRecord(
                workspace_hash="w",
                job_hash="job-q",
                sheet_num=i,
                started_at=T0,
                completed_at=T0,
                duration_seconds=2,
                status="completed",
                retry_count=0,
                success_without_retry=True,
                validation_pass_rate=1.0,
                confidence_score=0.9,
                model="m1",
            ),
            occurred_at=at(i),
        )
    decision = EscalationDecisionRecord(
        job_hash="job-q",
        sheet_num=1,
        confidence=0.5,
        action="skip",
        guidance=None,
        validation_pass_rate=0.4,
        retry_count=2,
        outcome_after_action="success",
    )
    client.emit(decision, occurred_at=at(9))
    await client.flush()
    await wait_for_ledger(learning_settings.store_path, 2 + 6 * 4 + 1)
    q = client.queries
    assert q is not None

    best = await q.patterns(tags=["api"])
    assert [p["id"] for p in best] == [pid("use backoff")]
    assert best[0]["quarantine_status"] == "validated" and best[0]["led_to_success_count"] == 6
    every = await q.patterns(status=["pending", "validated", "quarantined"], limit=10)
    assert [p["priority_score"] for p in every] == sorted((p["priority_score"] for p in every), reverse=True)
    shown = await q.pattern(pid("grep first", "tool_pattern"))
    assert shown["pattern"]["pattern_name"] == "grep first" and len(shown["recent_applications"]) == 6

    wait = await q.learned_wait("429", model="m1")
    assert wait["strategy"] == "global_learned_blend" and wait["samples"] == 6
    similar = await q.similar_escalations(0.45, 0.5)
    assert similar["suggestion"]["action"] == "skip" and similar["similar"][0]["id"] == decision.id
    stats = await q.execution_stats(by="model")
    assert stats["stats"][0]["model"] == "m1" and stats["stats"][0]["executions"] == 6
    entropy = await q.entropy(history=True)
    assert entropy["current"]["total_applications"] == 12 and entropy["history"] == []
    assert (await q.exploration_budget())["current"] is None
    assert (await q.drift(include_stable=True))["summary"]["total_patterns"] == 2
    assert (await q.trajectory())["entries"] == []

    with pytest.raises(QueryError, match="no pattern 'p_missing'"):
        await q.pattern("p_missing")
    with pytest.raises(QueryError, match="min_trust"):
        await q.patterns(min_trust=3.0)
    with pytest.raises(QueryError, match="bogus: Extra inputs are not permitted"):
        await q.call("entropy", {"bogus": 1})
