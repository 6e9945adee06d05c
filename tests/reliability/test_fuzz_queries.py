"""Hostile query parameters and hostile request bodies: every query op, called through the client with
hypothesis-generated arguments (huge and negative numbers, NaN and infinities, unicode, SQL-looking and huge
strings, wrong types, unknown names), answers at once with a result or a precise error, never a timeout; raw
junk pushed onto the request list is answered with an error when it names a valid reply key and dropped
otherwise, never written anywhere else; and the query service answers normally afterwards.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from pheromone import Pheromone, QueryError, QueryTimeout
from pheromone.contracts import EventQuery
from pheromone.contracts.queries import MAX_REQUEST_BYTES
from pheromone.contracts.streams import Keys
from pheromone.services.query.service import OPS
from pheromone.services.runtime import Runtime
from tests.services import helpers as h
from tests.support import eventually
from tests.support import settings as fast_settings

pytestmark = pytest.mark.slow

EXAMPLES = int(os.environ.get("PHEROMONE_FUZZ_EXAMPLES", "25"))
"""Argument sets per query op (docs/RELIABILITY.md records a deeper run)."""
HUGE = "x" * (MAX_REQUEST_BYTES + 1)

HOSTILE = st.one_of(
    st.integers(-(2**70), 2**70), st.sampled_from([10**30, 2**63, 2**62, -1, 0, 1, 1_000_000]),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0]),
    st.text(max_size=30), st.sampled_from(["'; DROP TABLE ledger; --", "\" OR 1=1 --", "%", "_", "*", "\x00",
                                           "\ud800", "😀" * 100, "x" * 5_000, HUGE, "", "null", "0"]),
    st.none(), st.booleans(), st.lists(st.text(max_size=10) | st.integers(), max_size=5),
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=3),
)


def model_of(name: str) -> type[BaseModel] | None:
    """The argument model an op validates with (read from its closure), if any."""
    if name == "events":
        return EventQuery
    for cell in getattr(OPS[name], "__closure__", None) or ():
        value = cell.cell_contents
        if isinstance(value, type) and issubclass(value, BaseModel):
            return value
    return None


EDGES: list[Any] = [10**30, -(10**30), 2**63, -1, math.nan, math.inf, -math.inf, HUGE, "'; DROP TABLE ledger; --",
                    "\x00\n", None, [], {}, True]
"""Tried in every field of every op, on top of what hypothesis draws: the values most likely to slip through."""


def edge_cases(name: str) -> list[dict[str, Any]]:
    model = model_of(name)
    return [{field: value} for field in sorted(model.model_fields) if model for value in EDGES] if model else []


def arguments(name: str) -> st.SearchStrategy[dict[str, Any]]:
    model = model_of(name)
    fields = sorted(model.model_fields) if model is not None else []
    known = st.fixed_dictionaries({}, optional=dict.fromkeys(fields, HOSTILE))
    return known | st.builds(lambda d, k, v: {**d, k: v}, known, st.text(min_size=1, max_size=12), HOSTILE)


@pytest.fixture
async def query_service(tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[Runtime]:
    runtime = Runtime(fast_settings(tmp_path, prefix), redis_url, ["store", "query"])
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


@pytest.fixture
async def client(query_service: Runtime, tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[Pheromone]:
    async with Pheromone(redis_url, workspace="ws-q", job="job-q", prefix=prefix, data_dir=tmp_path,
                         spool_dir=tmp_path / "spool") as ph:
        for record in (h.observed("fuzz me"), h.applied("fuzz me", True), h.execution(), h.recovery(),
                       h.escalation(), h.evolution(), h.budget()):
            ph.emit(record)
        await ph.flush()
        await eventually(lambda: h.ledger_count(tmp_path / "store.db") == 7, what="sample events stored")
        yield ph


def precise(message: str) -> bool:
    """An error that says what was wrong: one line, and not an internal failure of the service."""
    internal = message.startswith("query failed:") and not message.startswith(
        ("query failed: LookupError", "query failed: ValueError"))
    return bool(message) and "\n" not in message and not internal


@pytest.mark.timeout(180)
@pytest.mark.parametrize("op", sorted(OPS))
async def test_hostile_parameters_get_a_result_or_a_precise_error_never_a_timeout(
    client: Pheromone, query_service: Runtime, op: str
) -> None:
    assert client.queries is not None
    drawn: list[dict[str, Any]] = []

    @settings(max_examples=EXAMPLES, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(arguments(op))
    def collect(args: dict[str, Any]) -> None:
        drawn.append(args)

    collect()
    drawn += edge_cases(op)
    errors: dict[str, int] = {}
    for args in drawn:
        try:
            await client.queries.call(op, args, timeout=10)
        except QueryTimeout as exc:
            raise AssertionError(f"{op}({args!r:.300}) timed out: {exc}") from None
        except QueryError as exc:
            assert precise(str(exc)), f"{op}({args!r:.300}): {exc}"
            errors[str(exc)[:60]] = errors.get(str(exc)[:60], 0) + 1
    assert errors, f"no hostile argument set was refused by {op}: the fuzzer tests nothing"
    assert all(not t.done() for t in query_service._tasks), "a service loop ended"
    counts = await client.queries.call("counts", {}, timeout=10)
    assert sum(counts.values()) == 7  # still answering, and nothing was written


JUNK_BODIES: list[bytes] = [
    b"", b"\xff\xfe\x00", b"not json", b"[]", b"null", b'"reply"', b"{}", b'{"op": "counts"}',
    b'{"op": "counts", "reply": 42}', b'{"op": "counts", "reply": ["a"]}', b"{" * 10_000,
    b"x" * (MAX_REQUEST_BYTES + 1),
]


def foreign_replies(prefix: str) -> list[str]:
    """Reply keys a request must never make the service write: other key families, other prefixes."""
    return [Keys(prefix).ingest, Keys(prefix).dead, f"{{{prefix}}}:rl:x", f"{{{prefix}}}:reply:{'0' * 31}",
            f"{{{prefix}}}:reply:{'A' * 32}", f"{{{prefix}}}:reply:{'0' * 32}:x", f"other:reply:{'0' * 32}", "*"]


@pytest.mark.timeout(120)
async def test_junk_requests_are_answered_when_they_can_be_and_never_written_elsewhere(
    client: Pheromone, query_service: Runtime, redis: aioredis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    reply = f"{{{prefix}}}:reply:{'ab' * 16}"
    answered = {  # body -> the error it must get on `reply`
        json.dumps({"op": "nope", "args": {}, "reply": reply}): "unknown query 'nope'",
        json.dumps({"op": 42, "args": {}, "reply": reply}): "unknown query 'int'",
        json.dumps({"op": None, "reply": reply}): "unknown query 'NoneType'",
        json.dumps({"op": "counts", "args": [], "reply": reply}): "args must be an object",
        json.dumps({"op": "events", "args": {"limit": "many"}, "reply": reply}): "invalid query: limit",
        json.dumps({"op": "events", "args": {"pad": HUGE}, "reply": reply}): f"over the {MAX_REQUEST_BYTES}-byte",
    }
    dropped = [*JUNK_BODIES, *(json.dumps({"op": "counts", "args": {}, "reply": r}).encode()
                               for r in foreign_replies(prefix))]
    before = await _snapshot(redis, foreign_replies(prefix))
    await redis.rpush(keys.queries, *dropped)
    for body, error in answered.items():
        await redis.rpush(keys.queries, body)
        got = await redis.blpop([reply], timeout=10)
        assert got is not None, f"no answer to {body[:100]!r}"
        response = json.loads(got[1])
        assert response["ok"] is False and error in response["error"], (body[:100], response)

    await eventually(lambda: _queue_empty(redis, keys.queries), what="every request taken")
    assert await client.queries.call("counts", {}, timeout=10)  # the service still answers
    assert await _snapshot(redis, foreign_replies(prefix)) == before, "a request made the service write a key"
    assert all(not t.done() for t in query_service._tasks)


async def _snapshot(redis: aioredis.Redis, names: list[str]) -> dict[str, tuple[bytes, int]]:
    """Each key's type and size (XLEN or LLEN), to see that nothing was written to it."""
    out = {}
    for name in names:
        kind = await redis.type(name)
        size = await redis.xlen(name) if kind == b"stream" else await redis.llen(name) if kind == b"list" else 0
        out[name] = (kind, int(size))
    return out


async def _queue_empty(redis: aioredis.Redis, key: str) -> bool:
    return await redis.llen(key) == 0
