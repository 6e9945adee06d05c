"""Seed 000's records as wire contracts: round trips, the seed's names and defaults, and its clamping."""

from __future__ import annotations

import json
import os
import random
import typing
import warnings
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from ulid import ULID

from pheromone.contracts import (
    AdjustmentType,
    DriftMetrics,
    EntropyResponseRecord,
    EpistemicDriftMetrics,
    ErrorRecoveryRecord,
    EscalationDecisionRecord,
    EvolutionTrajectoryEntry,
    ExecutionRecord,
    ExplorationBudgetRecord,
    PatternDiscoveryEvent,
    PatternEntropyMetrics,
    PatternRecord,
    QuarantineStatus,
    RateLimitEvent,
    SuccessFactors,
    TimeOfDayBucket,
    new_id,
    normalise_pattern_name,
    pattern_id,
    time_bucket,
)
from pheromone.contracts import records as records_module
from pheromone.contracts.types import Contract
from tests.contracts.contract_samples import ALL_MODELS, SAMPLES, SEED_RECORDS, as_json, minimal, sample

# --- round trips: each test checks every model ----------------------------------------------------------------


def test_every_model_round_trips_through_json_and_python() -> None:
    """A full sample and a minimal one survive JSON; a full one survives a Python dump; dumping again gives the
    same bytes."""
    for cls in ALL_MODELS:
        record = cls.model_validate(SAMPLES[cls])
        dumped = record.model_dump_json()
        again = cls.model_validate_json(dumped)
        assert (again, again.model_dump_json()) == (record, dumped), cls.__name__
        assert cls.model_validate(record.model_dump()) == record, cls.__name__
        bare = cls.model_validate(minimal(cls))
        assert cls.model_validate_json(bare.model_dump_json()) == bare, cls.__name__


def test_wire_json_from_another_producer_validates_to_the_same_record() -> None:
    for cls in ALL_MODELS:
        assert cls.model_validate_json(as_json(SAMPLES[cls])) == cls.model_validate(SAMPLES[cls]), cls.__name__


def test_every_field_survives_the_round_trip() -> None:
    """Each sample value (not just the model as a whole) comes back out of the JSON."""
    for cls in ALL_MODELS:
        wire = json.loads(cls.model_validate(SAMPLES[cls]).model_dump_json())
        for name, value in SAMPLES[cls].items():
            where = f"{cls.__name__}.{name}"
            if isinstance(value, datetime):
                assert datetime.fromisoformat(wire[name]) == value, where
            elif isinstance(value, dict):
                assert wire[name] == json.loads(as_json(value)), where
            else:
                assert wire[name] == value, where


def test_records_are_immutable() -> None:
    record = ExecutionRecord.model_validate(SAMPLES[ExecutionRecord])
    with pytest.raises(ValidationError):
        record.sheet_num = 5  # type: ignore[misc]


# --- the seed's field names and defaults --------------------------------------------------------------------

_REQUIRED = object()

