"""The event envelope (seed 003): round trips, the `type` discriminator, ids, times and `parse_envelope`."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from ulid import ULID

from pheromone.contracts import (
    MAX_ENTRY_BYTES,
    PAYLOAD_TYPES,
    SCHEMA_VERSION,
    Envelope,
    EscalationOutcomeRecorded,
    EventKind,
    ExecutionRecord,
    PatternApplied,
    PatternObserved,
    RateLimitEvent,
    SuccessFactors,
    parse_envelope,
)
from pheromone.contracts.types import MAX_FLOAT, Contract
from tests.contracts.contract_samples import SAMPLES, T0, as_json, minimal

PAYLOAD_TAGS = [
    "execution",
    "pattern_observed",
    "pattern_applied",
    "pattern_transition",
    "error_recovery",
    "rate_limit",
    "escalation",
    "escalation_outcome",
    "pattern_discovery",
    "evolution_entry",
    "entropy_metrics",
    "budget",
    "entropy_response",
    "drift",
    "epistemic_drift",
    "session_trigger",
    "session_transition",
    "edit_transition",
    "playbook_written",
]
"""The wire names of every payload type: renaming one breaks every stored event, so they are pinned."""


def tag(cls: type[Contract]) -> str:
    return str(cls.model_fields["type"].default)


def envelope(payload: Any, **fields: Any) -> Envelope:
    return Envelope(workspace="ws-1", job="job-1", payload=payload, **fields)


def wire(payload_cls: type[Contract] = PatternObserved, **overrides: Any) -> dict[str, Any]:
    """A complete envelope as a JSON-ready dict, as a non-Python producer would send it."""
    data: dict[str, Any] = {
        "schema_version": 1,
        "event_id": "01HZX3J8Q0M5Y7V2K9D4C6B8A1",
        "occurred_at": "2024-05-06T07:08:09.123456Z",
        "workspace": "ws-1",
        "job": "job-1",
        "correlation_id": "corr-1",
        "payload": {"type": tag(payload_cls), **json.loads(as_json(SAMPLES[payload_cls]))},
    }
    data.update(overrides)
    return data


def parse(data: dict[str, Any]) -> Envelope:
    return parse_envelope(json.dumps(data))


def first_error(data: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ValidationError) as exc:
        parse(data)
    return exc.value.errors()[0]  # type: ignore[return-value]


# --- round trips and the discriminator ---------------------------------------------------------------------


def test_samples_cover_every_payload_type() -> None:
    assert set(PAYLOAD_TYPES) <= set(SAMPLES)


def test_payload_type_tags_are_pinned_and_unique() -> None:
    assert [tag(cls) for cls in PAYLOAD_TYPES] == PAYLOAD_TAGS
    assert len(set(PAYLOAD_TAGS)) == len(PAYLOAD_TAGS)


def test_envelope_round_trips_for_every_payload_type() -> None:
    """A full payload and a minimal one, from text and from bytes; the kind is the payload's tag."""
    for cls in PAYLOAD_TYPES:
        env = envelope(cls.model_validate(SAMPLES[cls]), correlation_id="corr-1", occurred_at=T0)
        dumped = env.model_dump_json()
        for raw in (dumped, dumped.encode()):
            again = parse_envelope(raw)
            assert again == env, cls.__name__
            assert type(again.payload) is cls
            assert again.kind == tag(cls) == again.payload.type
            assert EventKind(again.kind) == again.kind
        assert parse_envelope(dumped).model_dump_json() == dumped, cls.__name__
        bare = envelope(cls.model_validate(minimal(cls)))
        assert parse_envelope(bare.model_dump_json()) == bare, cls.__name__


def test_wire_json_selects_the_payload_class_by_type() -> None:
    for cls in PAYLOAD_TYPES:
        env = parse(wire(cls))
        assert type(env.payload) is cls
        assert env.payload == cls.model_validate(SAMPLES[cls]), cls.__name__


