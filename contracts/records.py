"""Seed 000's records and enums, as wire contracts.

Every name, field and default is the seed's (the global learning store's `models` module); where the seed
clamps in `__post_init__`, the field clamps here too (see `contracts.types`). Ids default to a fresh ULID so a
job can build a record without inventing one; a producer may still supply its own.

Some seed records are *derived* by the store rather than emitted by jobs (`PatternRecord`, `DriftMetrics`,
`EpistemicDriftMetrics`): they are read models returned by queries. What jobs emit about patterns are the
observation and application events in `contracts.events`.
"""

from __future__ import annotations

import hashlib
import os
import random
import time
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from pheromone.contracts.types import (
    Clamped01,
    ClampedMin1Int,
    ClampedNonNeg,
    ClampedNonNegInt,
    Contract,
    Identifier,
    Name,
    NonNegFloat,
    NonNegInt,
    PositiveInt,
    Ratio,
    ShortList,
    Tags,
    Text,
    UtcDatetime,
)

_RANDOM = random.Random(os.urandom(32))
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
"""Every 10-bit value as two Crockford characters: 13 look-ups encode a 130-bit ULID."""
_LOW_BITS = 40
_LOW_MASK = (1 << _LOW_BITS) - 1


class _Ids:
    """The state of `new_id`: the current millisecond, the first 18 characters of its ids, the last low part."""

    ms = -1
    head = ""
    low = 0


_IDS = _Ids()


def _after_fork() -> None:
    _RANDOM.seed(os.urandom(32))
    _IDS.ms = -1  # a child must not continue its parent's sequence


os.register_at_fork(after_in_child=_after_fork)


def new_id() -> str:
    """A fresh ULID (48-bit ms timestamp + 80 random bits, Crockford base32): unique, sortable by time.

    Hand-rolled rather than python-ulid because emit() builds one per event. The random part comes from a
    private generator seeded from os.urandom (a syscall per id would cost more than the rest): ids need
    uniqueness, not secrecy. It is private so that a job seeding the global `random` cannot make two processes
    repeat ids, and it is reseeded in forked children for the same reason. Within one millisecond, the ids of
    a process count up from that millisecond's random value (ULID's monotonic mode), so a burst of ids costs
    four look-ups each instead of thirteen and a random draw; they stay unique and sort in minting order
    (unless the 40-bit low part runs out within the millisecond: then a fresh random value is drawn).
    """
    ids = _IDS
    ms = time.time_ns() // 1_000_000
    low = ids.low + 1
    if ms != ids.ms or low > _LOW_MASK:
        value = ms << 80 | _RANDOM.getrandbits(80)
        ids.ms, ids.head = ms, "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, 30, -10)])
        low = value & _LOW_MASK
    ids.low = low
    return ids.head + _PAIRS[low >> 30] + _PAIRS[low >> 20 & 1023] + _PAIRS[low >> 10 & 1023] + _PAIRS[low & 1023]


def utcnow() -> datetime:
    return datetime.now(UTC)


class QuarantineStatus(StrEnum):
    """Status of a pattern in the quarantine lifecycle (seed 000, v19)."""

    PENDING = "pending"
    QUARANTINED = "quarantined"
    VALIDATED = "validated"
    RETIRED = "retired"


class TimeOfDayBucket(StrEnum):
    MORNING = "morning"
    AFTERNOON = "afternoon"
    EVENING = "evening"
    NIGHT = "night"


class AdjustmentType(StrEnum):
    """ExplorationBudgetRecord.adjustment_type; `ceiling_enforced` completes the seed's list."""

    INITIAL = "initial"
    DECAY = "decay"
    BOOST = "boost"
    FLOOR_ENFORCED = "floor_enforced"
    CEILING_ENFORCED = "ceiling_enforced"


EscalationAction = Literal["retry", "skip", "abort", "modify_prompt"]
EscalationOutcome = Literal["success", "failed", "aborted", "skipped"]
PriorSheetStatus = Literal["completed", "failed", "skipped"]
EffectivenessDriftDirection = Literal["positive", "negative", "stable"]
EpistemicDriftDirection = Literal["strengthening", "weakening", "stable"]

_Status = Annotated[QuarantineStatus, Field(strict=False)]
_Bucket = Annotated[TimeOfDayBucket, Field(strict=False)]
_Adjustment = Annotated[AdjustmentType, Field(strict=False)]


