"""Ledger queries (seed 003's EventQuery and TimeRange)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import ValidationError

from pheromone.contracts import PAYLOAD_TYPES, EventKind, EventQuery, TimeRange
from pheromone.contracts.queries import MAX_QUERY_LIMIT

START = datetime(2024, 1, 1, tzinfo=UTC)
END = datetime(2024, 1, 2, tzinfo=UTC)


def query_error(**fields: Any) -> dict[str, Any]:
    """Validate from JSON, as the HTTP/CLI layer would; return the single error."""
    with pytest.raises(ValidationError) as exc:
        EventQuery.model_validate_json(json.dumps(fields))
    errors = exc.value.errors()
    assert len(errors) == 1, errors
    return errors[0]  # type: ignore[return-value]


def test_defaults() -> None:
    query = EventQuery()
    assert query.workspace is None
    assert query.time_range is None
    assert query.kinds == []
    assert query.correlation_id is None
    assert query.job is None
    assert query.limit == 100


def test_max_query_limit() -> None:
    assert MAX_QUERY_LIMIT == 10_000


@pytest.mark.parametrize("limit", [1, 2, 100, 9_999, 10_000])
def test_limits_within_bounds_are_accepted(limit: int) -> None:
    assert EventQuery(limit=limit).limit == limit
    assert EventQuery.model_validate_json(json.dumps({"limit": limit})).limit == limit


@pytest.mark.parametrize("limit", [0, -1, 10_001, 10**9])
def test_limits_out_of_bounds_are_rejected(limit: int) -> None:
    assert query_error(limit=limit)["loc"] == ("limit",)
    with pytest.raises(ValidationError):
        EventQuery(limit=limit)


@pytest.mark.parametrize("limit", ["10", 10.5, True, None])
def test_limit_must_be_an_int(limit: Any) -> None:
    assert query_error(limit=limit)["loc"] == ("limit",)


def test_time_range_accepts_open_and_equal_ends() -> None:
    assert TimeRange().start is None
    assert TimeRange(start=START).end is None
    assert TimeRange(end=END).start is None
    assert TimeRange(start=START, end=START).start == START  # inclusive: a single instant
    assert TimeRange(start=START, end=END).end == END


def test_time_range_start_after_end_is_rejected() -> None:
    with pytest.raises(ValidationError, match="start is after its end"):
        TimeRange(start=END, end=START)
    with pytest.raises(ValidationError):
        TimeRange(start=START + timedelta(microseconds=1), end=START)


def test_time_range_order_is_compared_in_utc() -> None:
    """10:00+05:00 is 05:00Z, before 06:00Z, so this range is in order even though 10 > 6."""
    plus5 = timezone(timedelta(hours=5))
    rng = TimeRange.model_validate_json(
        json.dumps({"start": "2024-01-01T10:00:00+05:00", "end": "2024-01-01T06:00:00Z"})
    )
    assert rng.start == datetime(2024, 1, 1, 10, tzinfo=plus5)
    assert rng.start is not None and rng.start.utcoffset() == timedelta(0)
    with pytest.raises(ValidationError):
        TimeRange.model_validate_json(
            json.dumps({"start": "2024-01-01T07:00:00Z", "end": "2024-01-01T10:00:00+05:00"})
        )


def test_bad_time_range_inside_a_query_names_it() -> None:
    error = query_error(time_range={"start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"})
    assert error["loc"] == ("time_range",)


@pytest.mark.parametrize(
    ("field", "value"),
    [("start", "2024-01-01T00:00:00"), ("end", "1970-01-01T00:00:00Z"), ("start", "yesterday"), ("end", 0)],
)
def test_time_range_ends_are_validated_timestamps(field: str, value: Any) -> None:
    assert query_error(time_range={field: value})["loc"] == ("time_range", field)


def test_kinds_accept_strings_of_event_kind_values() -> None:
    values = [k.value for k in EventKind]
    from_python = EventQuery(kinds=values)  # type: ignore[arg-type]
    from_json = EventQuery.model_validate_json(json.dumps({"kinds": values}))
    assert from_python.kinds == from_json.kinds == list(EventKind)
    assert all(isinstance(k, EventKind) for k in from_python.kinds)


def test_kinds_cover_every_payload_type() -> None:
    tags = [cls.model_fields["type"].default for cls in PAYLOAD_TYPES]
    assert EventQuery(kinds=tags).kinds == [EventKind(t) for t in tags]


def test_kinds_accept_members() -> None:
    assert EventQuery(kinds=[EventKind("drift"), EventKind("rate_limit")]).kinds == [
        EventKind("drift"),
        EventKind("rate_limit"),
    ]


@pytest.mark.parametrize("bad", ["nope", "DRIFT", "Drift", "drift ", "", 3, None])
def test_unknown_kinds_are_rejected(bad: Any) -> None:
    assert query_error(kinds=["drift", bad])["loc"] == ("kinds", 1)
    with pytest.raises(ValidationError):
        EventQuery(kinds=["drift", bad])  # type: ignore[list-item]


def test_kinds_must_be_a_list() -> None:
    assert query_error(kinds="drift")["loc"] == ("kinds",)


def test_too_many_kinds_are_rejected() -> None:
    assert query_error(kinds=["drift"] * 33)["loc"] == ("kinds",)
    assert len(EventQuery.model_validate_json(json.dumps({"kinds": ["drift"] * 32})).kinds) == 32


def test_id_filters_are_validated() -> None:
    for field in ["workspace", "job", "correlation_id"]:
        for value in ["", "a b", "x" * 129, "tab\t"]:
            assert query_error(**{field: value})["loc"] == (field,), (field, value)


def test_unknown_query_fields_are_rejected() -> None:
    error = query_error(tenant_id="t")
    assert error["loc"] == ("tenant_id",)
    assert error["type"] == "extra_forbidden"


def test_query_round_trips() -> None:
    query = EventQuery(
        workspace="ws-1",
        time_range=TimeRange(start=START, end=END),
        kinds=[EventKind("execution"), EventKind("pattern_applied")],
        correlation_id="corr-1",
        job="job-1",
        limit=500,
    )
    again = EventQuery.model_validate_json(query.model_dump_json())
    assert again == query
    assert json.loads(query.model_dump_json())["kinds"] == ["execution", "pattern_applied"]