SEED_FIELDS: dict[type[Contract], dict[str, Any]] = {
    SuccessFactors: {
        "validation_types": [],
        "error_categories": [],
        "prior_sheet_status": None,
        "time_of_day_bucket": None,
        "retry_iteration": 0,
        "escalation_was_pending": False,
        "grounding_confidence": None,
        "occurrence_count": 1,
        "success_rate": 1.0,
    },
    ExecutionRecord: {
        **dict.fromkeys(
            "id workspace_hash job_hash sheet_num started_at completed_at duration_seconds status "
            "retry_count success_without_retry validation_pass_rate confidence_score model".split(),
            _REQUIRED,
        ),
        "error_codes": [],
    },
    PatternRecord: {
        **dict.fromkeys(
            "id pattern_type pattern_name description occurrence_count first_seen last_seen last_confirmed "
            "led_to_success_count led_to_failure_count effectiveness_score variance suggested_action "
            "context_tags priority_score".split(),
            _REQUIRED,
        ),
        "quarantine_status": QuarantineStatus.PENDING,
        "provenance_job_hash": None,
        "provenance_sheet_num": None,
        "quarantined_at": None,
        "validated_at": None,
        "quarantine_reason": None,
        "trust_score": 0.5,
        "trust_calculation_date": None,
        "success_factors": None,
        "success_factors_updated_at": None,
        "active": True,
        "content_hash": None,
        "instrument_name": None,
    },
    ErrorRecoveryRecord: dict.fromkeys(
        "id error_code suggested_wait actual_wait recovery_success recorded_at model time_of_day".split(),
        _REQUIRED,
    ),
    RateLimitEvent: dict.fromkeys(
        "id error_code model recorded_at expires_at source_job_hash duration_seconds".split(), _REQUIRED
    ),
    EscalationDecisionRecord: {
        **dict.fromkeys(
            "id job_hash sheet_num confidence action guidance validation_pass_rate retry_count".split(),
            _REQUIRED,
        ),
        "outcome_after_action": None,
        "recorded_at": _REQUIRED,  # a factory (now, UTC): checked separately below
        "model": None,
    },
    PatternDiscoveryEvent: {
        **dict.fromkeys(
            "id pattern_id pattern_name pattern_type source_job_hash recorded_at expires_at "
            "effectiveness_score".split(),
            _REQUIRED,
        ),
        "context_tags": [],
    },
    DriftMetrics: {
        **dict.fromkeys(
            "pattern_id pattern_name window_size effectiveness_before effectiveness_after "
            "grounding_confidence_avg drift_magnitude drift_direction applications_analyzed".split(),
            _REQUIRED,
        ),
        "threshold_exceeded": False,
    },
    EpistemicDriftMetrics: {
        **dict.fromkeys(
            "pattern_id pattern_name window_size confidence_before confidence_after belief_change "
            "belief_entropy applications_analyzed".split(),
            _REQUIRED,
        ),
        "threshold_exceeded": False,
        "drift_direction": "stable",
    },
    EvolutionTrajectoryEntry: {
        **dict.fromkeys(
            "id cycle recorded_at evolutions_completed evolutions_deferred issue_classes cv_avg "
            "implementation_loc test_loc loc_accuracy".split(),
            _REQUIRED,
        ),
        "research_candidates_resolved": 0,
        "research_candidates_created": 0,
        "notes": "",
    },
    PatternEntropyMetrics: {
        **dict.fromkeys(
            "calculated_at shannon_entropy max_possible_entropy diversity_index unique_pattern_count "
            "effective_pattern_count total_applications dominant_pattern_share".split(),
            _REQUIRED,
        ),
        "threshold_exceeded": False,
    },
    ExplorationBudgetRecord: {
        **dict.fromkeys(
            "id job_hash recorded_at budget_value entropy_at_time adjustment_type".split(), _REQUIRED
        ),
        "adjustment_reason": None,
    },
    EntropyResponseRecord: {
        **dict.fromkeys(
            "id job_hash recorded_at entropy_at_trigger threshold_used actions_taken".split(), _REQUIRED
        ),
        "budget_boosted": False,
        "quarantine_revisits": 0,
        "patterns_revisited": [],
    },
}
"""Each seed-000 record's fields, with the seed's default or _REQUIRED (the seed's dataclass has none)."""

DERIVED = {SuccessFactors, PatternRecord}
"""Records that are not stream payloads, so they carry no `type` discriminator."""


def test_seed_fields_cover_every_seed_record() -> None:
    assert set(SEED_FIELDS) == set(SEED_RECORDS)


def test_field_names_are_the_seeds() -> None:
    for cls in SEED_RECORDS:
        expected = set(SEED_FIELDS[cls]) | (set() if cls in DERIVED else {"type"})
        assert set(cls.model_fields) == expected, cls.__name__


def test_required_fields_and_defaults_are_the_seeds() -> None:
    for cls in SEED_RECORDS:
        for name, default in SEED_FIELDS[cls].items():
            field, where = cls.model_fields[name], f"{cls.__name__}.{name}"
            if default is _REQUIRED:
                # The seed requires it; the contract may only relax that for a generated id or timestamp.
                generated = (name == "id" and cls is not PatternRecord) or (
                    name == "recorded_at" and cls is EscalationDecisionRecord
                )
                assert field.is_required() is not generated, where
            else:
                assert not field.is_required(), where
                assert field.get_default(call_default_factory=True) == default, where


