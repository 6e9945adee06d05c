"""Valid sample data for every contract, shared by the contract tests.

Samples are Python-mode dicts (datetimes as aware `datetime` objects) with every field set to a non-default
value, so a round trip exercises every field's serialiser. `minimal()` keeps only the required fields;
`as_json()` turns a sample into wire JSON the way a non-Python producer would write it (including
`NaN`/`Infinity`, which Python's json allows).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from pheromone.contracts import (
    DriftMetrics,
    EntropyResponseRecord,
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
    PatternRecord,
    PatternTransitioned,
    RateLimitEvent,
    SuccessFactors,
)
from pheromone.contracts.sessions import EditTransitioned, PlaybookWritten, SessionTransitioned, SessionTrigger
from pheromone.contracts.types import Contract

T0 = datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
T1 = T0 + timedelta(hours=1, seconds=30)

SUCCESS_FACTORS: dict[str, Any] = {
    "validation_types": ["file", "regex"],
    "error_categories": ["rate_limit"],
    "prior_sheet_status": "failed",
    "time_of_day_bucket": "evening",
    "retry_iteration": 2,
    "escalation_was_pending": True,
    "grounding_confidence": 0.75,
    "occurrence_count": 3,
    "success_rate": 0.25,
}

SAMPLES: dict[type[Contract], dict[str, Any]] = {
    SuccessFactors: SUCCESS_FACTORS,
    ExecutionRecord: {
        "id": "exec-1",
        "workspace_hash": "ws-abc123",
        "job_hash": "job-abc123",
        "sheet_num": 4,
        "started_at": T0,
        "completed_at": T1,
        "duration_seconds": 90.5,
        "status": "completed",
        "retry_count": 1,
        "success_without_retry": False,
        "validation_pass_rate": 0.8,
        "confidence_score": 0.9,
        "model": "claude-sonnet",
        "error_codes": ["E101", "E202"],
    },
    PatternRecord: {
        "id": "pat-1",
        "pattern_type": "retry_pattern",
        "pattern_name": "back off on 429",
        "description": "Wait before retrying a rate-limited call — ünïcode too.",
        "occurrence_count": 7,
        "first_seen": T0,
        "last_seen": T1,
        "last_confirmed": T1,
        "led_to_success_count": 5,
        "led_to_failure_count": 2,
        "effectiveness_score": 0.7,
        "variance": 0.05,
        "suggested_action": "wait 30s",
        "context_tags": ["rate_limit", "api"],
        "priority_score": 2.5,
        "quarantine_status": "validated",
        "provenance_job_hash": "job-abc123",
        "provenance_sheet_num": 3,
        "quarantined_at": T0,
        "validated_at": T1,
        "quarantine_reason": "flaky once",
        "trust_score": 0.8,
        "trust_calculation_date": T1,
        "success_factors": SUCCESS_FACTORS,
        "success_factors_updated_at": T1,
        "active": False,
        "content_hash": "sha256:ab12cd34",
        "instrument_name": "claude_cli",
    },
    ErrorRecoveryRecord: {
        "id": "rec-1",
        "error_code": "E429",
        "suggested_wait": 30.0,
        "actual_wait": 42.5,
        "recovery_success": True,
        "recorded_at": T0,
        "model": "claude-sonnet",
        "time_of_day": 13,
    },
    RateLimitEvent: {
        "id": "rl-1",
        "error_code": "E429",
        "model": "claude-sonnet",
        "recorded_at": T0,
        "expires_at": T1,
        "source_job_hash": "job-abc123",
        "duration_seconds": 60.0,
    },
    EscalationDecisionRecord: {
        "id": "esc-1",
        "job_hash": "job-abc123",
        "sheet_num": 2,
        "confidence": 0.4,
        "action": "modify_prompt",
        "guidance": "be concise",
        "validation_pass_rate": 0.5,
        "retry_count": 3,
        "outcome_after_action": "success",
        "recorded_at": T0,
        "model": "claude-sonnet",
    },
    PatternDiscoveryEvent: {
        "id": "disc-1",
        "pattern_id": "pat-1",
        "pattern_name": "back off on 429",
        "pattern_type": "retry_pattern",
        "source_job_hash": "job-abc123",
        "recorded_at": T0,
        "expires_at": T0 + timedelta(minutes=5),
        "effectiveness_score": 0.6,
        "context_tags": ["rate_limit"],
    },
    DriftMetrics: {
        "pattern_id": "pat-1",
        "pattern_name": "back off on 429",
        "window_size": 5,
        "effectiveness_before": 0.8,
        "effectiveness_after": 0.5,
        "grounding_confidence_avg": 0.7,
        "drift_magnitude": 0.3,
        "drift_direction": "negative",
        "applications_analyzed": 10,
        "threshold_exceeded": True,
    },
    EpistemicDriftMetrics: {
        "pattern_id": "pat-1",
        "pattern_name": "back off on 429",
        "window_size": 4,
        "confidence_before": 0.9,
        "confidence_after": 0.6,
        "belief_change": -0.3,
        "belief_entropy": 0.2,
        "applications_analyzed": 8,
        "threshold_exceeded": True,
        "drift_direction": "weakening",
    },
    EvolutionTrajectoryEntry: {
        "id": "evo-16",
        "cycle": 16,
        "recorded_at": T0,
        "evolutions_completed": 2,
        "evolutions_deferred": 1,
        "issue_classes": ["infrastructure_activation"],
        "cv_avg": 0.65,
        "implementation_loc": 420,
        "test_loc": 380,
        "loc_accuracy": 1.1,
        "research_candidates_resolved": 1,
        "research_candidates_created": 2,
        "notes": "cycle notes",
    },
    PatternEntropyMetrics: {
        "calculated_at": T0,
        "shannon_entropy": 2.5,
        "max_possible_entropy": 3.0,
        "diversity_index": 0.83,
        "unique_pattern_count": 8,
        "effective_pattern_count": 6,
        "total_applications": 120,
        "dominant_pattern_share": 0.4,
        "threshold_exceeded": True,
    },
    ExplorationBudgetRecord: {
        "id": "bud-1",
        "job_hash": "job-abc123",
        "recorded_at": T0,
        "budget_value": 0.15,
        "entropy_at_time": 1.2,
        "adjustment_type": "boost",
        "adjustment_reason": "low entropy",
    },
    EntropyResponseRecord: {
        "id": "resp-1",
        "job_hash": "job-abc123",
        "recorded_at": T0,
        "entropy_at_trigger": 0.4,
        "threshold_used": 0.5,
        "actions_taken": ["budget_boost", "quarantine_revisit"],
        "budget_boosted": True,
        "quarantine_revisits": 2,
        "patterns_revisited": ["pat-1", "pat-2"],
    },
    PatternObserved: {
        "pattern_type": "retry_pattern",
        "pattern_name": "back off on 429",
        "description": "seen twice",
        "suggested_action": "wait 30s",
        "context_tags": ["rate_limit"],
        "provenance_job_hash": "job-abc123",
        "provenance_sheet_num": 3,
        "instrument_name": "claude_cli",
    },
    PatternApplied: {
        "pattern_id": "pat-1",
        "success": False,
        "grounding_confidence": 0.9,
        "success_factors": SUCCESS_FACTORS,
        "execution_id": "exec-1",
        "model": "claude-sonnet",
    },
    PatternTransitioned: {
        "pattern_id": "pat-1",
        "to_status": "quarantined",
        "reason": "caused a regression",
        "actor": "operator",
    },
    EscalationOutcomeRecorded: {"escalation_id": "esc-1", "outcome": "aborted"},
    SessionTrigger: {
        "trigger": "user_flag",
        "scope": "ws-abc123",
        "subject": "exec-1",
        "autonomy": "manual",
        "requested_by": "operator:ana",
    },
    SessionTransitioned: {
        "session_id": "s-1",
        "scope": "ws-abc123",
        "to_status": "diagnosing",
        "reason": "harvested 40 events",
        "actor": "consolidator-2",
        "trigger": "cluster",
        "watermark": 40,
    },
    EditTransitioned: {
        "session_id": "s-1",
        "edit_id": "e-1",
        "to_status": "staged",
        "edit": {
            "id": "e-1", "pillar": "pattern", "op": "set_pattern_status", "workspace": "ws-abc123",
            "target": "pat-1", "model": "claude-haiku", "status": "quarantined", "rationale": "hurts haiku",
            "references": ["c-1"], "supports": "e-0", "risk_tier": "review",
            "priority": None, "seconds": None, "content": None, "anchor": None,
        },
        "reason": "review tier",
        "actor": "consolidator-2",
    },
    PlaybookWritten: {"workspace": "ws-abc123", "text": "# Playbook\nBe careful.", "actor": "operator:ana"},
}

SEED_RECORDS: tuple[type[Contract], ...] = (
    SuccessFactors,
    ExecutionRecord,
    PatternRecord,
    ErrorRecoveryRecord,
    RateLimitEvent,
    EscalationDecisionRecord,
    PatternDiscoveryEvent,
    DriftMetrics,
    EpistemicDriftMetrics,
    EvolutionTrajectoryEntry,
    PatternEntropyMetrics,
    ExplorationBudgetRecord,
    EntropyResponseRecord,
)
"""Seed 000's records, in the seed's order."""

ALL_MODELS: tuple[type[Contract], ...] = tuple(SAMPLES)


def sample(cls: type[Contract], **overrides: Any) -> dict[str, Any]:
    return {**SAMPLES[cls], **overrides}


def minimal(cls: type[Contract]) -> dict[str, Any]:
    """Only the fields the contract requires."""
    return {k: v for k, v in SAMPLES[cls].items() if cls.model_fields[k].is_required()}


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {value!r}")


def as_json(data: dict[str, Any]) -> str:
    """Wire JSON for a sample; non-finite floats become `NaN`/`Infinity`/`-Infinity` literals."""
    return json.dumps(data, default=_default, allow_nan=True)


def without(data: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != key}
