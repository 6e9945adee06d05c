"""The kind field on stream entries (contracts.streams.FIELD_KIND): producers write it, groups that want some
kinds ack the rest without parsing, and nothing that applies or counts an event believes it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone.contracts import Envelope, EventKind, parse_envelope
from pheromone.contracts.streams import FIELD, FIELD_KIND, GROUP_ENTROPY, Keys, entry
from pheromone.services import consumer, transport
from pheromone.services.consumer import GroupWorker
from tests.services import helpers as h
from tests.services.conftest import StartRuntime
from tests.support import OpenClient, eventually, store_rows

APPLIED = EventKind.PATTERN_APPLIED.value


async def test_the_client_writes_each_entrys_kind(
    open_client: OpenClient, redis: aioredis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    client = await open_client("kinds")
    records = [h.execution(), h.applied("p", True), h.rate_limit(), h.discovery()]
    for record in records:
        client.emit(record)
    await client.flush()
    seen: dict[str, str] = {}
    for stream in (keys.ingest, keys.ratelimits, keys.discoveries):
        for _, fields in await redis.xrange(stream):
            env = parse_envelope(fields[FIELD.encode()])
            seen[env.kind] = fields[FIELD_KIND.encode()].decode()
    assert seen == {r.type: r.type for r in records}


async def _worker(redis: aioredis.Redis, stream: str, got: list[Envelope], **kw: object) -> GroupWorker:
    async def handler(events: object) -> list[tuple[int, str]]:
        got.extend(env for env, _ in events)  # type: ignore[attr-defined]
        return []

    await transport.ensure_group(redis, stream, GROUP_ENTROPY)
    return GroupWorker(service="t", stream=stream, group=GROUP_ENTROPY, handler=handler, redis=redis,
                       dead_stream=f"{stream}:dead", consumer="t-1", **kw)  # type: ignore[arg-type]


async def test_a_worker_with_kinds_acks_other_kinds_unparsed(
    redis: aioredis.Redis, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[bytes] = []
    real = consumer.parse_envelope

    def counting(raw: bytes) -> Envelope:
        parsed.append(raw)
        return real(raw)

    monkeypatch.setattr(consumer, "parse_envelope", counting)
    stream = Keys(prefix).ingest
    applied, execution = h.envelope(h.applied("p", True)), h.envelope(h.execution())
    unmarked = h.envelope(h.applied("q", False))
    fields = [
        entry(execution.model_dump_json(), execution.kind),  # another kind: acked unparsed
        {FIELD: b"\xff junk", FIELD_KIND: b"execution"},  # junk that says another kind: acked unparsed
        entry(applied.model_dump_json(), applied.kind),  # wanted: parsed and handled
        h.entry(unmarked),  # no kind field (a spooled entry, another producer): parsed
        {FIELD: b"\xff junk", FIELD_KIND: APPLIED.encode()},  # says wanted, is junk: parsed, skipped
    ]
    ids = await h.xadd_raw(redis, stream, fields)
    got: list[Envelope] = []
    worker = await _worker(redis, stream, got, records_poison=False, kinds=frozenset({APPLIED}))
    read = await redis.xreadgroup(GROUP_ENTROPY, "t-1", {stream: ">"})
    await worker.handle_now(read[0][1], None)

    assert [e.event_id for e in got] == [applied.event_id, unmarked.event_id]
    assert parsed == [fields[2][FIELD].encode(), fields[3][FIELD].encode(), b"\xff junk"]  # type: ignore[union-attr]
    assert (await redis.xpending(stream, GROUP_ENTROPY))["pending"] == 0, "every entry is acked"
    assert worker.stats.applied == 2 and len(ids) == 5


async def test_without_kinds_every_entry_is_parsed(redis: aioredis.Redis, prefix: str) -> None:
    stream = Keys(prefix).ingest
    execution = h.envelope(h.execution())
    await h.xadd_raw(redis, stream, [entry(execution.model_dump_json(), APPLIED)])  # a lying kind field
    got: list[Envelope] = []
    worker = await _worker(redis, stream, got, records_poison=False)
    read = await redis.xreadgroup(GROUP_ENTROPY, "t-1", {stream: ">"})
    await worker.handle_now(read[0][1], None)
    assert [(e.event_id, e.kind) for e in got] == [(execution.event_id, "execution")]


async def test_a_group_that_records_poison_cannot_filter_by_kind(redis: aioredis.Redis, prefix: str) -> None:
    with pytest.raises(ValueError, match="must parse every entry"):
        await _worker(redis, Keys(prefix).ingest, [], records_poison=True, kinds=frozenset({APPLIED}))


async def test_services_count_only_their_kinds_and_the_store_ignores_the_field(
    start_runtime: StartRuntime, open_client: OpenClient, redis: aioredis.Redis, prefix: str, db: Path
) -> None:
    runtime = await start_runtime(services=("store", "entropy", "consolidator"))
    client = await open_client("fleet")
    applications = [h.applied(f"p{i % 3}", i % 2 == 0) for i in range(7)]
    for i in range(20):
        client.emit(h.execution())
        if i < len(applications):
            client.emit(applications[i])
    # A producer that lies: an application whose kind field says execution. The store applies what the
    # validated payload is; the entropy group takes the producer's word and skips it.
    liar = h.envelope(h.applied("liar", True))
    await redis.xadd(Keys(prefix).ingest, entry(liar.model_dump_json(), "execution"))  # type: ignore[arg-type]
    await client.flush()
    total = 20 + len(applications) + 1
    await eventually(lambda: len(store_rows(db, "SELECT event_id FROM ledger")) == total, what="all stored")
    workers = {(w.service, w.stream): w for part in runtime.parts for w in part.workers}
    entropy, consolidator = workers[("entropy", Keys(prefix).ingest)], workers[("consolidator", Keys(prefix).ingest)]
    await eventually(lambda: entropy.stats.applied == len(applications), what="entropy handled the applications")
    await eventually(lambda: consolidator.stats.applied == 20 + 1, what="consolidator handled the executions")
    assert store_rows(db, "SELECT kind FROM ledger WHERE event_id = ?", liar.event_id) == [("pattern_applied",)]
    for w in (entropy, consolidator):  # each entry is acked after its handler counted it

        async def acked(w: GroupWorker = w) -> bool:
            return (await redis.xpending(w.stream, w.group))["pending"] == 0

        await eventually(acked, what=f"group {w.group} acked everything")


async def test_the_retrier_leaves_alone_a_batch_still_being_applied(redis: aioredis.Redis, prefix: str) -> None:
    """A batch whose commit outlasts claim_idle_ms is idle in the pending list but still this worker's: the
    retrier must not apply it a second time (under load, that doubled the applied counts)."""
    stream = Keys(prefix).ingest
    release = asyncio.Event()
    got: list[Envelope] = []

    async def slow(events: object) -> list[tuple[int, str]]:
        await release.wait()
        got.extend(env for env, _ in events)  # type: ignore[attr-defined]
        return []

    await transport.ensure_group(redis, stream, GROUP_ENTROPY)
    worker = GroupWorker(service="t", stream=stream, group=GROUP_ENTROPY, handler=slow, redis=redis,  # type: ignore[arg-type]
                         dead_stream=f"{stream}:dead", consumer="t-1", claim_idle_ms=100, records_poison=False)
    await h.xadd_raw(redis, stream, [h.entry(h.envelope(h.execution())) for _ in range(3)])
    read = await redis.xreadgroup(GROUP_ENTROPY, "t-1", {stream: ">"})
    await worker.on_batch(read[0][1])

    async def idle() -> bool:
        return len(await transport.idle_pending(redis, stream, GROUP_ENTROPY, 100, 10)) == 3

    await eventually(idle, what="the batch idle past claim_idle_ms")
    assert await asyncio.wait_for(worker.claim_pending(), 5) == 0  # taking it would wait on the handler
    release.set()
    await worker.drain()
    assert len(got) == 3
    assert (await redis.xpending(stream, GROUP_ENTROPY))["pending"] == 0