def test_payload_fields_are_validated_against_the_tagged_type() -> None:
    """A drift payload tagged as an execution is judged as an execution: the error names that branch."""
    data = wire(ExecutionRecord)
    data["payload"]["type"] = "rate_limit"
    error = first_error(data)
    assert error["loc"][:2] == ("payload", "rate_limit")


def test_payload_errors_name_the_field_inside_the_payload() -> None:
    data = wire(ExecutionRecord)
    data["payload"]["validation_pass_rate"] = "high"
    assert first_error(data)["loc"] == ("payload", "execution", "validation_pass_rate")


@pytest.mark.parametrize("bad", ["no_such_type", "Execution", "", "execution ", 1, None])
def test_unknown_payload_type_is_rejected(bad: Any) -> None:
    data = wire(ExecutionRecord)
    data["payload"]["type"] = bad
    error = first_error(data)
    assert error["loc"][0] == "payload"
    assert error["type"] in {
        "union_tag_invalid",
        "union_tag_not_found",
        "model_attributes_type",
        "string_type",
    }


def test_payload_without_type_is_rejected() -> None:
    data = wire(ExecutionRecord)
    del data["payload"]["type"]
    error = first_error(data)
    assert error["loc"] == ("payload",)
    assert error["type"] == "union_tag_not_found"


@pytest.mark.parametrize("payload", [[], "execution", 1, None])
def test_payload_must_be_an_object(payload: Any) -> None:
    assert first_error(wire(payload=payload))["loc"][0] == "payload"


@pytest.mark.parametrize(
    "cls", [c for c in SAMPLES if "type" not in c.model_fields], ids=lambda c: c.__name__
)
def test_read_models_are_not_payloads(cls: type[Contract]) -> None:
    """PatternRecord and SuccessFactors are never sent as events."""
    assert cls not in PAYLOAD_TYPES
    with pytest.raises(ValidationError):
        Envelope(workspace="w", job="j", payload=cls.model_validate(SAMPLES[cls]))  # type: ignore[arg-type]


# --- envelope fields --------------------------------------------------------------------------------------


def test_schema_version_is_1() -> None:
    assert SCHEMA_VERSION == 1
    assert envelope(PatternObserved(pattern_type="t", pattern_name="n")).schema_version == 1
    assert parse(wire(schema_version=1)).schema_version == 1


@pytest.mark.parametrize("version", [0, 2, -1, 100, "1", None, [1], True], ids=repr)
def test_other_schema_versions_are_rejected(version: Any) -> None:
    error = first_error(wire(schema_version=version))
    assert error["loc"] == ("schema_version",)


@pytest.mark.parametrize("field", ["workspace", "job", "payload", "event_id", "occurred_at"])
def test_missing_envelope_fields_are_rejected(field: str) -> None:
    """`event_id` and `occurred_at` are the producer's: a consumer that invented them would give each delivery
    of the same stream entry a different id and time, so a redelivered entry would not deduplicate."""
    data = wire()
    del data[field]
    error = first_error(data)
    assert error["loc"] == (field,)
    assert error["type"] == "missing"


def test_the_published_wire_schema_requires_what_parse_envelope_requires() -> None:
    """`pheromone schema Envelope` prints WireEnvelope: producers in other languages see the same rule."""
    from pheromone.contracts.events import WireEnvelope

    required = set(WireEnvelope.model_json_schema()["required"])
    assert required == {"event_id", "occurred_at", "workspace", "job", "payload"}
    assert WireEnvelope.model_json_schema()["title"] == "Envelope"


def test_parsing_the_same_bytes_twice_gives_the_same_envelope() -> None:
    for field in ("event_id", "occurred_at"):
        data = wire()
        del data[field]
        raw = json.dumps(data)
        try:
            first = parse_envelope(raw)
        except ValidationError:
            continue  # rejected: also deterministic
        time.sleep(0.002)
        assert parse_envelope(raw) == first, f"parsing twice without {field} gave two different envelopes"


def test_correlation_id_is_optional() -> None:
    data = wire()
    del data["correlation_id"]
    assert parse(data).correlation_id is None