def test_defaults_apply_when_fields_are_omitted() -> None:
    for cls in SEED_RECORDS:
        record = cls.model_validate(minimal(cls))
        for name, default in SEED_FIELDS[cls].items():
            if default is not _REQUIRED:
                assert getattr(record, name) == default, f"{cls.__name__}.{name}"


def test_pattern_record_defaults() -> None:
    record = PatternRecord.model_validate(minimal(PatternRecord))
    assert record.quarantine_status is QuarantineStatus.PENDING
    assert record.trust_score == 0.5
    assert record.active is True
    assert record.success_factors is None


def test_success_factors_defaults() -> None:
    factors = SuccessFactors()
    assert factors.validation_types == []
    assert factors.error_categories == []
    assert factors.prior_sheet_status is None
    assert factors.time_of_day_bucket is None
    assert factors.retry_iteration == 0
    assert factors.escalation_was_pending is False
    assert factors.grounding_confidence is None
    assert factors.occurrence_count == 1
    assert factors.success_rate == 1.0


def test_default_lists_are_not_shared() -> None:
    a, b = SuccessFactors(), SuccessFactors()
    assert a.validation_types is not b.validation_types
    a.validation_types.append("file")
    assert b.validation_types == []


def test_escalation_recorded_at_defaults_to_aware_utc_now() -> None:
    before = datetime.now(UTC)
    record = EscalationDecisionRecord.model_validate(minimal(EscalationDecisionRecord))
    after = datetime.now(UTC)
    assert record.recorded_at.tzinfo is not None
    assert record.recorded_at.utcoffset() is not None
    assert record.recorded_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before <= record.recorded_at <= after
    # ... and the default survives the wire as UTC.
    again = EscalationDecisionRecord.model_validate_json(record.model_dump_json())
    assert again.recorded_at == record.recorded_at


def test_generated_ids_are_fresh_ulids() -> None:
    generating = [c for c in SEED_RECORDS if "id" in c.model_fields and not c.model_fields["id"].is_required()]
    assert len(generating) >= 8
    for cls in generating:
        data = {k: v for k, v in minimal(cls).items() if k != "id"}
        a, b = cls.model_validate(data), cls.model_validate(data)
        assert a.id != b.id, cls.__name__  # type: ignore[attr-defined]
        ULID.from_str(a.id)  # type: ignore[attr-defined]


def test_new_id_is_a_canonical_ulid_of_now() -> None:
    before = datetime.now(UTC)
    value = new_id()
    after = datetime.now(UTC)
    parsed = ULID.from_str(value)
    assert str(parsed) == value  # canonical: 26 upper-case Crockford characters
    # A ULID's time part has millisecond resolution.
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= parsed.datetime <= after


def test_new_id_is_unique() -> None:
    ids = [new_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)


def test_new_id_random_part_varies_within_a_millisecond() -> None:
    ids = [new_id() for _ in range(200)]
    assert len({i[10:] for i in ids}) == len(ids)


def test_ids_of_one_millisecond_sort_in_minting_order() -> None:
    ids = [new_id() for _ in range(2_000)]
    by_ms: dict[str, list[str]] = {}
    for i in ids:
        by_ms.setdefault(i[:10], []).append(i)
    assert any(len(group) > 1 for group in by_ms.values()), "a burst mints several ids per millisecond"
    for group in by_ms.values():
        assert group == sorted(group)


def test_new_id_does_not_depend_on_the_global_random_state() -> None:
    """Any code in the process may seed the global `random` (test frameworks do, simulations do); two
    processes seeded alike must still not mint the same ids, so reseeding must not replay the random part."""
    state = random.getstate()
    try:
        random.seed(12345)
        first = [new_id()[10:] for _ in range(3)]
        random.seed(12345)
        second = [new_id()[10:] for _ in range(3)]
    finally:
        random.setstate(state)
    assert set(first).isdisjoint(second)


