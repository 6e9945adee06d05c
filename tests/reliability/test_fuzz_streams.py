"""Hostile entries on every stream a group reads, with every service running: each malformed entry becomes
exactly one dead letter (from the one group of its stream that keeps records) carrying the parser's reason and the
original bytes; the other groups skip it; valid events interleaved with the junk flow through every group.

tests/services/test_dead_letters.py pins one precise message per kind of poison on ingest; here hypothesis
generates the junk (derandomized, so a failure reproduces) and every stream that a running service reads
through a group gets it (the store's three, and any other, such as the consolidator's triggers).
Query requests (the query service's list) are fuzzed in test_fuzz_queries.py.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pheromone.contracts import MAX_ENTRY_BYTES, Envelope, pattern_id
from pheromone.contracts.broadcast import BroadcastKind
from pheromone.contracts.streams import FIELD, FIELD_KIND, GROUP_STORE, MAX_ERROR_CHARS, STREAM_GROUPS, Keys
from pheromone.services.consumer import describe, parse_entry
from pheromone.services.runtime import Runtime, service_names
from tests.reliability import fleet as f
from tests.services import helpers as h
from tests.support import eventually
from tests.support import settings as fast_settings

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("PHEROMONE_FUZZ_EXAMPLES", "60"))
"""Junk entries (each stream gets the same set; docs/RELIABILITY.md records a deeper run)."""

Fields = dict[bytes, bytes]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
ENVELOPE_FIELDS = ("schema_version", "event_id", "occurred_at", "workspace", "job", "correlation_id", "payload")


def base() -> dict[str, Any]:
    """A valid envelope as JSON data, to be spoiled."""
    return h.envelope(h.execution()).model_dump(mode="json")


def body(data: Any) -> Fields:
    return {FIELD.encode(): json.dumps(data).encode()}


@st.composite
def junk(draw: st.DrawFn) -> Fields:
    kind = draw(st.sampled_from([
        "binary", "text", "json", "drop field", "retype field", "payload field", "unknown type",
        "schema version", "huge field", "wrong field name", "empty", "extra envelope field",
    ]))
    env = base()
    if kind == "binary":
        return {FIELD.encode(): draw(st.binary(max_size=200))}
    if kind == "text":
        return {FIELD.encode(): draw(st.text(max_size=200)).encode("utf-8", "surrogatepass")}
    if kind == "json":
        return body(draw(JSON))
    if kind == "drop field":
        for name in draw(st.lists(st.sampled_from(ENVELOPE_FIELDS), min_size=1, max_size=3, unique=True)):
            env.pop(name)
        return body(env)
    if kind == "retype field":
        env[draw(st.sampled_from(ENVELOPE_FIELDS))] = draw(JSON)
        return body(env)
    if kind == "payload field":
        name = draw(st.sampled_from(sorted(env["payload"])))
        env["payload"][name] = draw(JSON)
        return body(env)
    if kind == "unknown type":
        env["payload"]["type"] = draw(st.text(min_size=1, max_size=30))
        return body(env)
    if kind == "schema version":
        env["schema_version"] = draw(st.sampled_from([0, 2, -1, 2**63, "1", 1.0, True, None]) | st.integers())
        return body(env)
    if kind == "huge field":
        size = draw(st.integers(MAX_ENTRY_BYTES, 4 * MAX_ENTRY_BYTES))
        env[draw(st.sampled_from(["workspace", "job", "correlation_id"]))] = "x" * size
        return body(env)
    if kind == "wrong field name":
        name = draw(st.binary(min_size=1, max_size=10).filter(lambda b: b != FIELD.encode()))
        return {name: json.dumps(env).encode()}
    if kind == "empty":
        return {FIELD.encode(): b""}
    env[draw(st.text(min_size=1, max_size=12).filter(lambda n: n not in ENVELOPE_FIELDS))] = draw(JSON)
    return body(env)


def reason(fields: Fields) -> str | None:
    """The dead letter's reason the parser gives for `fields`, or None if they happen to be a valid entry."""
    try:
        parse_entry(fields)
    except (ValidationError, ValueError) as exc:
        return describe(exc)
    return None