def test_envelope_ids_are_validated() -> None:
    for field in ["workspace", "job", "correlation_id"]:
        for value in ["", "a b", "x" * 129, "new\nline", 7]:
            assert first_error(wire(**{field: value}))["loc"] == (field,), (field, value)


def test_unknown_envelope_fields_are_rejected() -> None:
    error = first_error(wire(tenant_id="t"))
    assert error["loc"] == ("tenant_id",)
    assert error["type"] == "extra_forbidden"


def test_envelopes_are_immutable() -> None:
    env = parse(wire())
    with pytest.raises(ValidationError):
        env.workspace = "other"  # type: ignore[misc]


# --- occurred_at --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "utc"),
    [
        ("2024-06-01T12:00:00+05:30", datetime(2024, 6, 1, 6, 30, tzinfo=UTC)),
        ("2024-06-01T12:00:00-08:00", datetime(2024, 6, 1, 20, 0, tzinfo=UTC)),
        ("2024-12-31T23:30:00-01:00", datetime(2025, 1, 1, 0, 30, tzinfo=UTC)),
        ("2024-06-01T12:00:00+00:00", datetime(2024, 6, 1, 12, 0, tzinfo=UTC)),
        ("2024-06-01T12:00:00Z", datetime(2024, 6, 1, 12, 0, tzinfo=UTC)),
    ],
)
def test_occurred_at_is_normalised_to_utc(given: str, utc: datetime) -> None:
    env = parse(wire(occurred_at=given))
    assert env.occurred_at == utc
    assert env.occurred_at.utcoffset() == timedelta(0)
    assert json.loads(env.model_dump_json())["occurred_at"] == utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_occurred_at_from_python_is_normalised_to_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    env = envelope(
        PatternObserved(pattern_type="t", pattern_name="n"), occurred_at=datetime(2024, 1, 1, 9, tzinfo=tokyo)
    )
    assert env.occurred_at.utcoffset() == timedelta(0)
    assert env.occurred_at == datetime(2024, 1, 1, 0, tzinfo=UTC)
    assert env.occurred_at.hour == 0


def test_default_occurred_at_is_now_in_utc() -> None:
    before = datetime.now(UTC)
    env = envelope(PatternObserved(pattern_type="t", pattern_name="n"))
    assert before <= env.occurred_at <= datetime.now(UTC)
    assert env.occurred_at.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    ["2024-06-01T12:00:00", "1970-01-01T00:00:00Z", "1999-12-31T23:59:59Z", "not a time", "", 1717243200],
    ids=repr,
)
def test_bad_occurred_at_is_rejected(value: Any) -> None:
    assert first_error(wire(occurred_at=value))["loc"] == ("occurred_at",)


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_unrepresentable_occurred_at_is_a_validation_error(value: str) -> None:
    """parse_envelope promises ValidationError or ValueError; an OverflowError would crash a consumer."""
    assert first_error(wire(occurred_at=value))["loc"] == ("occurred_at",)


# --- event ids ----------------------------------------------------------------------------------------------


def test_event_id_is_a_ulid_by_default() -> None:
    env = envelope(PatternObserved(pattern_type="t", pattern_name="n"))
    parsed = ULID.from_str(env.event_id)
    assert str(parsed) == env.event_id
    assert abs(parsed.datetime - datetime.now(UTC)) < timedelta(seconds=5)


def test_a_producers_ulid_is_kept() -> None:
    event_id = str(ULID())
    assert parse(wire(event_id=event_id)).event_id == event_id


