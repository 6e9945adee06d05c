"""emit(): an id at once, the envelope's exact JSON on the right stream, refusals before anything queues."""

from __future__ import annotations

import inspect
import time
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import hiredis
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, TypeAdapter, ValidationError
from redis import Redis as BlockingRedis
from redis.asyncio import Redis

from pheromone import ClientClosedError, Pheromone
from pheromone.client import utc_text
from pheromone.contracts import (
    Envelope,
    PatternObserved,
    PatternRecord,
    Payload,
    SuccessFactors,
    parse_envelope,
)
from pheromone.contracts.streams import Keys
from pheromone.plumbing.append import spool_line
from tests.client.helpers import T0, ULID, expected_stream, one_of_each, read_envelopes, read_raw
from tests.support import OpenClient

OBSERVED = PatternObserved(pattern_type="t", pattern_name="n")
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid_ms(ulid: str) -> int:
    """The 48-bit millisecond timestamp in a ULID's first 10 characters."""
    value = 0
    for char in ulid[:10]:
        value = value * 32 + _CROCKFORD.index(char)
    return value


# -- the id, synchronously -------------------------------------------------------------------------------


def test_emit_is_a_plain_function_not_a_coroutine() -> None:
    assert not inspect.iscoroutinefunction(Pheromone.emit)


async def test_emit_returns_a_ulid_before_anything_is_sent(
    open_client: OpenClient, redis_url: str, redis: Redis, prefix: str
) -> None:
    client = await open_client()
    # A blocking client: calling it does not yield to the event loop, so the wake-up emit() scheduled there
    # does not run and the sender thread, asleep since open(), sends nothing.
    sync = BlockingRedis.from_url(redis_url)
    try:
        before_ms = time.time_ns() // 1_000_000
        event_id = client.emit(OBSERVED)
        after_ms = time.time_ns() // 1_000_000
        # No await has happened since emit(): nothing can have reached Redis, the event waits in the buffer.
        assert sync.xlen(Keys(prefix).ingest) == 0
        assert client.backlog == 1 and client.stats.emitted == 1 and client.stats.sent == 0
    finally:
        sync.close()
    assert isinstance(event_id, str) and ULID.match(event_id), event_id
    assert before_ms <= ulid_ms(event_id) <= after_ms

    await client.flush()
    [envelope] = await read_envelopes(redis, Keys(prefix).ingest)
    assert envelope.event_id == event_id
    assert before_ms <= envelope.occurred_at.timestamp() * 1000 <= after_ms + 1
    assert envelope.occurred_at.tzinfo == UTC


async def test_every_emit_gets_a_distinct_id(open_client: OpenClient) -> None:
    client = await open_client()
    ids = [client.emit(OBSERVED) for _ in range(2_000)]
    assert len(set(ids)) == len(ids)
    assert all(ULID.match(i) for i in ids)


# -- the bytes on the wire -------------------------------------------------------------------------------


@pytest.mark.parametrize("record", one_of_each(), ids=lambda r: r.type)
async def test_the_wire_json_is_the_envelopes_own_json_and_round_trips(
    open_client: OpenClient, redis: Redis, prefix: str, record: Payload
) -> None:
    client = await open_client(workspace="ws-1", job="job/1:a")
    event_id = client.emit(record, correlation_id="corr-1", occurred_at=T0)
    await client.flush()

    [raw] = await read_raw(redis, expected_stream(prefix, record.type))
    envelope = Envelope(
        event_id=event_id, occurred_at=T0, workspace="ws-1", job="job/1:a", correlation_id="corr-1",
        payload=record,
    )
    assert raw == envelope.model_dump_json().encode()
    parsed = parse_envelope(raw)
    assert parsed == envelope
    assert parsed.payload == record


def xadd_of(frame: bytes) -> list[bytes]:
    """The command a buffered frame holds, as Redis would read it (exactly one command, nothing left over)."""
    reader = hiredis.Reader()
    reader.feed(frame)
    parsed = reader.gets()
    assert reader.gets() is False, "one frame, one command"
    assert isinstance(parsed, list)
    return parsed


