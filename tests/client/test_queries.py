"""Queries from the client: ledger filters through the real query service, precise refusals, timeouts, and a
service that cannot be made to write outside its reply keys."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from redis.asyncio import Redis

from pheromone import Pheromone, QueryError, QueryTimeout
from pheromone.contracts import ErrorRecoveryRecord, EventKind, EventQuery, ExecutionRecord, PatternObserved, TimeRange
from pheromone.contracts.queries import MAX_REQUEST_BYTES, QueryRequest
from pheromone.contracts.query_args import QUERY_ARGS
from pheromone.contracts.streams import Keys
from pheromone.plumbing.embedded import EmbeddedServer
from pheromone.queries import QueryClient
from pheromone.services.runtime import Runtime
from pheromone.services.settings import Settings
from tests.client.helpers import T0, eventually
from tests.support import OpenClient


@pytest.fixture
async def services(tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[Runtime]:
    """The store and query services in this process, on this test's prefix and a store in tmp_path."""
    runtime = Runtime(Settings(data_dir=tmp_path, prefix=prefix, poll_ms=10), redis_url, ["store", "query"])
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def observed(name: str) -> PatternObserved:
    return PatternObserved(pattern_type="query", pattern_name=name)


def recovery() -> ErrorRecoveryRecord:
    return ErrorRecoveryRecord(
        error_code="E429", suggested_wait=1.0, actual_wait=2.0, recovery_success=True, recorded_at=T0,
        model=None, time_of_day=3,
    )


def execution() -> ExecutionRecord:
    return ExecutionRecord(
        id="exec-1", workspace_hash="ws", job_hash="job", sheet_num=1, started_at=T0, completed_at=T0,
        duration_seconds=1.0, status="completed", retry_count=0, success_without_retry=True,
        validation_pass_rate=1.0, confidence_score=1.0, model="m",
    )


async def stored(client: Pheromone, count: int) -> None:
    """Wait until the store holds `count` events (the services apply them asynchronously)."""

    async def enough() -> bool:
        return len(await client.events(EventQuery(limit=1000), timeout=5)) >= count

    await eventually(enough, what=f"{count} events in the store")


async def test_events_filter_by_workspace_kind_correlation_job_and_limit(
    services: Runtime, open_client: OpenClient
) -> None:
    a = await open_client(workspace="ws-a", job="job-1")
    b = await open_client(workspace="ws-b", job="job-2")
    a_ids = [
        a.emit(observed("a0"), correlation_id="c-1"),
        a.emit(recovery(), correlation_id="c-2"),
        a.emit(observed("a1"), correlation_id="c-1"),
        a.emit(execution()),
        a.emit(recovery(), correlation_id="c-2"),
        a.emit(observed("a2"), correlation_id="c-1"),
    ]
    b_ids = [b.emit(observed("b0"), correlation_id="c-1"), b.emit(observed("b1"), correlation_id="c-1")]
    await a.flush()
    await b.flush()
    await stored(a, 8)

    async def ids(**query: object) -> list[str]:
        return [e.event_id for e in await a.events(EventQuery(**query))]  # type: ignore[arg-type]

    # One client's events share one stream, so the store's order is their emit order.
    assert await ids(workspace="ws-a") == a_ids
    assert await ids(workspace="ws-b") == b_ids
    assert await ids(workspace="ws-nobody") == []
    assert await ids(workspace="ws-a", kinds=[EventKind.ERROR_RECOVERY, "execution"]) == [
        a_ids[1], a_ids[3], a_ids[4]
    ]
    assert await ids(workspace="ws-b", kinds=["error_recovery"]) == []
    assert sorted(await ids(correlation_id="c-1")) == sorted([a_ids[0], a_ids[2], a_ids[5], *b_ids])
    assert await ids(correlation_id="c-2") == [a_ids[1], a_ids[4]]
    assert await ids(job="job-2") == b_ids
    # The newest `limit` matches, returned oldest first.
    assert await ids(workspace="ws-a", limit=2) == a_ids[4:]
    assert await ids(workspace="ws-a", limit=1) == a_ids[5:]
    assert await ids(workspace="ws-a", correlation_id="c-1", limit=2) == [a_ids[2], a_ids[5]]

    # What comes back is the event as emitted, not a lossy copy.
    [event] = await a.events(EventQuery(workspace="ws-a", kinds=["execution"]))
    assert (event.workspace, event.job, event.correlation_id) == ("ws-a", "job-1", None)
    assert event.payload == execution()