NOT_ULIDS = [
    "",
    "01HZX3J8Q0M5Y7V2K9D4C6B8A",  # 25 characters
    "01HZX3J8Q0M5Y7V2K9D4C6B8A12",  # 27 characters
    "01HZX3J8Q0M5Y7V2K9D4C6B8AI",  # I is not Crockford base32
    "01HZX3J8Q0M5Y7V2K9D4C6B8AL",
    "01HZX3J8Q0M5Y7V2K9D4C6B8AO",
    "01HZX3J8Q0M5Y7V2K9D4C6B8AU",
    "01HZX3J8Q0M5Y7V2K9D4C6B8A-",
    " 01HZX3J8Q0M5Y7V2K9D4C6B8A",
    "01HZX3J8Q0M5Y7V2K9D4C6B8A1\n",
    "0190f3a4-7b1c-7d2e-9f00-0123456789ab",  # a UUID is not a ULID
    "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",  # above 7ZZZ…: overflows 128 bits, so no ULID decoder accepts it
    "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
    12345,
]


def test_event_id_must_be_a_ulid() -> None:
    for value in NOT_ULIDS:
        assert first_error(wire(event_id=value))["loc"] == ("event_id",), value


def test_the_largest_ulid_is_accepted() -> None:
    largest = "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"
    assert str(ULID.from_str(largest)) == largest
    assert parse(wire(event_id=largest)).event_id == largest


def test_default_event_ids_are_unique_and_sort_by_creation_time() -> None:
    payload = PatternObserved(pattern_type="t", pattern_name="n")
    batches: list[list[str]] = []
    for _ in range(3):
        batches.append([envelope(payload).event_id for _ in range(500)])
        time.sleep(0.003)  # cross a millisecond boundary: a ULID's time part has millisecond resolution
    ids = [i for batch in batches for i in batch]
    assert len(set(ids)) == len(ids)
    # Within a millisecond the order is random, but the time part never goes backwards ...
    stamps = [ULID.from_str(i).milliseconds for i in ids]
    assert stamps == sorted(stamps)
    # ... and ids made in later milliseconds sort after earlier ones.
    for earlier, later in itertools.pairwise(batches):
        assert max(earlier) < min(later)


# --- EventKind ----------------------------------------------------------------------------------------------


def test_event_kind_has_one_member_per_payload_type() -> None:
    assert len(EventKind) == len(PAYLOAD_TYPES)
    assert [k.value for k in EventKind] == [tag(cls) for cls in PAYLOAD_TYPES]
    for cls in PAYLOAD_TYPES:
        assert EventKind(tag(cls)).name == tag(cls).upper()


# --- parse_envelope's input limits --------------------------------------------------------------------------


def _padded(size: int) -> bytes:
    """A valid envelope padded with trailing JSON whitespace to exactly `size` bytes."""
    raw = json.dumps(wire()).encode()
    return raw + b" " * (size - len(raw))


def test_an_envelope_of_exactly_max_entry_bytes_is_parsed() -> None:
    raw = _padded(MAX_ENTRY_BYTES)
    assert len(raw) == MAX_ENTRY_BYTES
    assert parse_envelope(raw) == parse(wire())
    assert parse_envelope(raw.decode()) == parse(wire())


@pytest.mark.parametrize("size", [MAX_ENTRY_BYTES + 1, 2 * MAX_ENTRY_BYTES, 10 * MAX_ENTRY_BYTES])
def test_oversized_input_is_a_value_error_before_parsing(size: int) -> None:
    """Even a valid envelope is refused unread when too big; the error is not a ValidationError."""
    for raw in (_padded(size), _padded(size).decode()):
        with pytest.raises(ValueError, match="limit") as exc:
            parse_envelope(raw)
        assert not isinstance(exc.value, ValidationError)


def test_oversized_junk_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="limit") as exc:
        parse_envelope(b"\xff" * (MAX_ENTRY_BYTES + 1))
    assert not isinstance(exc.value, ValidationError)


def test_size_limit_counts_utf8_bytes_for_text_input() -> None:
    """A str is measured as the bytes it is on the stream, not in characters: the same envelope must be
    refused whether it arrives as bytes or as text."""
    emoji = "\U0001f41c" * 8192  # 8,192 characters (the Text limit), 32 KiB of UTF-8
    env = envelope(
        PatternObserved(pattern_type="t", pattern_name="n", description=emoji, suggested_action=emoji)
    )
    text = env.model_dump_json()
    assert len(text) < MAX_ENTRY_BYTES < len(text.encode())
    with pytest.raises(ValueError, match="limit"):
        parse_envelope(text.encode())
    with pytest.raises(ValueError, match="limit") as exc:
        parse_envelope(text)
    assert not isinstance(exc.value, ValidationError)