@pytest.mark.parametrize(
    "when",
    [
        T0,
        T0.replace(microsecond=0),  # isoformat() drops a zero fraction; pydantic must agree
        T0.replace(microsecond=1),
        datetime(2099, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
        datetime.now(UTC),
        None,  # emit()'s own clock, formatted without datetime
    ],
    ids=["micro", "whole-second", "one-micro", "far-future", "now", "emit-time"],
)
@pytest.mark.parametrize("correlation_id", [None, "c-1", "a.b:c@d/e+f=g-_"])
async def test_the_buffered_command_holds_exactly_the_envelopes_json(
    open_client: OpenClient, prefix: str, when: datetime | None, correlation_id: str | None
) -> None:
    client = await open_client(workspace="w.s", job="j@1")
    for record in one_of_each():
        event_id = client.emit(record, correlation_id=correlation_id, occurred_at=when)
        frame = client._buffer[-1]  # no await since emit(): the sender has not been woken
        xadd, stream, star, e, body, k, kind = xadd_of(frame)
        assert (xadd, stream, star, e, k) == (b"XADD", expected_stream(prefix, record.type).encode(), b"*", b"e",
                                              b"k")
        assert kind == record.type.encode()
        envelope = Envelope(
            event_id=event_id, occurred_at=when or parse_envelope(body).occurred_at, workspace="w.s", job="j@1",
            correlation_id=correlation_id, payload=record,
        )
        assert body == envelope.model_dump_json().encode()
        assert spool_line(frame) == stream + b"\t" + body  # what a spill writes


@settings(max_examples=300)
@given(st.lists(st.integers(0, 2**62), min_size=1, max_size=20))
@example([0, 1_000, 999_999_999, 10**9, 1_733_456_789_000_000_000, 1_733_456_789_000_001_000])  # whole seconds
def test_emit_time_text_is_pydantics_for_every_instant(instants: list[int]) -> None:
    client = Pheromone("redis://127.0.0.1:1/0", workspace="w", job="j", spool_dir=Path("/nonexistent"))
    for ns in [*sorted(instants), *instants]:  # in order (the per-second cache) and in any order
        when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000)
        assert utc_text(ns) == client._stamp(ns) == TypeAdapter(datetime).dump_json(when)[1:-1]


# -- validation of what the caller adds -------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        datetime(2024, 5, 6, 9, 8, 9, 123456, tzinfo=timezone(timedelta(hours=2))),
        datetime(2024, 5, 6, 1, 38, 9, 123456, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        T0,
    ],
    ids=["plus-2h", "minus-5h30", "utc"],
)
async def test_occurred_at_in_another_timezone_is_sent_as_utc(
    open_client: OpenClient, redis: Redis, prefix: str, given: datetime
) -> None:
    client = await open_client()
    client.emit(OBSERVED, occurred_at=given)
    await client.flush()
    [raw] = await read_raw(redis, Keys(prefix).ingest)
    assert b'"occurred_at":"2024-05-06T07:08:09.123456Z"' in raw
    assert parse_envelope(raw).occurred_at == T0


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"occurred_at": datetime(2024, 5, 6, 7, 8, 9)}, "occurred_at"),  # naive: whose clock?
        ({"occurred_at": datetime(1970, 1, 1, tzinfo=UTC)}, "occurred_at"),  # a placeholder epoch
        ({"correlation_id": "has space"}, "correlation_id"),
        ({"correlation_id": "two\nlines"}, "correlation_id"),
        ({"correlation_id": "tab\there"}, "correlation_id"),
        ({"correlation_id": ""}, "correlation_id"),
        ({"correlation_id": "x" * 129}, "correlation_id"),
        ({"correlation_id": "ünïcode"}, "correlation_id"),
    ],
    ids=["naive", "epoch", "space", "newline", "tab", "empty", "too-long", "non-ascii"],
)
async def test_bad_extras_are_refused_and_nothing_is_queued(
    open_client: OpenClient, kwargs: dict[str, object], field: str
) -> None:
    client = await open_client()
    with pytest.raises(ValidationError) as exc:
        client.emit(OBSERVED, **kwargs)  # type: ignore[arg-type]
    assert [e["loc"][0] for e in exc.value.errors()] == [field]
    assert client.backlog == 0 and client.stats.emitted == 0


