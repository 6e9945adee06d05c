"""Broadcast wire contracts: every kind round-trips, kinds map one to one, the module stays pure data."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from pheromone.contracts import DriftMetrics, EntropyResponseRecord, PatternDiscoveryEvent
from pheromone.contracts.broadcast import (
    KIND_OF_BODY,
    BroadcastKind,
    BroadcastMessage,
    DriftAlert,
    EntropyResponseNotice,
    RateLimitNotice,
    rate_limit_expiry,
)

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=5)
BODIES = {
    BroadcastKind.DISCOVERY: PatternDiscoveryEvent(
        pattern_id="p_1",
        pattern_name="back off",
        pattern_type="retry",
        source_job_hash="j",
        recorded_at=NOW,
        expires_at=LATER,
        effectiveness_score=0.8,
        context_tags=["api"],
    ),
    BroadcastKind.RATE_LIMIT: RateLimitNotice(
        model="m", error_code="429", expires_at=LATER, duration_seconds=300, reported_by="j", report_id="r"
    ),
    BroadcastKind.ENTROPY_RESPONSE: EntropyResponseNotice(
        response=EntropyResponseRecord(
            job_hash="entropy",
            recorded_at=NOW,
            entropy_at_trigger=0.1,
            threshold_used=0.3,
            actions_taken=["budget_boost"],
            budget_boosted=True,
        ),
        diversity_index=0.1,
        budget_value=0.25,
    ),
    BroadcastKind.DRIFT_ALERT: DriftAlert(
        drift=DriftMetrics(
            pattern_id="p_1",
            pattern_name="back off",
            window_size=5,
            effectiveness_before=0.9,
            effectiveness_after=0.1,
            grounding_confidence_avg=0.9,
            drift_magnitude=0.8,
            drift_direction="negative",
            applications_analyzed=10,
            threshold_exceeded=True,
        ),
        context_tags=["api"],
    ),
}


@pytest.mark.parametrize("kind", list(BroadcastKind))
def test_every_kind_round_trips_through_json(kind: BroadcastKind) -> None:
    msg = BroadcastMessage(
        id="01JAAAAAAAAAAAAAAAAAAAAAAA",
        published_at=NOW,
        expires_at=LATER,
        workspace="w",
        job="j",
        body=BODIES[kind],
    )
    back = BroadcastMessage.model_validate_json(msg.model_dump_json())
    assert back == msg and back.kind is kind
    assert back.tags == (["api"] if kind in (BroadcastKind.DISCOVERY, BroadcastKind.DRIFT_ALERT) else [])
    assert back.effectiveness == (0.8 if kind is BroadcastKind.DISCOVERY else None)
    assert back.expired(LATER) and not back.expired(NOW)


def test_kinds_and_body_types_map_one_to_one() -> None:
    assert sorted(KIND_OF_BODY.values()) == sorted(BroadcastKind)
    assert {type(b).model_fields["type"].default for b in BODIES.values()} == set(KIND_OF_BODY)


@pytest.mark.parametrize(
    "change",
    [
        {"schema_version": True},
        {"schema_version": 2},
        {"extra": 1},
        {"body": {"type": "nope"}},
        {"expires_at": "2026-05-01T12:00:00"},
    ],
    ids=["bool-version", "version-2", "unknown-field", "unknown-body", "naive-time"],
)
def test_malformed_messages_are_refused(change: dict[str, object]) -> None:
    raw = json.loads(
        BroadcastMessage(
            id="x",
            published_at=NOW,
            expires_at=LATER,
            workspace="w",
            job="j",
            body=BODIES[BroadcastKind.RATE_LIMIT],
        ).model_dump_json()
    )
    with pytest.raises(ValidationError):
        BroadcastMessage.model_validate_json(json.dumps({**raw, **change}))


def test_rate_limit_expiry_is_recorded_at_plus_factor_times_duration() -> None:
    assert rate_limit_expiry(NOW, 30) == NOW + timedelta(seconds=30)
    assert rate_limit_expiry(NOW, 30, 0.8) == NOW + timedelta(seconds=24)


def test_the_broadcast_contracts_import_nothing_but_data() -> None:
    code = "import pheromone.contracts.broadcast, json, sys; print(json.dumps(sorted(sys.modules)))"
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=60, check=True
    )
    modules = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = {"redis", "faststream", "aiosqlite", "sqlite3", "typer", "rich"}
    ours = [m for m in modules if m.startswith("pheromone.") and not m.startswith("pheromone.contracts")]
    assert sorted(m for m in modules if m.split(".")[0] in heavy) + ours == []