JUNK: list[bytes | str] = [
    b"",
    b"\x00",
    b"\xff\xfe\xfd",
    b"\x89PNG\r\n\x1a\n\x00\x00",
    b"{",
    b"}",
    b"{'workspace': 'w'}",
    b"[]",
    b"null",
    b"42",
    b'"envelope"',
    b"{}",
    b"[" * 10_000,
    b'{"a":' * 5_000,
    "\ud800",  # a lone surrogate
    '{"workspace": "w"}\x00',
    json.dumps(wire()).encode() + b"garbage",
    json.dumps(wire()).encode()[:-1],
    b"\xef\xbb\xbf" + json.dumps(wire()).encode(),  # a UTF-8 byte-order mark
]


def test_junk_and_invalid_json_are_validation_errors() -> None:
    for raw in JUNK:
        with pytest.raises(ValidationError):
            parse_envelope(raw)


def test_duplicate_keys_do_not_smuggle_a_second_payload() -> None:
    """JSON with a repeated key: whatever wins, the result is a valid envelope of one payload."""
    good = json.dumps(wire(ExecutionRecord))
    raw = good[:-1] + ', "payload": ' + json.dumps(wire(PatternObserved)["payload"]) + "}"
    try:
        env = parse_envelope(raw)
    except ValidationError:
        return
    assert type(env.payload) in (ExecutionRecord, PatternObserved)


# --- properties ---------------------------------------------------------------------------------------------

ids_ = st.from_regex(r"[A-Za-z0-9._:@/+=-]{1,128}", fullmatch=True)
offsets = st.builds(
    timezone,
    st.timedeltas(min_value=-timedelta(hours=23, minutes=59), max_value=timedelta(hours=23, minutes=59)),
)
aware = st.datetimes(min_value=datetime(2000, 1, 2), max_value=datetime(2099, 12, 30), timezones=offsets)
names = st.text(min_size=1, max_size=256)
texts = st.text(max_size=300)
tags = st.lists(st.text(min_size=1, max_size=64), max_size=8)
ratios = st.floats(min_value=0.0, max_value=1.0)
counts = st.integers(min_value=0, max_value=2**53)
any_finite = st.floats(allow_nan=False, allow_infinity=False)

success_factors = st.builds(
    SuccessFactors,
    validation_types=st.lists(names, max_size=4),
    error_categories=st.lists(names, max_size=4),
    prior_sheet_status=st.none() | st.sampled_from(["completed", "failed", "skipped"]),
    time_of_day_bucket=st.none() | st.sampled_from(["morning", "afternoon", "evening", "night"]),
    retry_iteration=counts,
    escalation_was_pending=st.booleans(),
    grounding_confidence=st.none() | ratios,
    occurrence_count=st.integers(min_value=-(2**40), max_value=2**40),  # clamps to >= 1
    success_rate=any_finite,  # clamps to [0, 1]
)