def time_bucket(hour: int) -> TimeOfDayBucket:
    """Seed 000's `SuccessFactors.get_time_bucket`: morning 5-12, afternoon 12-17, evening 17-21, else night."""
    if not 0 <= hour <= 23:
        raise ValueError(f"hour must be 0-23, got {hour}")
    if 5 <= hour < 12:
        return TimeOfDayBucket.MORNING
    if 12 <= hour < 17:
        return TimeOfDayBucket.AFTERNOON
    if 17 <= hour < 21:
        return TimeOfDayBucket.EVENING
    return TimeOfDayBucket.NIGHT


class SuccessFactors(Contract):
    """WHY a pattern succeeded: the context conditions present (seed 000, v22)."""

    validation_types: ShortList = Field(default_factory=list)
    error_categories: ShortList = Field(default_factory=list)
    prior_sheet_status: PriorSheetStatus | None = None
    time_of_day_bucket: _Bucket | None = None
    retry_iteration: NonNegInt = 0
    escalation_was_pending: bool = False
    grounding_confidence: Ratio | None = None
    occurrence_count: ClampedMin1Int = 1
    success_rate: Clamped01 = 1.0


class ExecutionRecord(Contract):
    """A record of a sheet execution."""

    type: Literal["execution"] = "execution"
    id: Identifier = Field(default_factory=new_id)
    workspace_hash: Identifier
    job_hash: Identifier
    sheet_num: NonNegInt
    started_at: UtcDatetime
    completed_at: UtcDatetime
    duration_seconds: ClampedNonNeg
    status: Name
    retry_count: ClampedNonNegInt
    success_without_retry: bool
    validation_pass_rate: Clamped01
    confidence_score: Clamped01
    model: Name | None
    error_codes: ShortList = Field(default_factory=list)


class PatternRecord(Contract):
    """A pattern as the store knows it (read model; derived fields are the store's, see docs/LEARNING.md)."""

    id: Identifier
    pattern_type: Name
    pattern_name: Name
    description: Text
    occurrence_count: NonNegInt
    first_seen: UtcDatetime
    last_seen: UtcDatetime
    last_confirmed: UtcDatetime | None
    led_to_success_count: NonNegInt
    led_to_failure_count: NonNegInt
    effectiveness_score: Clamped01
    variance: ClampedNonNeg
    suggested_action: Text | None
    context_tags: Tags
    priority_score: ClampedNonNeg
    quarantine_status: _Status = QuarantineStatus.PENDING
    provenance_job_hash: Identifier | None = None
    provenance_sheet_num: NonNegInt | None = None
    quarantined_at: UtcDatetime | None = None
    validated_at: UtcDatetime | None = None
    quarantine_reason: Text | None = None
    trust_score: Clamped01 = 0.5
    trust_calculation_date: UtcDatetime | None = None
    success_factors: SuccessFactors | None = None
    success_factors_updated_at: UtcDatetime | None = None
    active: bool = True
    content_hash: Identifier | None = None
    instrument_name: Name | None = None


class ErrorRecoveryRecord(Contract):
    """Error recovery timing, for learning adaptive waits."""

    type: Literal["error_recovery"] = "error_recovery"
    id: Identifier = Field(default_factory=new_id)
    error_code: Name
    suggested_wait: NonNegFloat
    actual_wait: NonNegFloat
    recovery_success: bool
    recorded_at: UtcDatetime
    model: Name | None
    time_of_day: Annotated[int, Field(ge=0, le=23)]


class RateLimitEvent(Contract):
    """A rate limit reported by one job, for every workspace to see (Evolution #8)."""

    type: Literal["rate_limit"] = "rate_limit"
    id: Identifier = Field(default_factory=new_id)
    error_code: Name
    model: Name
    recorded_at: UtcDatetime
    expires_at: UtcDatetime
    source_job_hash: Identifier
    duration_seconds: Annotated[float, Field(gt=0.0, le=86_400.0)]


class EscalationDecisionRecord(Contract):
    """A human/AI escalation decision (v11 escalation learning loop)."""

    type: Literal["escalation"] = "escalation"
    id: Identifier = Field(default_factory=new_id)
    job_hash: Identifier
    sheet_num: NonNegInt
    confidence: Ratio
    action: EscalationAction
    guidance: Text | None
    validation_pass_rate: Ratio
    retry_count: NonNegInt
    outcome_after_action: EscalationOutcome | None = None
    recorded_at: UtcDatetime = Field(default_factory=utcnow)
    model: Name | None = None