def test_forked_children_do_not_repeat_ids() -> None:
    """new_id's docstring: the random generator is reseeded in forked children."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns about fork() in a threaded process; the child only writes to a pipe and exits.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # child: report a few ids and leave without running pytest's teardown
        try:
            os.write(write_end, json.dumps([new_id() for _ in range(5)]).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    parent_ids = [new_id() for _ in range(5)]
    with os.fdopen(read_end, "rb") as pipe:
        child_ids = json.loads(pipe.read())
    os.waitpid(pid, 0)
    assert len(child_ids) == 5
    assert {i[10:] for i in child_ids}.isdisjoint(i[10:] for i in parent_ids)


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("retry_pattern", "Back off on 429"), ("retry_pattern", "back off on 429")),
        (("retry_pattern", "back   off\ton 429"), ("retry_pattern", " back off on 429 ")),
        (("Retry_Pattern", "x"), ("retry_pattern", "x")),
    ],
)
def test_pattern_id_is_stable_over_case_and_whitespace(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert pattern_id(*a) == pattern_id(*b)
    assert normalise_pattern_name(a[1]) == normalise_pattern_name(b[1])


def test_pattern_id_separates_type_from_name() -> None:
    assert pattern_id("a", "b c") != pattern_id("a b", "c")
    assert pattern_id("retry_pattern", "x") != pattern_id("validation_failure", "x")
    assert pattern_id("t", "x") != pattern_id("t", "y")


def test_pattern_id_is_a_valid_identifier() -> None:
    long_name = "n" * 256
    pid = pattern_id("t" * 256, long_name)
    record = PatternRecord.model_validate(sample(PatternRecord, id=pid))
    assert record.id == pid
    assert (
        PatternDiscoveryEvent.model_validate(sample(PatternDiscoveryEvent, pattern_id=pid)).pattern_id == pid
    )


# --- clamping, exactly where the seed clamps ----------------------------------------------------------------

CLAMPS: list[tuple[type[Contract], str, Any, Any]] = [
    (SuccessFactors, "success_rate", 1.5, 1.0),
    (SuccessFactors, "success_rate", -0.5, 0.0),
    (SuccessFactors, "success_rate", 1e300, 1.0),
    (SuccessFactors, "success_rate", 0.0, 0.0),
    (SuccessFactors, "success_rate", 1.0, 1.0),
    (SuccessFactors, "success_rate", 0.3, 0.3),
    (SuccessFactors, "occurrence_count", 0, 1),
    (SuccessFactors, "occurrence_count", -7, 1),
    (SuccessFactors, "occurrence_count", 1, 1),
    (SuccessFactors, "occurrence_count", 5, 5),
    (ExecutionRecord, "duration_seconds", -1.0, 0.0),
    (ExecutionRecord, "duration_seconds", -1e-9, 0.0),
    (ExecutionRecord, "duration_seconds", 0.0, 0.0),
    (ExecutionRecord, "duration_seconds", 12.5, 12.5),
    (ExecutionRecord, "retry_count", -1, 0),
    (ExecutionRecord, "retry_count", -100, 0),
    (ExecutionRecord, "retry_count", 0, 0),
    (ExecutionRecord, "retry_count", 3, 3),
    (ExecutionRecord, "validation_pass_rate", 1.2, 1.0),
    (ExecutionRecord, "validation_pass_rate", -0.2, 0.0),
    (ExecutionRecord, "validation_pass_rate", 0.5, 0.5),
    (ExecutionRecord, "confidence_score", 7.0, 1.0),
    (ExecutionRecord, "confidence_score", -3.0, 0.0),
    (ExecutionRecord, "confidence_score", 0.25, 0.25),
    (PatternRecord, "trust_score", 1.5, 1.0),
    (PatternRecord, "trust_score", -0.5, 0.0),
    (PatternRecord, "trust_score", 0.9, 0.9),
    (PatternRecord, "effectiveness_score", 2.0, 1.0),
    (PatternRecord, "effectiveness_score", -0.1, 0.0),
    (PatternRecord, "effectiveness_score", 0.4, 0.4),
    (PatternRecord, "variance", -0.1, 0.0),
    (PatternRecord, "variance", 3.5, 3.5),
    (PatternRecord, "priority_score", -3.0, 0.0),
    (PatternRecord, "priority_score", 7.5, 7.5),
]


def test_clamps_like_the_seed() -> None:
    for cls, field, given, expected in CLAMPS:
        where = f"{cls.__name__}.{field} = {given!r}"
        from_python = cls.model_validate(sample(cls, **{field: given}))
        from_wire = cls.model_validate_json(as_json(sample(cls, **{field: given})))
        assert getattr(from_python, field) == expected, where
        assert getattr(from_wire, field) == expected, where
        assert type(getattr(from_wire, field)) is type(expected), where
        # What is stored and sent on is the clamped value.
        assert json.loads(from_python.model_dump_json())[field] == expected, where


def test_nested_success_factors_clamp_inside_a_pattern_record() -> None:
    factors = {**SAMPLES[SuccessFactors], "success_rate": 4.0, "occurrence_count": -2}
    record = PatternRecord.model_validate_json(as_json(sample(PatternRecord, success_factors=factors)))
    assert record.success_factors is not None
    assert record.success_factors.success_rate == 1.0
    assert record.success_factors.occurrence_count == 1


SEED_LOWER_CLAMPS = {
    (SuccessFactors, "success_rate"),
    (SuccessFactors, "occurrence_count"),
    (ExecutionRecord, "duration_seconds"),
    (ExecutionRecord, "retry_count"),
    (ExecutionRecord, "validation_pass_rate"),
    (ExecutionRecord, "confidence_score"),
    (PatternRecord, "trust_score"),
    (PatternRecord, "effectiveness_score"),
    (PatternRecord, "variance"),
    (PatternRecord, "priority_score"),
}
"""Every field some seed `__post_init__` raises to a floor."""

SEED_UPPER_CLAMPS = {
    (SuccessFactors, "success_rate"),
    (ExecutionRecord, "validation_pass_rate"),
    (ExecutionRecord, "confidence_score"),
    (PatternRecord, "trust_score"),
    (PatternRecord, "effectiveness_score"),
}
"""Every field some seed `__post_init__` lowers to 1.0."""


def _numeric_fields() -> list[tuple[type[Contract], str, type]]:
    found = []
    for cls in ALL_MODELS:
        for name, field in cls.model_fields.items():
            args = set(typing.get_args(field.annotation)) or {field.annotation}
            kinds = args & {int, float}
            if kinds:
                found.append((cls, name, kinds.pop()))
    return found


def test_only_the_seeds_clamped_fields_clamp() -> None:
    """Every other numeric field rejects out-of-range input instead of silently clamping it."""
    lower, upper = set(), set()
    for cls, name, kind in _numeric_fields():
        low, high = kind(-5), kind(5e6) if kind is float else 5 * 10**6
        try:
            if getattr(cls.model_validate(sample(cls, **{name: low})), name) != low:
                lower.add((cls, name))
        except ValidationError:
            pass
        try:
            if getattr(cls.model_validate(sample(cls, **{name: high})), name) != high:
                upper.add((cls, name))
        except ValidationError:
            pass
    assert lower == SEED_LOWER_CLAMPS
    assert upper == SEED_UPPER_CLAMPS


def test_numeric_field_discovery_sees_the_clamped_fields() -> None:
    """Guard for the test above: it would pass vacuously if it found no fields."""
    found = {(cls, name) for cls, name, _ in _numeric_fields()}
    assert SEED_LOWER_CLAMPS <= found
    assert len(found) > 50


# --- time buckets -----------------------------------------------------------------------------------------


def _seed_get_time_bucket(hour: int) -> str:
    """Seed 000's `SuccessFactors.get_time_bucket`, verbatim."""
    if 5 <= hour < 12:
        return "morning"
    elif 12 <= hour < 17:
        return "afternoon"
    elif 17 <= hour < 21:
        return "evening"
    else:
        return "night"