async def test_events_filter_by_time_range_inclusive(services: Runtime, open_client: OpenClient) -> None:
    client = await open_client()
    ids = [client.emit(observed(str(i)), occurred_at=T0 + timedelta(minutes=i)) for i in range(6)]
    await client.flush()
    await stored(client, 6)

    async def between(start: int | None, end: int | None) -> list[str]:
        window = TimeRange(
            start=None if start is None else T0 + timedelta(minutes=start),
            end=None if end is None else T0 + timedelta(minutes=end),
        )
        return [e.event_id for e in await client.events(EventQuery(time_range=window))]

    assert await between(1, 3) == ids[1:4]  # both ends inclusive
    assert await between(None, 0) == ids[:1]
    assert await between(4, None) == ids[4:]
    assert await between(2, 2) == ids[2:3]


async def test_an_invalid_query_is_refused_with_a_precise_error(
    services: Runtime, open_client: OpenClient
) -> None:
    client = await open_client()
    assert client.queries is not None
    with pytest.raises(QueryError) as exc:
        await client.queries.call("events", {"limit": 0}, timeout=5)
    assert type(exc.value) is QueryError  # refused, not timed out
    assert str(exc.value) == "invalid query: limit: Input should be greater than or equal to 1"

    with pytest.raises(QueryError) as exc:
        await client.queries.call("events", {"kinds": ["no_such_kind"], "bogus": 1}, timeout=5)
    assert str(exc.value).startswith("invalid query: ")
    assert "kinds.0: Input should be " in str(exc.value)
    assert "bogus: Extra inputs are not permitted" in str(exc.value)


async def test_an_unknown_op_is_refused_naming_the_known_ones(
    services: Runtime, open_client: OpenClient
) -> None:
    client = await open_client()
    assert client.queries is not None
    with pytest.raises(QueryError) as exc:
        await client.queries.call("drop_tables", {}, timeout=5)
    assert type(exc.value) is QueryError
    message = str(exc.value)
    prefix, _, known = message.partition("; known: ")
    assert prefix == "unknown query 'drop_tables'"
    names = known.split(", ")
    assert {"events", "counts"} <= set(names) and names == sorted(names)


async def test_no_query_service_gives_query_timeout_within_the_timeout(open_client: OpenClient) -> None:
    client = await open_client()
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(QueryTimeout, match=r"within 0\.3s: is `pheromone serve` running"):
        await client.events(EventQuery(), timeout=0.3)
    assert 0.3 <= loop.time() - started < 2.0


async def test_a_client_that_started_its_own_server_says_to_start_the_services_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's snippet run on its own: no server runs for the data directory, so the client starts one,
    # on which nothing can answer a query. The timeout must say what to run first, not only "is it running?".
    monkeypatch.delenv("PHEROMONE_REDIS_URL", raising=False)
    async with Pheromone(workspace="ws-1", job="ws-1.job-42", data_dir=tmp_path, close_timeout=1) as ph:
        with pytest.raises(QueryTimeout) as exc:
            await ph.events(EventQuery(workspace="ws-1"), timeout=0.3)
    message = str(exc.value)
    assert "start `pheromone serve` first" in message and str(tmp_path) in message, message
    assert not (tmp_path / "server.json").exists(), "the server the client started is stopped with it"


async def test_a_wait_longer_than_the_socket_timeout_still_ends_in_query_timeout(
    redis_url: str, prefix: str
) -> None:
    """redis-py applies socket_timeout to BLPOP too (the client's connection has 5 s); a longer wait must not
    surface as redis' own TimeoutError. A 0.5 s socket timeout stands in for the client's 5 s."""
    redis = Redis.from_url(redis_url, socket_timeout=0.5)
    try:
        with pytest.raises(QueryTimeout):
            await QueryClient(redis, Keys(prefix)).call("events", {}, timeout=1.2)
    finally:
        await redis.aclose()


async def test_an_answer_slower_than_the_socket_timeout_is_still_received(
    redis_url: str, prefix: str
) -> None:
    keys = Keys(prefix)
    redis = Redis.from_url(redis_url, socket_timeout=0.5)
    service = Redis.from_url(redis_url)

    async def slow_service() -> None:
        _, raw = await service.blpop([keys.queries], timeout=5)
        await asyncio.sleep(0.8)  # simulated query latency, longer than the client's socket timeout
        await service.rpush(json.loads(raw)["reply"], json.dumps({"ok": True, "result": 42}))

    try:
        answering = asyncio.create_task(slow_service())
        assert await QueryClient(redis, keys).call("counts", {}, timeout=5) == 42
        await answering
    finally:
        await redis.aclose()
        await service.aclose()


