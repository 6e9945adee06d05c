"""Bad input is rejected with a precise error: the ValidationError names the offending field.

Every case is tried the way a non-Python producer sends it (JSON text, including the `NaN`/`Infinity` literals
Python's json writes) and, where the value exists in Python, as a Python object too. Parametrisation is
pinned by hand; the `test_*_cover_the_schema` guards fail when a new field of a kind appears without being
listed here.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
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


ROUTES: list[Callable[[type[Contract], dict[str, Any]], Contract]] = [_validate_json, _validate_python]
ROUTE_IDS = ["json", "python"]


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


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize(("cls", "field"), FLOAT_FIELDS, ids=_id)
def test_non_finite_floats_are_rejected(cls: type[Contract], field: str, value: float, route: Any) -> None:
    errors = assert_rejected_at(cls, sample(cls, **{field: value}), (field,), route)
    assert errors[0]["type"] == "finite_number"


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


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(("cls", "field", "value"), WRONG_TYPES, ids=_id)
def test_wrong_types_are_rejected(cls: type[Contract], field: str, value: Any, route: Any) -> None:
    assert_rejected_at(cls, sample(cls, **{field: value}), (field,), route)


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


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("cls", ALL_MODELS, ids=_id)
def test_unknown_fields_are_rejected(cls: type[Contract], route: Any) -> None:
    errors = assert_rejected_at(cls, sample(cls, bogus=1), ("bogus",), route)
    assert errors[0]["type"] == "extra_forbidden"


@pytest.mark.parametrize("cls", [PatternRecord, PatternApplied], ids=_id)
def test_unknown_fields_in_nested_records_are_rejected(cls: type[Contract]) -> None:
    factors = {**SAMPLES[SuccessFactors], "why": "luck"}
    assert_rejected_at(cls, sample(cls, success_factors=factors), ("success_factors", "why"))


@pytest.mark.parametrize("cls", [c for c in ALL_MODELS if "type" in c.model_fields], ids=_id)
def test_a_records_type_tag_cannot_be_changed(cls: type[Contract]) -> None:
    assert_rejected_at(cls, sample(cls, type="something_else"), ("type",))


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

MAX_LENGTH = {
    (PlaybookWritten, "text"): 32_000,
    **dict.fromkeys(IDENTIFIER_FIELDS, 128),
    **dict.fromkeys(NAME_FIELDS, 256),
    **dict.fromkeys(TEXT_FIELDS, 8192),
}


def test_string_fields_cover_the_schema() -> None:
    assert set(IDENTIFIER_FIELDS) == _schema_fields(lambda p: p.get("pattern") == ID_PATTERN)
    found = _schema_fields(lambda p: p.get("type") == "string" and "maxLength" in p)
    assert set(MAX_LENGTH) == found


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(("cls", "field"), list(MAX_LENGTH), ids=_id)
def test_oversized_strings_are_rejected_not_truncated(cls: type[Contract], field: str, route: Any) -> None:
    limit = MAX_LENGTH[(cls, field)]
    errors = assert_rejected_at(cls, sample(cls, **{field: "x" * (limit + 1)}), (field,), route)
    assert errors[0]["type"] == "string_too_long"
    # The limit itself is fine, and is kept whole.
    assert getattr(route(cls, sample(cls, **{field: "x" * limit})), field) == "x" * limit


def test_length_is_counted_in_characters() -> None:
    """A 256-character name of 4-byte characters is still a valid name."""
    name = "\U0001f41c" * 256
    assert (
        PatternObserved.model_validate_json(as_json(sample(PatternObserved, pattern_name=name))).pattern_name
        == name
    )


@pytest.mark.parametrize(("cls", "field"), NAME_FIELDS, ids=_id)
def test_empty_names_are_rejected(cls: type[Contract], field: str) -> None:
    errors = assert_rejected_at(cls, sample(cls, **{field: ""}), (field,))
    assert errors[0]["type"] == "string_too_short"


@pytest.mark.parametrize(
    ("cls", "field", "limit"),
    [
        (PatternRecord, "context_tags", 64),
        (PatternDiscoveryEvent, "context_tags", 64),
        (PatternObserved, "context_tags", 64),
        (SuccessFactors, "validation_types", 256),
        (SuccessFactors, "error_categories", 256),
        (ExecutionRecord, "error_codes", 256),
        (EvolutionTrajectoryEntry, "issue_classes", 256),
        (EntropyResponseRecord, "actions_taken", 256),
        (EntropyResponseRecord, "patterns_revisited", 128),
    ],
    ids=_id,
)
def test_oversized_list_items_are_rejected(cls: type[Contract], field: str, limit: int) -> None:
    assert_rejected_at(cls, sample(cls, **{field: ["ok", "x" * (limit + 1)]}), (field, 1))
    assert_rejected_at(cls, sample(cls, **{field: ["ok", ""]}), (field, 1))


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


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(("cls", "field"), list(LIST_LIMITS), ids=_id)
def test_oversized_lists_are_rejected(cls: type[Contract], field: str, route: Any) -> None:
    limit = LIST_LIMITS[(cls, field)]
    errors = assert_rejected_at(
        cls, sample(cls, **{field: [f"i{n}" for n in range(limit + 1)]}), (field,), route
    )
    assert errors[0]["type"] == "too_long"
    assert len(getattr(route(cls, sample(cls, **{field: [f"i{n}" for n in range(limit)]})), field)) == limit


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


@pytest.mark.parametrize(
    "naive",
    [datetime(2024, 1, 1, 12, 0), "2024-01-01T12:00:00", "2024-01-01T12:00:00.5"],
    ids=["python", "json", "json-fraction"],
)
@pytest.mark.parametrize(("cls", "field"), DATETIME_FIELDS, ids=_id)
def test_naive_datetimes_are_rejected(cls: type[Contract], field: str, naive: Any) -> None:
    route = _validate_python if isinstance(naive, datetime) else _validate_json
    errors = assert_rejected_at(cls, sample(cls, **{field: naive}), (field,), route)
    assert errors[0]["type"] == "timezone_aware"


PRE_2000 = [
    "1970-01-01T00:00:00Z",  # seed 003's placeholder epoch
    "1970-01-01T00:00:00+00:00",
    "1999-12-31T23:59:59.999999Z",
    "2000-01-01T00:30:00+01:00",  # 1999-12-31T23:30Z: compared after conversion to UTC
    "0001-01-01T00:00:00Z",
]


@pytest.mark.parametrize("value", PRE_2000)
@pytest.mark.parametrize(("cls", "field"), DATETIME_FIELDS, ids=_id)
def test_timestamps_before_2000_are_rejected(cls: type[Contract], field: str, value: str) -> None:
    assert_rejected_at(cls, sample(cls, **{field: value}), (field,))


@pytest.mark.parametrize(("cls", "field"), DATETIME_FIELDS, ids=_id)
def test_the_python_epoch_is_rejected(cls: type[Contract], field: str) -> None:
    assert_rejected_at(
        cls, sample(cls, **{field: datetime(1970, 1, 1, tzinfo=UTC)}), (field,), _validate_python
    )


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


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("value", [1.5, -0.1, 1.0000000001, -1e-12, 100])
@pytest.mark.parametrize(("cls", "field"), RATIO_FIELDS, ids=_id)
def test_out_of_range_ratios_are_rejected_not_clamped(
    cls: type[Contract], field: str, value: float, route: Any
) -> None:
    errors = assert_rejected_at(cls, sample(cls, **{field: value}), (field,), route)
    assert errors[0]["type"] in {"less_than_equal", "greater_than_equal"}


@pytest.mark.parametrize("value", [0.0, 1.0, 0, 1])
@pytest.mark.parametrize(("cls", "field"), RATIO_FIELDS, ids=_id)
def test_ratio_bounds_are_inclusive(cls: type[Contract], field: str, value: float) -> None:
    assert getattr(_validate_json(cls, sample(cls, **{field: value})), field) == value


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


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(("cls", "field", "value"), OUT_OF_RANGE, ids=_id)
def test_out_of_range_numbers_are_rejected(cls: type[Contract], field: str, value: Any, route: Any) -> None:
    assert_rejected_at(cls, sample(cls, **{field: value}), (field,), route)


@pytest.mark.parametrize(
    ("cls", "field", "value"),
    [
        (EpistemicDriftMetrics, "belief_change", -1.0),
        (EpistemicDriftMetrics, "belief_change", 1.0),
        (RateLimitEvent, "duration_seconds", 1e-9),
        (RateLimitEvent, "duration_seconds", 86_400.0),
        (ErrorRecoveryRecord, "time_of_day", 0),
        (ErrorRecoveryRecord, "time_of_day", 23),
        (DriftMetrics, "window_size", 1),
        (ExecutionRecord, "sheet_num", 2**53),
    ],
    ids=_id,
)
def test_range_bounds_are_accepted(cls: type[Contract], field: str, value: Any) -> None:
    assert getattr(_validate_json(cls, sample(cls, **{field: value})), field) == value


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


@pytest.mark.parametrize("value", BAD_IDS, ids=_id)
@pytest.mark.parametrize(("cls", "field"), IDENTIFIER_FIELDS, ids=_id)
def test_invalid_ids_are_rejected(cls: type[Contract], field: str, value: str) -> None:
    assert_rejected_at(cls, sample(cls, **{field: value}), (field,))


@pytest.mark.parametrize(
    "value", ["x" * 128, "A-Za-z0-9._:@/+=-", "sha256:0123abcd", "w/ork@space=1+2"], ids=_id
)
@pytest.mark.parametrize(("cls", "field"), IDENTIFIER_FIELDS, ids=_id)
def test_valid_ids_are_accepted(cls: type[Contract], field: str, value: str) -> None:
    assert getattr(_validate_json(cls, sample(cls, **{field: value})), field) == value


def test_invalid_ids_inside_a_list_name_their_index() -> None:
    assert_rejected_at(
        EntropyResponseRecord,
        sample(EntropyResponseRecord, patterns_revisited=["ok", "bad id"]),
        ("patterns_revisited", 1),
    )


# --- required fields --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "field"),
    [(cls, name) for cls in ALL_MODELS for name, f in cls.model_fields.items() if f.is_required()],
    ids=_id,
)
def test_missing_required_fields_are_named(cls: type[Contract], field: str) -> None:
    data = {k: v for k, v in SAMPLES[cls].items() if k != field}
    errors = assert_rejected_at(cls, data, (field,))
    assert errors[0]["type"] == "missing"
