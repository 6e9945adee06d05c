"""Bad input is rejected with a precise error: the ValidationError names the offending field.

One test per rule, each trying the rule on every field it covers. Every case is tried the way a non-Python
producer sends it (JSON text, including the `NaN`/`Infinity` literals Python's json writes) and, where the
value exists in Python, as a Python object too. The fields of each kind are pinned by hand, with their bounds;
the `test_*_cover_the_schema` guards fail when a new field of a kind appears without being listed here. A
failing rule lists every field and value that broke it, not only the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

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
from tests.contracts.contract_samples import ALL_MODELS, SAMPLES, as_json, sample

Field = tuple[type[Contract], str]
ID_PATTERN = "^[A-Za-z0-9._:@/+=-]+$"


def _id(value: Any) -> str:
    if isinstance(value, type):
        return value.__name__
    text = repr(value)
    return text if len(text) <= 24 else f"{text[:20]}...({len(text)})"


def _validate_json(cls: type[Contract], data: dict[str, Any]) -> Contract:
    return cls.model_validate_json(as_json(data))


def _validate_python(cls: type[Contract], data: dict[str, Any]) -> Contract:
    return cls.model_validate(data)


Route = Callable[[type[Contract], dict[str, Any]], Contract]
ROUTES: list[Route] = [_validate_json, _validate_python]
Case = tuple[type[Contract], str, Any, Route]
"""A model, a field, the value given to it, and the route it takes."""


def assert_rejected_at(
    cls: type[Contract],
    data: dict[str, Any],
    loc: tuple[str | int, ...],
    route: Callable[[type[Contract], dict[str, Any]], Contract] = _validate_json,
) -> list[Any]:
    """The input is rejected with exactly one error, located at `loc`."""
    with pytest.raises(ValidationError) as exc:
        route(cls, data)
    errors = exc.value.errors()
    assert errors[0]["loc"] == loc, errors
    assert len(errors) == 1, errors
    return errors


def _wrong(cls: type[Contract], field: str, value: Any, route: Route, error_type: str | None) -> str | None:
    """None when `value` in `field` is rejected with one error at that field (of `error_type` if given)."""
    try:
        route(cls, sample(cls, **{field: value}))
    except ValidationError as exc:
        errors = exc.errors()
        if len(errors) == 1 and errors[0]["loc"] == (field,) and error_type in (None, errors[0]["type"]):
            return None
        return f"{errors}"
    return "accepted"


def assert_all_rejected(cases: Iterable[Case], error_type: str | None = None) -> int:
    """Every case rejected at its field; fails listing each one that was not. Returns how many were tried."""
    tried, failures = 0, []
    for cls, field, value, route in cases:
        tried += 1
        if (why := _wrong(cls, field, value, route, error_type)) is not None:
            failures.append(f"{cls.__name__}.{field} = {_id(value)} ({route.__name__}): {why}")
    assert failures == []
    assert tried > 0
    return tried


def assert_all_kept(cases: Iterable[Case]) -> None:
    """Every case accepted, and the field holds the value given."""
    failures = []
    for cls, field, value, route in cases:
        try:
            kept = getattr(route(cls, sample(cls, **{field: value})), field)
        except ValidationError as exc:
            kept = exc.errors()
        if kept != value:
            failures.append(f"{cls.__name__}.{field} = {_id(value)} ({route.__name__}): {kept!r}")
    assert failures == []


# --- which fields are which, read back from the JSON Schema (for the coverage guards) -----------------------


def _properties(cls: type[Contract]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, prop in cls.model_json_schema()["properties"].items():
        branches = [b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"]
        out[name] = branches[0] if len(branches) == 1 else prop
    return out


def _schema_fields(predicate: Callable[[dict[str, Any]], bool]) -> set[Field]:
    return {(cls, name) for cls in ALL_MODELS for name, prop in _properties(cls).items() if predicate(prop)}


# --- non-finite floats ------------------------------------------------------------------------------------

FLOAT_FIELDS: list[Field] = [
    (SuccessFactors, "grounding_confidence"),
    (SuccessFactors, "success_rate"),
    (ExecutionRecord, "duration_seconds"),
    (ExecutionRecord, "validation_pass_rate"),
    (ExecutionRecord, "confidence_score"),
    (PatternRecord, "effectiveness_score"),
    (PatternRecord, "variance"),
    (PatternRecord, "priority_score"),
    (PatternRecord, "trust_score"),
    (ErrorRecoveryRecord, "suggested_wait"),
    (ErrorRecoveryRecord, "actual_wait"),
    (RateLimitEvent, "duration_seconds"),
    (EscalationDecisionRecord, "confidence"),
    (EscalationDecisionRecord, "validation_pass_rate"),
    (PatternDiscoveryEvent, "effectiveness_score"),
    (DriftMetrics, "effectiveness_before"),
    (DriftMetrics, "effectiveness_after"),
    (DriftMetrics, "grounding_confidence_avg"),
    (DriftMetrics, "drift_magnitude"),
    (EpistemicDriftMetrics, "confidence_before"),
    (EpistemicDriftMetrics, "confidence_after"),
    (EpistemicDriftMetrics, "belief_change"),
    (EpistemicDriftMetrics, "belief_entropy"),
    (EvolutionTrajectoryEntry, "cv_avg"),
    (EvolutionTrajectoryEntry, "loc_accuracy"),
    (PatternEntropyMetrics, "shannon_entropy"),
    (PatternEntropyMetrics, "max_possible_entropy"),
    (PatternEntropyMetrics, "diversity_index"),
    (PatternEntropyMetrics, "dominant_pattern_share"),
    (ExplorationBudgetRecord, "budget_value"),
    (ExplorationBudgetRecord, "entropy_at_time"),
    (EntropyResponseRecord, "entropy_at_trigger"),
    (EntropyResponseRecord, "threshold_used"),
    (PatternApplied, "grounding_confidence"),
]


def test_float_fields_cover_the_schema() -> None:
    assert set(FLOAT_FIELDS) == _schema_fields(lambda p: p.get("type") == "number")


def test_non_finite_floats_are_rejected() -> None:
    non_finite = [float("nan"), float("inf"), float("-inf")]
    assert_all_rejected(
        ((cls, field, value, route) for cls, field in FLOAT_FIELDS for value in non_finite for route in ROUTES),
        "finite_number",
    )


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_literals_are_rejected(literal: str) -> None:
    """The literals exactly as a JavaScript or Python producer might write them."""
    raw = as_json(sample(SuccessFactors)).replace('"success_rate": 0.25', f'"success_rate": {literal}')
    assert literal in raw
    with pytest.raises(ValidationError) as exc:
        SuccessFactors.model_validate_json(raw)
    assert exc.value.errors()[0]["loc"] == ("success_rate",)


def test_nan_in_a_nested_record_names_the_path() -> None:
    factors = {**SAMPLES[SuccessFactors], "success_rate": float("nan")}
    assert_rejected_at(
        PatternRecord, sample(PatternRecord, success_factors=factors), ("success_factors", "success_rate")
    )
    assert_rejected_at(
        PatternApplied, sample(PatternApplied, success_factors=factors), ("success_factors", "success_rate")
    )


# --- wrong types ------------------------------------------------------------------------------------------

WRONG_TYPES: list[tuple[type[Contract], str, Any]] = [
    # string for int
    (ExecutionRecord, "sheet_num", "4"),
    (ExecutionRecord, "retry_count", "1"),
    (PatternRecord, "occurrence_count", "7"),
    (SuccessFactors, "occurrence_count", "3"),
    (SuccessFactors, "retry_iteration", "0"),
    (ErrorRecoveryRecord, "time_of_day", "13"),
    (PatternObserved, "provenance_sheet_num", "3"),
    # fractional float for int
    (ExecutionRecord, "sheet_num", 4.5),
    (DriftMetrics, "window_size", 2.5),
    # int (and string) for bool
    (ExecutionRecord, "success_without_retry", 1),
    (PatternRecord, "active", 0),
    (SuccessFactors, "escalation_was_pending", 1),
    (DriftMetrics, "threshold_exceeded", 0),
    (PatternApplied, "success", 1),
    (EntropyResponseRecord, "budget_boosted", 1),
    (PatternApplied, "success", "true"),
    # bool for int and float
    (ExecutionRecord, "retry_count", True),
    (SuccessFactors, "retry_iteration", False),
    (DriftMetrics, "window_size", True),
    (ExecutionRecord, "duration_seconds", True),
    (SuccessFactors, "success_rate", True),
    # string for float
    (ExecutionRecord, "validation_pass_rate", "0.5"),
    (RateLimitEvent, "duration_seconds", "60"),
    # list (or number) for str
    (ExecutionRecord, "status", ["ok"]),
    (ExecutionRecord, "workspace_hash", ["ws"]),
    (ExecutionRecord, "model", ["m"]),
    (PatternRecord, "description", ["d"]),
    (PatternTransitioned, "reason", ["r"]),
    (EscalationDecisionRecord, "action", ["retry"]),
    (EscalationOutcomeRecorded, "outcome", ["success"]),
    (ExecutionRecord, "status", 1),
    (ExecutionRecord, "id", 123),
    # str for list, str for nested model
    (ExecutionRecord, "error_codes", "E1"),
    (PatternRecord, "context_tags", "a,b"),
    (PatternRecord, "success_factors", "fast"),
    (PatternRecord, "success_factors", []),
    # number for datetime (a bare epoch is ambiguous)
    (ExecutionRecord, "started_at", 1_700_000_000),
    (PatternRecord, "last_confirmed", 1_700_000_000),
]


def test_wrong_types_are_rejected() -> None:
    assert_all_rejected((cls, field, value, route) for cls, field, value in WRONG_TYPES for route in ROUTES)


@pytest.mark.parametrize("cls", [ExecutionRecord, RateLimitEvent], ids=_id)
def test_python_strings_are_not_datetimes(cls: type[Contract]) -> None:
    """Strict: a Python producer passes datetimes, not strings (JSON carries them as strings)."""
    assert_rejected_at(
        cls,
        sample(cls, recorded_at="2024-01-01T00:00:00Z")
        if cls is RateLimitEvent
        else sample(cls, started_at="2024-01-01T00:00:00Z"),
        ("recorded_at",) if cls is RateLimitEvent else ("started_at",),
        _validate_python,
    )


# --- unknown fields ---------------------------------------------------------------------------------------


def test_every_model_forbids_unknown_fields() -> None:
    assert_all_rejected(((cls, "bogus", 1, route) for cls in ALL_MODELS for route in ROUTES), "extra_forbidden")


@pytest.mark.parametrize("cls", [PatternRecord, PatternApplied], ids=_id)
def test_unknown_fields_in_nested_records_are_rejected(cls: type[Contract]) -> None:
    factors = {**SAMPLES[SuccessFactors], "why": "luck"}
    assert_rejected_at(cls, sample(cls, success_factors=factors), ("success_factors", "why"))


def test_a_records_type_tag_cannot_be_changed() -> None:
    tagged = [cls for cls in ALL_MODELS if "type" in cls.model_fields]
    assert len(tagged) == len(ALL_MODELS) - 2  # all but the read models PatternRecord and SuccessFactors
    assert_all_rejected((cls, "type", "something_else", route) for cls in tagged for route in ROUTES)


# --- oversized strings ------------------------------------------------------------------------------------

IDENTIFIER_FIELDS: list[Field] = [
    (ExecutionRecord, "id"),
    (ExecutionRecord, "workspace_hash"),
    (ExecutionRecord, "job_hash"),
    (PatternRecord, "id"),
    (PatternRecord, "provenance_job_hash"),
    (PatternRecord, "content_hash"),
    (ErrorRecoveryRecord, "id"),
    (RateLimitEvent, "id"),
    (RateLimitEvent, "source_job_hash"),
    (EscalationDecisionRecord, "id"),
    (EscalationDecisionRecord, "job_hash"),
    (PatternDiscoveryEvent, "id"),
    (PatternDiscoveryEvent, "pattern_id"),
    (PatternDiscoveryEvent, "source_job_hash"),
    (DriftMetrics, "pattern_id"),
    (EpistemicDriftMetrics, "pattern_id"),
    (EvolutionTrajectoryEntry, "id"),
    (ExplorationBudgetRecord, "id"),
    (ExplorationBudgetRecord, "job_hash"),
    (EntropyResponseRecord, "id"),
    (EntropyResponseRecord, "job_hash"),
    (PatternObserved, "provenance_job_hash"),
    (PatternApplied, "pattern_id"),
    (PatternApplied, "execution_id"),
    (PatternTransitioned, "pattern_id"),
    (EscalationOutcomeRecorded, "escalation_id"),
    (SessionTrigger, "scope"),
    (SessionTransitioned, "session_id"),
    (SessionTransitioned, "scope"),
    (EditTransitioned, "session_id"),
    (EditTransitioned, "edit_id"),
    (PlaybookWritten, "workspace"),
]

NAME_FIELDS: list[Field] = [
    (ExecutionRecord, "status"),
    (ExecutionRecord, "model"),
    (PatternRecord, "pattern_type"),
    (PatternRecord, "pattern_name"),
    (PatternRecord, "instrument_name"),
    (ErrorRecoveryRecord, "error_code"),
    (ErrorRecoveryRecord, "model"),
    (RateLimitEvent, "error_code"),
    (RateLimitEvent, "model"),
    (EscalationDecisionRecord, "model"),
    (PatternDiscoveryEvent, "pattern_name"),
    (PatternDiscoveryEvent, "pattern_type"),
    (DriftMetrics, "pattern_name"),
    (EpistemicDriftMetrics, "pattern_name"),
    (PatternObserved, "pattern_type"),
    (PatternObserved, "pattern_name"),
    (PatternObserved, "instrument_name"),
    (PatternApplied, "model"),
    (PatternTransitioned, "actor"),
    (SessionTrigger, "subject"),
    (SessionTrigger, "requested_by"),
    (SessionTransitioned, "actor"),
    (EditTransitioned, "actor"),
    (PlaybookWritten, "actor"),
]

TEXT_FIELDS: list[Field] = [
    (PatternRecord, "description"),
    (PatternRecord, "suggested_action"),
    (PatternRecord, "quarantine_reason"),
    (EscalationDecisionRecord, "guidance"),
    (EvolutionTrajectoryEntry, "notes"),
    (ExplorationBudgetRecord, "adjustment_reason"),
    (PatternObserved, "description"),
    (PatternObserved, "suggested_action"),
    (PatternTransitioned, "reason"),
    (SessionTransitioned, "reason"),
    (EditTransitioned, "reason"),
]

MAX_LENGTH: dict[Field, int] = {
    (PlaybookWritten, "text"): 32_000,
    **dict.fromkeys(IDENTIFIER_FIELDS, 128),
    **dict.fromkeys(NAME_FIELDS, 256),
    **dict.fromkeys(TEXT_FIELDS, 8192),
}


def test_string_fields_cover_the_schema() -> None:
    assert set(IDENTIFIER_FIELDS) == _schema_fields(lambda p: p.get("pattern") == ID_PATTERN)
    found = _schema_fields(lambda p: p.get("type") == "string" and "maxLength" in p)
    assert set(MAX_LENGTH) == found


def test_every_bounded_string_refuses_one_character_over_its_bound() -> None:
    cases = [(cls, field, "x" * (limit + 1), route) for (cls, field), limit in MAX_LENGTH.items() for route in ROUTES]
    assert_all_rejected(cases, "string_too_long")


def test_every_bounded_string_keeps_a_string_of_its_bound_whole() -> None:
    assert_all_kept((cls, field, "x" * limit, route) for (cls, field), limit in MAX_LENGTH.items() for route in ROUTES)


def test_length_is_counted_in_characters() -> None:
    """A 256-character name of 4-byte characters is still a valid name."""
    name = "\U0001f41c" * 256
    assert (
        PatternObserved.model_validate_json(as_json(sample(PatternObserved, pattern_name=name))).pattern_name
        == name
    )


def test_empty_names_are_rejected() -> None:
    assert_all_rejected(((cls, field, "", _validate_json) for cls, field in NAME_FIELDS), "string_too_short")


LIST_ITEM_LIMITS: list[tuple[type[Contract], str, int]] = [
    (PatternRecord, "context_tags", 64),
    (PatternDiscoveryEvent, "context_tags", 64),
    (PatternObserved, "context_tags", 64),
    (SuccessFactors, "validation_types", 256),
    (SuccessFactors, "error_categories", 256),
    (ExecutionRecord, "error_codes", 256),
    (EvolutionTrajectoryEntry, "issue_classes", 256),
    (EntropyResponseRecord, "actions_taken", 256),
    (EntropyResponseRecord, "patterns_revisited", 128),
]
"""Each list field and the length bound of its items."""


def test_oversized_or_empty_list_items_are_rejected_at_their_index() -> None:
    failures = []
    for cls, field, limit in LIST_ITEM_LIMITS:
        for item in ("x" * (limit + 1), ""):
            with pytest.raises(ValidationError) as exc:
                _validate_json(cls, sample(cls, **{field: ["ok", item]}))
            if [e["loc"] for e in exc.value.errors()] != [(field, 1)]:
                failures.append(f"{cls.__name__}.{field} item {_id(item)}: {exc.value.errors()}")
        if getattr(_validate_json(cls, sample(cls, **{field: ["x" * limit]})), field) != ["x" * limit]:
            failures.append(f"{cls.__name__}.{field}: an item of {limit} characters is not kept")
    assert failures == []


# --- oversized lists --------------------------------------------------------------------------------------

LIST_LIMITS: dict[Field, int] = {
    (SuccessFactors, "validation_types"): 256,
    (SuccessFactors, "error_categories"): 256,
    (ExecutionRecord, "error_codes"): 256,
    (EvolutionTrajectoryEntry, "issue_classes"): 256,
    (EntropyResponseRecord, "actions_taken"): 256,
    (EntropyResponseRecord, "patterns_revisited"): 1024,
    (PatternRecord, "context_tags"): 64,
    (PatternDiscoveryEvent, "context_tags"): 64,
    (PatternObserved, "context_tags"): 64,
}


def test_list_fields_cover_the_schema() -> None:
    assert set(LIST_LIMITS) == _schema_fields(lambda p: p.get("type") == "array")


def test_every_bounded_list_refuses_one_item_over_its_bound_and_keeps_its_bound() -> None:
    def items(n: int) -> list[str]:
        return [f"i{k}" for k in range(n)]

    assert_all_rejected(
        ((cls, field, items(limit + 1), route) for (cls, field), limit in LIST_LIMITS.items() for route in ROUTES),
        "too_long",
    )
    assert_all_kept(
        (cls, field, items(limit), route) for (cls, field), limit in LIST_LIMITS.items() for route in ROUTES
    )


# --- datetimes --------------------------------------------------------------------------------------------

DATETIME_FIELDS: list[Field] = [
    (ExecutionRecord, "started_at"),
    (ExecutionRecord, "completed_at"),
    (PatternRecord, "first_seen"),
    (PatternRecord, "last_seen"),
    (PatternRecord, "last_confirmed"),
    (PatternRecord, "quarantined_at"),
    (PatternRecord, "validated_at"),
    (PatternRecord, "trust_calculation_date"),
    (PatternRecord, "success_factors_updated_at"),
    (ErrorRecoveryRecord, "recorded_at"),
    (RateLimitEvent, "recorded_at"),
    (RateLimitEvent, "expires_at"),
    (EscalationDecisionRecord, "recorded_at"),
    (PatternDiscoveryEvent, "recorded_at"),
    (PatternDiscoveryEvent, "expires_at"),
    (EvolutionTrajectoryEntry, "recorded_at"),
    (PatternEntropyMetrics, "calculated_at"),
    (ExplorationBudgetRecord, "recorded_at"),
    (EntropyResponseRecord, "recorded_at"),
]


def test_datetime_fields_cover_the_schema() -> None:
    assert set(DATETIME_FIELDS) == _schema_fields(lambda p: p.get("format") == "date-time")


def test_naive_datetimes_are_rejected() -> None:
    naive: list[tuple[Any, Route]] = [
        (datetime(2024, 1, 1, 12, 0), _validate_python),
        ("2024-01-01T12:00:00", _validate_json),
        ("2024-01-01T12:00:00.5", _validate_json),
    ]
    assert_all_rejected(
        ((cls, field, value, route) for cls, field in DATETIME_FIELDS for value, route in naive), "timezone_aware"
    )


PRE_2000 = [
    "1970-01-01T00:00:00Z",  # seed 003's placeholder epoch
    "1970-01-01T00:00:00+00:00",
    "1999-12-31T23:59:59.999999Z",
    "2000-01-01T00:30:00+01:00",  # 1999-12-31T23:30Z: compared after conversion to UTC
    "0001-01-01T00:00:00Z",
]


def test_timestamps_before_2000_are_rejected() -> None:
    assert_all_rejected((cls, field, value, _validate_json) for cls, field in DATETIME_FIELDS for value in PRE_2000)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert_all_rejected((cls, field, epoch, _validate_python) for cls, field in DATETIME_FIELDS)


@pytest.mark.parametrize(
    "value", ["2000-01-01T00:00:00Z", "2000-01-01T01:00:00+01:00", "1999-12-31T19:00:00-05:00"]
)
def test_the_first_instant_of_2000_is_accepted(value: str) -> None:
    record = ExecutionRecord.model_validate_json(as_json(sample(ExecutionRecord, started_at=value)))
    assert record.started_at == datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "value",
    [
        "0001-01-01T00:00:00+01:00",  # UTC instant is in year 0
        "9999-12-31T23:59:59-01:00",  # UTC instant is in year 10000
    ],
)
@pytest.mark.parametrize(
    ("cls", "field"), [(ExecutionRecord, "started_at"), (PatternRecord, "last_confirmed")], ids=_id
)
def test_unrepresentable_utc_instants_are_a_validation_error(
    cls: type[Contract], field: str, value: str
) -> None:
    """Converting these to UTC overflows `datetime`: that must be a ValidationError, not an OverflowError."""
    assert_rejected_at(cls, sample(cls, **{field: value}), (field,))


def test_unrepresentable_utc_instant_from_python_is_a_validation_error() -> None:
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    assert_rejected_at(
        ExecutionRecord, sample(ExecutionRecord, started_at=early), ("started_at",), _validate_python
    )


# --- numeric ranges (rejected, not clamped) ----------------------------------------------------------------

RATIO_FIELDS: list[Field] = [
    (SuccessFactors, "grounding_confidence"),
    (EscalationDecisionRecord, "confidence"),
    (EscalationDecisionRecord, "validation_pass_rate"),
    (PatternDiscoveryEvent, "effectiveness_score"),
    (DriftMetrics, "effectiveness_before"),
    (DriftMetrics, "effectiveness_after"),
    (DriftMetrics, "grounding_confidence_avg"),
    (DriftMetrics, "drift_magnitude"),
    (EpistemicDriftMetrics, "confidence_before"),
    (EpistemicDriftMetrics, "confidence_after"),
    (EpistemicDriftMetrics, "belief_entropy"),
    (PatternEntropyMetrics, "diversity_index"),
    (PatternEntropyMetrics, "dominant_pattern_share"),
    (ExplorationBudgetRecord, "budget_value"),
    (EntropyResponseRecord, "threshold_used"),
    (PatternApplied, "grounding_confidence"),
]


def test_ratio_fields_cover_the_schema() -> None:
    assert set(RATIO_FIELDS) == _schema_fields(
        lambda p: p.get("type") == "number" and p.get("minimum") == 0.0 and p.get("maximum") == 1.0
    )


def test_out_of_range_ratios_are_rejected_not_clamped() -> None:
    values = [1.5, -0.1, 1.0000000001, -1e-12, 100]
    assert_all_rejected(
        (cls, field, value, route) for cls, field in RATIO_FIELDS for value in values for route in ROUTES
    )


def test_ratio_bounds_are_inclusive() -> None:
    assert_all_kept((cls, field, value, _validate_json) for cls, field in RATIO_FIELDS for value in (0.0, 1.0, 0, 1))


@given(
    ratio=st.sampled_from(RATIO_FIELDS),
    value=st.floats(allow_nan=False, allow_infinity=False) | st.floats(min_value=-0.01, max_value=1.01),
    route=st.sampled_from(ROUTES),
)
def test_a_ratio_is_kept_exactly_inside_0_to_1_and_rejected_outside(ratio: Field, value: float, route: Route) -> None:
    cls, field = ratio
    if 0.0 <= value <= 1.0:
        assert getattr(route(cls, sample(cls, **{field: value})), field) == value
    else:
        assert _wrong(cls, field, value, route, None) is None


def test_pattern_discovery_effectiveness_1_5_is_rejected() -> None:
    """The brief's example: a broadcast ratio is the producer's claim, so it is rejected, never clamped."""
    with pytest.raises(ValidationError) as exc:
        PatternDiscoveryEvent.model_validate_json(
            as_json(sample(PatternDiscoveryEvent, effectiveness_score=1.5))
        )
    assert exc.value.errors()[0]["loc"] == ("effectiveness_score",)


OUT_OF_RANGE: list[tuple[type[Contract], str, Any]] = [
    (EpistemicDriftMetrics, "belief_change", -1.5),
    (EpistemicDriftMetrics, "belief_change", 1.0001),
    (RateLimitEvent, "duration_seconds", 0.0),
    (RateLimitEvent, "duration_seconds", -1.0),
    (RateLimitEvent, "duration_seconds", 86_400.5),
    (ErrorRecoveryRecord, "time_of_day", -1),
    (ErrorRecoveryRecord, "time_of_day", 24),
    (DriftMetrics, "window_size", 0),
    (EpistemicDriftMetrics, "window_size", 0),
    (ErrorRecoveryRecord, "suggested_wait", -0.1),
    (ErrorRecoveryRecord, "actual_wait", 2e12),
    (PatternEntropyMetrics, "shannon_entropy", -1.0),
    (ExplorationBudgetRecord, "entropy_at_time", -0.5),
    (ExecutionRecord, "sheet_num", -1),
    (ExecutionRecord, "sheet_num", 2**53 + 1),
    (PatternRecord, "occurrence_count", -1),
    (PatternRecord, "led_to_success_count", -1),
    (PatternRecord, "provenance_sheet_num", -1),
    (SuccessFactors, "retry_iteration", -1),
    (EscalationDecisionRecord, "retry_count", -1),
    (EntropyResponseRecord, "quarantine_revisits", -1),
    (EvolutionTrajectoryEntry, "test_loc", -1),
    (PatternObserved, "provenance_sheet_num", -1),
]


def test_out_of_range_numbers_are_rejected() -> None:
    assert_all_rejected((cls, field, value, route) for cls, field, value in OUT_OF_RANGE for route in ROUTES)


RANGE_BOUNDS: list[tuple[type[Contract], str, Any]] = [
    (EpistemicDriftMetrics, "belief_change", -1.0),
    (EpistemicDriftMetrics, "belief_change", 1.0),
    (RateLimitEvent, "duration_seconds", 1e-9),
    (RateLimitEvent, "duration_seconds", 86_400.0),
    (ErrorRecoveryRecord, "time_of_day", 0),
    (ErrorRecoveryRecord, "time_of_day", 23),
    (DriftMetrics, "window_size", 1),
    (ExecutionRecord, "sheet_num", 2**53),
]
"""The inclusive ends of the ranges OUT_OF_RANGE steps past."""


def test_range_bounds_are_accepted() -> None:
    assert_all_kept((cls, field, value, _validate_json) for cls, field, value in RANGE_BOUNDS)


# --- identifiers ------------------------------------------------------------------------------------------

BAD_IDS = [
    "",
    " ",
    "a b",
    " lead",
    "trail ",
    "tab\there",
    "new\nline",
    "trailing-newline\n",
    "x" * 129,
    "ünïcode",
    "nul\x00",
    "semi;colon",
    "#hash",
]


GOOD_IDS = ["x" * 128, "A-Za-z0-9._:@/+=-", "sha256:0123abcd", "w/ork@space=1+2"]


def test_invalid_ids_are_rejected() -> None:
    assert_all_rejected((cls, field, value, _validate_json) for cls, field in IDENTIFIER_FIELDS for value in BAD_IDS)


def test_valid_ids_are_accepted() -> None:
    assert_all_kept((cls, field, value, _validate_json) for cls, field in IDENTIFIER_FIELDS for value in GOOD_IDS)


_ID_CHARS = re.compile(r"[A-Za-z0-9._:@/+=-]+")


@given(
    where=st.sampled_from(IDENTIFIER_FIELDS),
    value=st.from_regex(r"[A-Za-z0-9._:@/+=-]{1,140}", fullmatch=True) | st.text(max_size=140),
    route=st.sampled_from(ROUTES),
)
def test_an_id_is_accepted_exactly_when_it_is_1_to_128_id_characters(where: Field, value: str, route: Route) -> None:
    cls, field = where
    if _ID_CHARS.fullmatch(value) and len(value) <= 128:
        assert getattr(route(cls, sample(cls, **{field: value})), field) == value
    else:
        assert _wrong(cls, field, value, route, None) is None


def test_invalid_ids_inside_a_list_name_their_index() -> None:
    assert_rejected_at(
        EntropyResponseRecord,
        sample(EntropyResponseRecord, patterns_revisited=["ok", "bad id"]),
        ("patterns_revisited", 1),
    )


# --- required fields --------------------------------------------------------------------------------------


def test_missing_required_fields_are_named() -> None:
    required = [(cls, name) for cls in ALL_MODELS for name, f in cls.model_fields.items() if f.is_required()]
    assert len(required) > 100
    failures = []
    for cls, field in required:
        with pytest.raises(ValidationError) as exc:
            _validate_json(cls, {k: v for k, v in SAMPLES[cls].items() if k != field})
        if [(e["loc"], e["type"]) for e in exc.value.errors()] != [((field,), "missing")]:
            failures.append(f"{cls.__name__}.{field}: {exc.value.errors()}")
    assert failures == []