def test_time_bucket_matches_the_seed_for_every_hour() -> None:
    buckets = [time_bucket(h) for h in range(24)]
    assert all(isinstance(b, TimeOfDayBucket) for b in buckets)
    assert buckets == [_seed_get_time_bucket(h) for h in range(24)]  # a member equals its value
    assert [b.value for b in buckets] == [_seed_get_time_bucket(h) for h in range(24)]


def test_time_bucket_rejects_out_of_range_hours() -> None:
    for hour in [-1, 24, 25, 100, -24]:
        with pytest.raises(ValueError, match="hour"):
            time_bucket(hour)


def test_time_bucket_is_accepted_by_success_factors() -> None:
    for hour in range(24):
        factors = SuccessFactors(time_of_day_bucket=time_bucket(hour))
        assert SuccessFactors.model_validate_json(factors.model_dump_json()) == factors


# --- enums and closed vocabularies --------------------------------------------------------------------------


def test_quarantine_status_values_are_the_seeds() -> None:
    assert {m.name: m.value for m in QuarantineStatus} == {
        "PENDING": "pending",
        "QUARANTINED": "quarantined",
        "VALIDATED": "validated",
        "RETIRED": "retired",
    }


def test_time_of_day_bucket_values_are_the_seeds() -> None:
    assert {m.value for m in TimeOfDayBucket} == {"morning", "afternoon", "evening", "night"}


