"""Workspaces are a boundary in the store too: a record's later events (corrections, outcomes) are accepted
only from the workspace that recorded it. Another workspace reusing the record id is refused with a reason
(a dead letter), and the owner's row is left exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest

from pheromone.contracts import (
    Envelope,
    ErrorRecoveryRecord,
    EscalationDecisionRecord,
    EscalationOutcomeRecorded,
    ExecutionRecord,
    PatternDiscoveryEvent,
    RateLimitEvent,
)
from pheromone.contracts.types import Contract
from pheromone.services.store.db import Store
from tests.contracts.contract_samples import sample

FAMILIES: list[tuple[type[Contract], str, dict[str, object]]] = [
    (ExecutionRecord, "executions", {"status": "failed"}),
    (ErrorRecoveryRecord, "error_recoveries", {"actual_wait": 1.0}),
    (RateLimitEvent, "rate_limit_events", {"duration_seconds": 5.0}),
    (EscalationDecisionRecord, "escalation_decisions", {"action": "abort"}),
    (PatternDiscoveryEvent, "pattern_discoveries", {"pattern_name": "hijacked"}),
]


def envelope(workspace: str, payload: Contract) -> tuple[Envelope, bytes]:
    env = Envelope(workspace=workspace, job=f"{workspace}-job", payload=payload)
    return env, env.model_dump_json().encode()


async def rows(store: Store, table: str) -> list[tuple[object, ...]]:
    return await store._call(lambda: store.conn.execute(f"SELECT * FROM {table} ORDER BY id").fetchall())


@pytest.mark.parametrize(("cls", "table", "change"), FAMILIES, ids=[t for _, t, _ in FAMILIES])
async def test_another_workspace_cannot_replace_a_record(
    tmp_path: Path, cls: type[Contract], table: str, change: dict[str, object]
) -> None:
    async with Store(tmp_path / "store.db") as store:
        first = await store.apply([envelope("ws-owner", cls.model_validate(sample(cls)))])
        assert len(first.inserted) == 1
        before = await rows(store, table)

        intruder = envelope("ws-intruder", cls.model_validate(sample(cls, **change)))
        result = await store.apply([intruder])
        assert result.inserted == []
        [refusal] = result.rejected
        assert refusal.index == 0 and not refusal.retry
        assert "belongs to another workspace" in refusal.reason and table in refusal.reason
        assert await rows(store, table) == before
        counts = await store.counts()
        assert counts["ledger"] == 1, "the refused event must not stay in the ledger"

        # The owner's own correction replaces the row.
        fix = await store.apply([envelope("ws-owner", cls.model_validate(sample(cls, **change)))])
        assert len(fix.inserted) == 1 and fix.rejected == []
        assert await rows(store, table) != before


async def test_only_the_owner_records_an_escalation_outcome(tmp_path: Path) -> None:
    async with Store(tmp_path / "store.db") as store:
        decision = EscalationDecisionRecord.model_validate(sample(EscalationDecisionRecord, outcome_after_action=None))
        await store.apply([envelope("ws-owner", decision)])
        outcome = EscalationOutcomeRecorded(escalation_id=decision.id, outcome="failed")

        refused = await store.apply([envelope("ws-intruder", outcome)])
        assert [r.reason for r in refused.rejected] == [
            "escalation_decisions record 'esc-1' belongs to another workspace"
        ]
        [row] = await rows(store, "escalation_decisions")
        assert None in row and "failed" not in row

        accepted = await store.apply([envelope("ws-owner", outcome)])
        assert accepted.rejected == [] and len(accepted.inserted) == 1
        [row] = await rows(store, "escalation_decisions")
        assert "failed" in row


async def test_execution_stats_scope_by_the_reporting_workspace_not_the_records_claim(tmp_path: Path) -> None:
    from pheromone.services.query import learning as q
    from pheromone.services.settings import LearningSettings
    from pheromone.services.store.reader import Reader

    own = ExecutionRecord.model_validate(sample(ExecutionRecord, id="exec-own", workspace_hash="ws-a"))
    spoof = ExecutionRecord.model_validate(sample(ExecutionRecord, id="exec-spoof", workspace_hash="ws-a"))
    async with Store(tmp_path / "store.db") as store:
        await store.apply([envelope("ws-a", own), envelope("ws-b", spoof)])
    async with Reader(tmp_path / "store.db") as reader:
        scoped = await q.execution_stats(reader, q.ExecutionStatsArgs(workspace="ws-a"), LearningSettings())
        claimed = await q.execution_stats(reader, q.ExecutionStatsArgs(workspace_hash="ws-a"), LearningSettings())
    assert [g["executions"] for g in scoped["stats"]] == [1]
    assert [g["executions"] for g in claimed["stats"]] == [2], "the record's own field is a filter, not a boundary"