async def test_requests_are_queued_for_the_service_oldest_first(
    open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    """The query service's list subscriber (FastStream) pops the head with BLPOP: the oldest must be there."""
    client = await open_client()
    assert client.queries is not None
    for op in ("first", "second", "third"):
        with pytest.raises(QueryTimeout):
            await client.queries.call(op, {}, timeout=0.05)
    popped = []
    while (item := await redis.blpop([Keys(prefix).queries], timeout=0.1)) is not None:
        popped.append(json.loads(item[1])["op"])
    assert popped == ["first", "second", "third"]


async def test_query_with_redis_down_is_a_query_error_not_a_redis_error(
    open_client: OpenClient, private_server: EmbeddedServer
) -> None:
    client = await open_client(url=private_server.url)
    private_server.stop()
    with pytest.raises(QueryError, match="query 'events' failed: ConnectionError") as exc:
        await client.events(EventQuery(), timeout=1)
    assert type(exc.value) is QueryError


# -- hostile requests ------------------------------------------------------------------------------------


async def answered(client: Pheromone) -> None:
    """The service is still alive and answering: a valid query comes back."""
    assert await client.events(EventQuery(limit=1), timeout=5) == []


async def test_the_service_never_writes_a_reply_key_outside_its_namespace(
    services: Runtime, open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    client = await open_client()
    await answered(client)
    token = uuid.uuid4().hex
    hostile_replies = [
        f"victim:key:{token}",
        f"{{{prefix}}}:reply:{token}:x",
        f"{{{prefix}}}:reply:{token}0",
        f"{{{prefix}}}:reply:{token[:-1]}",
        f"{{{prefix}}}:reply:{token.upper()}",
        f"{{{prefix}}}:reply:{token}\n",
        f"x{{{prefix}}}:reply:{token}",
        f"other-{token}:reply:{token}",
        f"{{{prefix}}}:replies:{token}",
        f"{{{prefix}}}:ingest{token}",
    ]
    for reply in hostile_replies:
        await redis.rpush(Keys(prefix).queries, json.dumps({"op": "events", "args": {}, "reply": reply}))
    for reply in ([hostile_replies[0]], {"k": token}, None, 7):  # not even a string
        await redis.rpush(Keys(prefix).queries, json.dumps({"op": "events", "args": {}, "reply": reply}))

    await answered(client)  # queued after the hostile ones, so they have all been handled
    await answered(client)
    assert await redis.llen(Keys(prefix).queries) == 0
    assert [key async for key in redis.scan_iter(match=f"*{token}*")] == []
    assert await redis.exists("victim:key") == 0


async def test_junk_on_the_queries_list_does_not_stop_the_service(
    services: Runtime, open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    client = await open_client()
    junk = [
        b"\xff\xfe\x00not utf-8",
        b"",
        b"null",
        b"[1, 2, 3]",
        b'"a string"',
        b'{"reply": 5}',
        b"{" * 10_000,
        b"x" * 70_000,  # over the request size limit
        b"\x89BIN\r\n\x1a\n\x00\x01",  # the start of FastStream's binary message format, cut short
        b'{"data": "x", "headers": 7}',
        json.dumps({"op": "events", "args": [1], "reply": f"{{{prefix}}}:reply:{uuid.uuid4().hex}"}).encode(),
    ]
    for item in junk:
        await redis.rpush(Keys(prefix).queries, item)
        await answered(client)
    assert await redis.llen(Keys(prefix).queries) == 0


async def test_args_that_are_not_an_object_are_answered_with_an_error(
    services: Runtime, open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    reply = f"{{{prefix}}}:reply:{uuid.uuid4().hex}"
    await redis.rpush(Keys(prefix).queries, json.dumps({"op": "events", "args": [1], "reply": reply}))
    answer = await redis.blpop([reply], timeout=5)
    assert answer is not None
    assert json.loads(answer[1]) == {"ok": False, "error": "args must be an object"}


async def test_an_op_that_is_not_a_string_is_answered_with_an_error(
    services: Runtime, open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    client = await open_client()
    reply = f"{{{prefix}}}:reply:{uuid.uuid4().hex}"
    await redis.rpush(Keys(prefix).queries, json.dumps({"op": ["events"], "args": {}, "reply": reply}))
    await answered(client)  # queued after it: by now it has been handled
    answer = await redis.lpop(reply)
    assert answer is not None and json.loads(answer)["ok"] is False


async def test_a_request_cannot_make_the_service_publish_elsewhere(
    services: Runtime, open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    client = await open_client()
    victim = f"victim-{uuid.uuid4().hex}"
    pubsub = redis.pubsub()
    await pubsub.subscribe(victim)
    try:
        assert (await pubsub.get_message(timeout=1))["type"] == "subscribe"  # type: ignore[index]
        inner = json.dumps({"op": "counts", "args": {}, "reply": f"{{{prefix}}}:reply:{uuid.uuid4().hex}"})
        await redis.rpush(
            Keys(prefix).queries,
            json.dumps({"data": inner, "headers": {"reply_to": victim, "correlation_id": "c"}}),
        )
        await answered(client)  # queued after it: by now it has been handled (and anything published arrived)
        assert await pubsub.get_message(timeout=0.2) is None
    finally:
        await pubsub.unsubscribe(victim)
        await pubsub.aclose()


async def test_an_oversized_request_is_refused_before_it_is_sent(
    open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    """No query service runs here: a request sent would time out; one refused locally fails at once."""
    client = await open_client(workspace="ws-big", job="big")
    assert client.queries is not None
    pad = "x" * MAX_REQUEST_BYTES
    with pytest.raises(QueryError, match=rf"query 'events' is \d+ bytes, over the {MAX_REQUEST_BYTES}-byte limit"):
        await client.queries.call("events", {"pad": pad}, timeout=2)
    assert await redis.llen(Keys(prefix).queries) == 0, "nothing was sent"
    with pytest.raises(QueryTimeout):  # just under the limit: sent, and (no service) unanswered
        await client.queries.call("events", {"pad": pad[:-200]}, timeout=0.3)
    assert await redis.llen(Keys(prefix).queries) == 1


async def test_each_query_method_sends_its_operations_argument_model(
    open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    """No service runs: each request stays on the list, to be read back as the service would read it."""
    client = await open_client()
    queries, keys, t = client.queries, Keys(prefix), 0.05
    assert queries is not None
    calls = {
        "events": lambda: client.events(EventQuery(workspace="ws-a", kinds=[EventKind.EXECUTION]), timeout=t),
        "patterns": lambda: queries.patterns(tags=["api"], status=["validated"], min_trust=0.5, timeout=t),
        "pattern": lambda: queries.pattern("p-123", timeout=t),
        "wait": lambda: queries.learned_wait("429", model="m-1", timeout=t),
        "escalations_similar": lambda: queries.similar_escalations(0.5, 0.75, limit=3, timeout=t),
        "execution_stats": lambda: queries.execution_stats(by="model", timeout=t),
        "entropy": lambda: queries.entropy(history=True, timeout=t),
        "budget": lambda: queries.exploration_budget(job_hash="j-1", timeout=t),
        "drift": lambda: queries.drift(epistemic=True, timeout=t),
        "trajectory": lambda: queries.trajectory(window_cycles=5, timeout=t),
        "playbook": lambda: client.playbook(timeout=t),
        "guidance": lambda: client.guidance("m-1", limit=7, timeout=t),
    }
    assert set(calls) == set(QUERY_ARGS) - {"counts"}  # counts takes no arguments and has no method
    for op, call in calls.items():
        with pytest.raises(QueryTimeout):
            await call()
        raw = await redis.lpop(keys.queries)
        assert raw is not None, op
        request = QueryRequest.model_validate_json(raw)
        assert request.op == op and re.fullmatch(keys.reply_pattern(), request.reply)
        model = QUERY_ARGS[op].model_validate_json(json.dumps(request.args))
        assert model.model_dump(mode="json", exclude_unset=True) == request.args, op


async def test_arguments_the_model_refuses_are_refused_before_sending_as_the_service_would(
    services: Runtime, open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    client = await open_client()
    assert client.queries is not None
    with pytest.raises(QueryError) as here:
        await client.queries.similar_escalations(1.5, 0.5, timeout=5)
    assert type(here.value) is QueryError
    assert await redis.llen(Keys(prefix).queries) == 0  # refused without a round trip
    with pytest.raises(QueryError) as there:
        await client.queries.call("escalations_similar", {"confidence": 1.5, "validation_pass_rate": 0.5}, timeout=5)
    assert str(here.value) == str(there.value) == "invalid query: confidence: Input should be less than or equal to 1"
