"""Shared by the client tests: one valid record of every payload type, and reading streams back raw."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from redis.asyncio import Redis

from pheromone.contracts import (
    PAYLOAD_TYPES,
    AdjustmentType,
    DriftMetrics,
    EntropyResponseRecord,
    Envelope,
    EpistemicDriftMetrics,
    ErrorRecoveryRecord,
    EscalationDecisionRecord,
    EscalationOutcomeRecorded,
    EvolutionTrajectoryEntry,
    ExecutionRecord,
    ExplorationBudgetRecord,
    PatternApplied,
    PatternDiscoveryEvent,
    PatternEntropyMetrics,
    PatternObserved,
    PatternTransitioned,
    Payload,
    QuarantineStatus,
    RateLimitEvent,
    SuccessFactors,
    TimeOfDayBucket,
    parse_envelope,
)
from pheromone.contracts.sessions import EditTransitioned, PlaybookWritten, SessionTransitioned, SessionTrigger
from pheromone.contracts.streams import Keys

ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)


def one_of_each() -> list[Payload]:
    """One valid record of every payload type, with awkward values where serialisation could differ."""
    records: list[Payload] = [
        ExecutionRecord(
            workspace_hash="ws-1", job_hash="job-1", sheet_num=3, started_at=T0, completed_at=T1,
            duration_seconds=0.1, status="completed", retry_count=2, success_without_retry=False,
            validation_pass_rate=1 / 3, confidence_score=1e-7, model=None, error_codes=["E1", "E2"],
        ),
        PatternObserved(
            pattern_type="retry", pattern_name='back off "on" 429 — ünïcode \u2028 \x00',
            description="line one\nline two\ttab \\ backslash", context_tags=["api", "rate_limit"],
            provenance_sheet_num=2**53,
        ),
        PatternApplied(
            pattern_id="p_0123456789abcdef01234567", success=True, grounding_confidence=0.5, model="m",
            success_factors=SuccessFactors(time_of_day_bucket=TimeOfDayBucket.NIGHT, success_rate=0.25),
        ),
        PatternTransitioned(
            pattern_id="p_0123456789abcdef01234567", to_status=QuarantineStatus.VALIDATED, reason="ok",
            actor="ops",
        ),
        ErrorRecoveryRecord(
            error_code="E429", suggested_wait=30.0, actual_wait=1e12, recovery_success=True,
            recorded_at=T0, model=None, time_of_day=23,
        ),
        RateLimitEvent(
            error_code="E429", model="claude-sonnet", recorded_at=T0, expires_at=T1,
            source_job_hash="job-1", duration_seconds=300.0,
        ),
        EscalationDecisionRecord(
            job_hash="job-1", sheet_num=0, confidence=0.0, action="modify_prompt", guidance=None,
            validation_pass_rate=1.0, retry_count=0, recorded_at=T0,
        ),
        EscalationOutcomeRecorded(escalation_id="esc-1", outcome="aborted"),
        PatternDiscoveryEvent(
            pattern_id="p_1", pattern_name="n", pattern_type="t", source_job_hash="job-1", recorded_at=T0,
            expires_at=T1, effectiveness_score=0.9, context_tags=["x"],
        ),
        EvolutionTrajectoryEntry(
            cycle=7, recorded_at=T0, evolutions_completed=1, evolutions_deferred=0, issue_classes=["a"],
            cv_avg=0.3, implementation_loc=10, test_loc=20, loc_accuracy=1.5,
        ),
        PatternEntropyMetrics(
            calculated_at=T0, shannon_entropy=2.5, max_possible_entropy=3.0, diversity_index=0.8,
            unique_pattern_count=9, effective_pattern_count=6, total_applications=100,
            dominant_pattern_share=0.3, threshold_exceeded=True,
        ),
        ExplorationBudgetRecord(
            job_hash="job-1", recorded_at=T0, budget_value=0.15, entropy_at_time=None,
            adjustment_type=AdjustmentType.CEILING_ENFORCED,
        ),
        EntropyResponseRecord(
            job_hash="job-1", recorded_at=T0, entropy_at_trigger=0.1, threshold_used=0.3,
            actions_taken=["budget_boost"], budget_boosted=True, patterns_revisited=["p_1", "p_2"],
        ),
        DriftMetrics(
            pattern_id="p_1", pattern_name="n", window_size=5, effectiveness_before=0.9,
            effectiveness_after=0.4, grounding_confidence_avg=0.7, drift_magnitude=0.5,
            drift_direction="negative", applications_analyzed=10,
        ),
        EpistemicDriftMetrics(
            pattern_id="p_1", pattern_name="n", window_size=5, confidence_before=0.2, confidence_after=0.9,
            belief_change=-0.7, belief_entropy=0.4, applications_analyzed=10, drift_direction="weakening",
        ),
        SessionTrigger(trigger="user_flag", scope="ws-1", subject="exec-1"),  # type: ignore[arg-type]
        SessionTransitioned(session_id="s-1", scope="ws-1", to_status="triggered", trigger="on_demand"),  # type: ignore[arg-type]
        EditTransitioned(session_id="s-1", edit_id="e-1", to_status="rejected", reason="no"),  # type: ignore[arg-type]
        PlaybookWritten(workspace="ws-1", text="# Playbook\n"),
    ]
    # A payload type added to contracts without a sample here must fail the tests that use this list.
    assert sorted(type(r).__name__ for r in records) == sorted(t.__name__ for t in PAYLOAD_TYPES)
    return records


def expected_stream(prefix: str, payload_type: str) -> str:
    """Written out rather than taken from contracts.streams, so a routing change there is caught here."""
    return {
        "rate_limit": Keys(prefix).ratelimits,
        "pattern_discovery": Keys(prefix).discoveries,
        "session_trigger": Keys(prefix).triggers,
    }.get(payload_type, Keys(prefix).ingest)


def listing(directory: Path) -> list[str]:
    """The names in a directory, sorted (a plain function: the tests call it from async code)."""
    return sorted(p.name for p in directory.iterdir())


async def read_raw(redis: Redis, stream: str) -> list[bytes]:
    """Every entry's envelope JSON, in stream order; each entry must carry the field `e` and nothing else but,
    when the client sent it from memory (not replayed from its spool), `k`: the payload's type."""
    out: list[bytes] = []
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(stream)  # type: ignore[assignment]
    for _, fields in entries:
        assert list(fields) in ([b"e"], [b"e", b"k"]), fields
        if b"k" in fields:
            assert fields[b"k"].decode() == parse_envelope(fields[b"e"]).kind, fields
        out.append(fields[b"e"])
    return out


async def read_envelopes(redis: Redis, stream: str) -> list[Envelope]:
    return [parse_envelope(raw) for raw in await read_raw(redis, stream)]


async def eventually(check: Callable[[], Awaitable[bool]], *, within: float = 10.0, what: str = "") -> None:
    """Poll `check` until it is true; fail after `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        if loop.time() > deadline:
            raise AssertionError(f"not true within {within:g}s: {what or check}")
        await asyncio.sleep(0.01)