def draw_junk(n: int) -> list[tuple[Fields, str]]:
    """`n` invalid entries with their expected reasons, from hypothesis (derandomized: the same every run)."""
    found: list[tuple[Fields, str]] = []

    @settings(max_examples=n * 3, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(junk())
    def collect(fields: Fields) -> None:
        why = reason(fields)
        if why is not None and len(found) < n:
            found.append((fields, why))

    collect()
    assert len(found) == n, f"only {len(found)} invalid entries drawn"
    return found


def valid(stream: str, i: int) -> Envelope:
    if stream == "ratelimits":
        return h.envelope(h.rate_limit(model=f"model-{i}"))
    if stream == "discoveries":
        return h.envelope(h.discovery(name=f"discovery {i}"))
    return h.envelope(h.applied("fuzzed", success=i % 2 == 0) if i % 3 else h.execution())


@pytest.fixture
async def every_service(tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings(tmp_path, prefix), redis_url, service_names())
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.mark.timeout(180)
async def test_junk_on_every_group_stream_is_dead_lettered_once_with_its_reason_and_valid_events_flow(
    every_service: Runtime, redis: aioredis.Redis, prefix: str, tmp_path: Path
) -> None:
    keys = Keys(prefix)
    db = tmp_path / "store.db"
    workers = [w for part in every_service.parts for w in part.workers]
    recorders: dict[str, list[str]] = {w.stream: [] for w in workers}
    for w in workers:
        if w.records_poison:
            recorders[w.stream].append(w.group)
    # No silent loss: every stream a group reads has exactly one group that keeps what it cannot parse.
    assert all(len(groups) == 1 for groups in recorders.values()), recorders
    assert {keys.stream(name) for name in STREAM_GROUPS} <= set(recorders)
    await h.xadd_raw(redis, keys.ingest, [h.entry(h.envelope(h.observed("fuzzed")))])  # applied events need it
    expected: dict[tuple[str, bytes], tuple[Fields, str]] = {}
    good: dict[str, list[Envelope]] = {}
    bad = draw_junk(EXAMPLES)  # the same hostile set on every stream
    for stream in sorted(recorders):
        name = stream.removeprefix(f"{{{prefix}}}:")
        stored = GROUP_STORE in STREAM_GROUPS.get(name, ())  # the streams whose valid events reach the ledger
        good[name] = [valid(name, i) for i in range(EXAMPLES + 1)] if stored else []
        entries: list[Fields] = []
        for i, (fields, _) in enumerate(bad):
            entries += [h.entry(good[name][i]), fields] if good[name] else [fields]  # type: ignore[list-item]
        if good[name]:
            entries.append(h.entry(good[name][-1]))  # type: ignore[arg-type]
        ids = await h.xadd_raw(redis, stream, entries)  # type: ignore[arg-type]
        step, first = (2, 1) if good[name] else (1, 0)
        for i, item in enumerate(bad):
            expected[(stream, ids[first + step * i])] = item

    await eventually(lambda: f.all_groups_drained(redis, prefix), timeout=60, interval=0.1,
                     what="every group read and acked every entry")
    want = {e.event_id for envs in good.values() for e in envs}
    await eventually(lambda: set(h.ledger_ids(db)) >= want, what="valid events stored")

    letters = await h.dead_letters(redis, prefix)
    by_entry: dict[tuple[str, bytes], list[dict[bytes, bytes]]] = {}
    for _, letter in letters:
        by_entry.setdefault((letter[b"stream"].decode(), letter[b"id"]), []).append(letter)
    assert set(by_entry) == set(expected), "a dead letter for a valid entry, or junk without one"
    for key, (fields, why) in expected.items():
        [letter] = by_entry[key]  # exactly one
        assert [letter[b"group"].decode()] == recorders[key[0]] and letter[b"deliveries"] == b"1"
        assert letter[b"error"].decode() == why[:MAX_ERROR_CHARS], key
        assert why.startswith(("invalid envelope: ", "ValueError: ")), why
        assert {k[2:]: v for k, v in letter.items() if k.startswith(b"f:")} == fields, key

    # Valid events went through every group, not just the store's.
    assert len(h.ledger_ids(db)) == len(want) + 1  # and nothing else reached the ledger
    rate_limits = [e.payload for e in good["ratelimits"]]
    for report in rate_limits:  # the coordinator set each live limit
        assert await redis.exists(keys.rate_limit(report.model, report.error_code))  # type: ignore[union-attr]
    kinds = [fields[FIELD_KIND.encode()].decode() for _, fields in await redis.xrange(keys.broadcast)]
    assert kinds.count(BroadcastKind.DISCOVERY.value) == len(good["discoveries"])  # the broadcaster's
    assert kinds.count(BroadcastKind.RATE_LIMIT.value) == len(rate_limits)  # the coordinator's
    applied = sum(1 for e in good["ingest"] if e.kind == "pattern_applied")
    assert int(await redis.get(keys.entropy("applications")) or 0) == applied  # the entropy service's
    assert h.count(db, "patterns", "id = ?", pattern_id("retry_pattern", "fuzzed")) == 1