payloads = st.one_of(
    st.builds(
        PatternObserved,
        pattern_type=names,
        pattern_name=names,
        description=texts,
        suggested_action=st.none() | texts,
        context_tags=tags,
        provenance_job_hash=st.none() | ids_,
        provenance_sheet_num=st.none() | counts,
        instrument_name=st.none() | names,
    ),
    st.builds(
        PatternApplied,
        pattern_id=ids_,
        success=st.booleans(),
        grounding_confidence=st.none() | ratios,
        success_factors=st.none() | success_factors,
        execution_id=st.none() | ids_,
        model=st.none() | names,
    ),
    st.builds(
        RateLimitEvent,
        id=ids_,
        error_code=names,
        model=names,
        recorded_at=aware,
        expires_at=aware,
        source_job_hash=ids_,
        duration_seconds=st.floats(min_value=0.0, max_value=86_400.0, exclude_min=True),
    ),
    st.builds(
        ExecutionRecord,
        id=ids_,  # explicit: the default id draws on global `random`, which Hypothesis forbids in strategies
        workspace_hash=ids_,
        job_hash=ids_,
        sheet_num=counts,
        started_at=aware,
        completed_at=aware,
        duration_seconds=st.floats(max_value=MAX_FLOAT, allow_nan=False, allow_infinity=False),  # clamps to >= 0
        status=names,
        retry_count=st.integers(min_value=-(2**40), max_value=2**40),  # clamps to >= 0
        success_without_retry=st.booleans(),
        validation_pass_rate=any_finite,
        confidence_score=any_finite,
        model=st.none() | names,
        error_codes=st.lists(names, max_size=4),
    ),
    st.builds(
        EscalationOutcomeRecorded,
        escalation_id=ids_,
        outcome=st.sampled_from(["success", "failed", "aborted", "skipped"]),
    ),
)

envelopes = st.builds(
    Envelope,
    event_id=st.builds(lambda: str(ULID())) | st.from_regex(r"[0-7][0-9A-HJKMNP-TV-Z]{25}", fullmatch=True),
    occurred_at=aware,
    workspace=ids_,
    job=ids_,
    correlation_id=st.none() | ids_,
    payload=payloads,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(envelopes)
def test_any_valid_envelope_round_trips(env: Envelope) -> None:
    raw = env.model_dump_json()
    assert len(raw.encode()) <= MAX_ENTRY_BYTES
    assert parse_envelope(raw) == env
    assert parse_envelope(raw.encode()) == env
    assert env.occurred_at.utcoffset() == timedelta(0)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_raise_only_validation_or_value_errors(raw: bytes) -> None:
    try:
        parse_envelope(raw)
    except (ValidationError, ValueError):
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=4096))
def test_arbitrary_text_raises_only_validation_or_value_errors(raw: str) -> None:
    try:
        parse_envelope(raw)
    except (ValidationError, ValueError):
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(PAYLOAD_TYPES),
    st.booleans(),
    st.data(),
    json_values,
)
def test_any_json_in_any_field_raises_only_validation_or_value_errors(
    cls: type[Contract], in_payload: bool, data: st.DataObject, value: Any
) -> None:
    """A well-formed envelope with one field replaced by arbitrary JSON either parses or fails cleanly."""
    envelope_data = wire(cls)
    target = envelope_data["payload"] if in_payload else envelope_data
    target[data.draw(st.sampled_from(sorted(target)))] = value
    try:
        parse_envelope(json.dumps(envelope_data, allow_nan=True))
    except (ValidationError, ValueError):
        pass


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.datetimes(),
        # The ends of time, where converting to UTC leaves `datetime`'s range, and the 2000 boundary.
        st.datetimes(max_value=datetime(1, 1, 2)),
        st.datetimes(min_value=datetime(9999, 12, 30)),
        st.datetimes(min_value=datetime(1999, 12, 30), max_value=datetime(2000, 1, 2)),
    ),
    st.integers(min_value=-(24 * 60 - 1), max_value=24 * 60 - 1),
)
def test_any_occurred_at_string_parses_to_utc_after_2000_or_fails_cleanly(
    naive: datetime, minutes: int
) -> None:
    """Built as text (Hypothesis never generates aware datetimes whose UTC instant is unrepresentable)."""
    sign, magnitude = ("-" if minutes < 0 else "+"), abs(minutes)
    text = f"{naive.isoformat()}{sign}{magnitude // 60:02d}:{magnitude % 60:02d}"
    try:
        env = parse(wire(occurred_at=text))
    except ValidationError as exc:
        assert exc.errors()[0]["loc"] == ("occurred_at",)
        return
    assert env.occurred_at == naive.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    assert env.occurred_at.utcoffset() == timedelta(0)
    assert env.occurred_at >= datetime(2000, 1, 1, tzinfo=UTC)