async def test_the_longest_valid_correlation_id_is_accepted(
    open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    client = await open_client()
    client.emit(OBSERVED, correlation_id="c" * 128)
    await client.flush()
    [envelope] = await read_envelopes(redis, Keys(prefix).ingest)
    assert envelope.correlation_id == "c" * 128


class NotAContract(BaseModel):
    type: str = "pattern_observed"
    pattern_type: str = "t"
    pattern_name: str = "n"


@pytest.mark.parametrize(
    "thing",
    [
        {"type": "pattern_observed", "pattern_type": "t", "pattern_name": "n"},
        '{"type":"pattern_observed","pattern_type":"t","pattern_name":"n"}',
        None,
        NotAContract(),
        SuccessFactors(),  # a contract, but not an event payload
        PatternRecord.model_construct(),  # type: ignore[call-arg]  # a read model, not an event payload
    ],
    ids=["dict", "str", "none", "plain-model", "success-factors", "pattern-record"],
)
async def test_emitting_something_that_is_not_a_record_raises_type_error(
    open_client: OpenClient, thing: object
) -> None:
    client = await open_client()
    with pytest.raises(TypeError, match="PAYLOAD_TYPES"):
        client.emit(thing)  # type: ignore[arg-type]
    assert client.backlog == 0 and client.stats.emitted == 0


# -- lifecycle and construction ---------------------------------------------------------------------------


async def test_emit_on_an_unopened_or_closed_client_raises(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    client = Pheromone(redis_url, workspace="w", job="j", prefix=prefix, spool_dir=tmp_path)
    with pytest.raises(ClientClosedError):
        client.emit(OBSERVED)
    async with client:
        client.emit(OBSERVED)
    with pytest.raises(ClientClosedError):
        client.emit(OBSERVED)
    assert client.stats.emitted == 1


@pytest.mark.parametrize(
    ("workspace", "job"),
    [("has space", "j"), ("w", "new\nline"), ("", "j"), ("w", ""), ("w" * 129, "j"), ("w", "ü"), ("w;", "j")],
)
def test_bad_workspace_or_job_names_are_refused_at_construction(
    tmp_path: Path, workspace: str, job: str
) -> None:
    with pytest.raises(ValidationError):
        Pheromone("redis://127.0.0.1:1/0", workspace=workspace, job=job, spool_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []  # refused before anything was made


@pytest.mark.parametrize(
    "kwargs", [{"buffer_size": 0}, {"batch_size": 0}, {"buffer_size": -1}, {"batch_size": -5}]
)
def test_buffer_and_batch_sizes_below_one_are_refused(tmp_path: Path, kwargs: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Pheromone("redis://127.0.0.1:1/0", workspace="w", job="j", spool_dir=tmp_path, **kwargs)


def test_sizes_of_one_are_accepted(tmp_path: Path) -> None:
    client = Pheromone(
        "redis://127.0.0.1:1/0", workspace="w", job="j", spool_dir=tmp_path, buffer_size=1, batch_size=1
    )
    assert client.backlog == 0


# -- routing ---------------------------------------------------------------------------------------------


async def test_each_record_goes_to_its_own_stream(open_client: OpenClient, redis: Redis, prefix: str) -> None:
    client = await open_client()
    records = one_of_each()
    sent = {client.emit(record): record for record in records}
    await client.flush()

    streams = {f"{{{prefix}}}:{name}" for name in ("ingest", "ratelimits", "discoveries", "triggers")}
    found: dict[str, str] = {}
    for stream in streams:
        for envelope in await read_envelopes(redis, stream):
            found[envelope.event_id] = stream
    assert found == {eid: expected_stream(prefix, record.type) for eid, record in sent.items()}
    assert Counter(found.values()) == {
        Keys(prefix).ratelimits: 1, Keys(prefix).discoveries: 1, Keys(prefix).triggers: 1,
        Keys(prefix).ingest: len(records) - 3,
    }