class PatternDiscoveryEvent(Contract):
    """A pattern discovery broadcast to concurrent jobs, expiring at `expires_at` (v14)."""

    type: Literal["pattern_discovery"] = "pattern_discovery"
    id: Identifier = Field(default_factory=new_id)
    pattern_id: Identifier
    pattern_name: Name
    pattern_type: Name
    source_job_hash: Identifier
    recorded_at: UtcDatetime
    expires_at: UtcDatetime
    effectiveness_score: Ratio
    context_tags: Tags = Field(default_factory=list)


class DriftMetrics(Contract):
    """Effectiveness drift of one pattern between two windows of applications (v12)."""

    type: Literal["drift"] = "drift"
    pattern_id: Identifier
    pattern_name: Name
    window_size: PositiveInt
    effectiveness_before: Ratio
    effectiveness_after: Ratio
    grounding_confidence_avg: Ratio
    drift_magnitude: Annotated[float, Field(ge=0.0, le=1.0)]
    drift_direction: EffectivenessDriftDirection
    applications_analyzed: NonNegInt
    threshold_exceeded: bool = False


class EpistemicDriftMetrics(Contract):
    """Belief (grounding confidence) drift of one pattern between two windows (v21)."""

    type: Literal["epistemic_drift"] = "epistemic_drift"
    pattern_id: Identifier
    pattern_name: Name
    window_size: PositiveInt
    confidence_before: Ratio
    confidence_after: Ratio
    belief_change: Annotated[float, Field(ge=-1.0, le=1.0)]
    belief_entropy: Ratio
    applications_analyzed: NonNegInt
    threshold_exceeded: bool = False
    drift_direction: EpistemicDriftDirection = "stable"


class EvolutionTrajectoryEntry(Contract):
    """One evolution cycle in the self-improvement trajectory (v16). `cycle` is unique."""

    type: Literal["evolution_entry"] = "evolution_entry"
    id: Identifier = Field(default_factory=new_id)
    cycle: NonNegInt
    recorded_at: UtcDatetime
    evolutions_completed: NonNegInt
    evolutions_deferred: NonNegInt
    issue_classes: ShortList
    cv_avg: NonNegFloat
    implementation_loc: NonNegInt
    test_loc: NonNegInt
    loc_accuracy: NonNegFloat
    research_candidates_resolved: NonNegInt = 0
    research_candidates_created: NonNegInt = 0
    notes: Text = ""


class PatternEntropyMetrics(Contract):
    """Shannon entropy of the pattern population's applications."""

    type: Literal["entropy_metrics"] = "entropy_metrics"
    calculated_at: UtcDatetime
    shannon_entropy: NonNegFloat
    max_possible_entropy: NonNegFloat
    diversity_index: Ratio
    unique_pattern_count: NonNegInt
    effective_pattern_count: NonNegInt
    total_applications: NonNegInt
    dominant_pattern_share: Ratio
    threshold_exceeded: bool = False


class ExplorationBudgetRecord(Contract):
    """The exploration budget's state after one adjustment (v23)."""

    type: Literal["budget"] = "budget"
    id: Identifier = Field(default_factory=new_id)
    job_hash: Identifier
    recorded_at: UtcDatetime
    budget_value: Ratio
    entropy_at_time: NonNegFloat | None
    adjustment_type: _Adjustment
    adjustment_reason: Text | None = None


class EntropyResponseRecord(Contract):
    """An automatic response to low pattern entropy (v23)."""

    type: Literal["entropy_response"] = "entropy_response"
    id: Identifier = Field(default_factory=new_id)
    job_hash: Identifier
    recorded_at: UtcDatetime
    entropy_at_trigger: NonNegFloat
    threshold_used: Ratio
    actions_taken: ShortList
    budget_boosted: bool = False
    quarantine_revisits: NonNegInt = 0
    patterns_revisited: Annotated[list[Identifier], Field(max_length=1024)] = Field(default_factory=list)


def normalise_pattern_name(name: str) -> str:
    """Lower-case with whitespace collapsed: the identity part of a pattern's name."""
    return " ".join(name.lower().split())


def pattern_id(pattern_type: str, pattern_name: str) -> str:
    """A pattern's id: stable over type + normalised name, so every job derives the same id."""
    key = f"{normalise_pattern_name(pattern_type)}\x1f{normalise_pattern_name(pattern_name)}"
    return "p_" + hashlib.sha256(key.encode()).hexdigest()[:24]