def test_adjustment_type_values() -> None:
    seed = {"initial", "decay", "boost", "floor_enforced"}
    values = {m.value for m in AdjustmentType}
    assert seed <= values
    # `ceiling_enforced` is the one documented addition (see the enum's docstring).
    assert values - seed == {"ceiling_enforced"}


def test_closed_vocabularies_are_the_seeds() -> None:
    assert {
        alias: set(typing.get_args(getattr(records_module, alias)))
        for alias in ("EscalationAction", "EscalationOutcome", "PriorSheetStatus", "EffectivenessDriftDirection",
                      "EpistemicDriftDirection")
    } == {
        "EscalationAction": {"retry", "skip", "abort", "modify_prompt"},
        "EscalationOutcome": {"success", "failed", "aborted", "skipped"},
        "PriorSheetStatus": {"completed", "failed", "skipped"},
        "EffectivenessDriftDirection": {"positive", "negative", "stable"},
        "EpistemicDriftDirection": {"strengthening", "weakening", "stable"},
    }


ENUM_FIELDS: list[tuple[type[Contract], str, list[str]]] = [
    (PatternRecord, "quarantine_status", [m.value for m in QuarantineStatus]),
    (SuccessFactors, "time_of_day_bucket", [m.value for m in TimeOfDayBucket]),
    (ExplorationBudgetRecord, "adjustment_type", [m.value for m in AdjustmentType]),
    (EscalationDecisionRecord, "action", ["retry", "skip", "abort", "modify_prompt"]),
    (EscalationDecisionRecord, "outcome_after_action", ["success", "failed", "aborted", "skipped"]),
    (SuccessFactors, "prior_sheet_status", ["completed", "failed", "skipped"]),
    (DriftMetrics, "drift_direction", ["positive", "negative", "stable"]),
    (EpistemicDriftMetrics, "drift_direction", ["strengthening", "weakening", "stable"]),
]


def test_enum_fields_accept_each_seed_value_by_string_and_nothing_else() -> None:
    for cls, field, values in ENUM_FIELDS:
        for value in values:
            where = f"{cls.__name__}.{field} = {value!r}"
            from_wire = cls.model_validate_json(as_json(sample(cls, **{field: value})))
            from_python = cls.model_validate(sample(cls, **{field: value}))
            assert getattr(from_wire, field) == value, where
            assert getattr(from_python, field) == value, where
            assert json.loads(from_wire.model_dump_json())[field] == value, where
        with pytest.raises(ValidationError) as exc:
            cls.model_validate_json(as_json(sample(cls, **{field: "not-a-value"})))
        assert exc.value.errors()[0]["loc"] == (field,), cls.__name__


def test_quarantine_status_parses_to_the_enum_member() -> None:
    record = PatternRecord.model_validate_json(as_json(sample(PatternRecord, quarantine_status="retired")))
    assert record.quarantine_status is QuarantineStatus.RETIRED
