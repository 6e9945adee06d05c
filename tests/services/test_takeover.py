"""A store keeps its stream's order across a crash: what a dead consumer had read and not acked is applied
before anything newer, so sessions end as they would have without the crash, with nothing dead-lettered. And
the writer lease: a standby reads nothing until the writer gives the lease back, a writer that finds the lease
taken stops reading.

The crash is made certain rather than hoped for: a consumer of the store group reads a batch (XREADGROUP),
beats like a service (its liveness key, with a short TTL) and then stops for good without acking. The events
say nothing of their predecessors (`from_status` unset, as older producers send them), so only the order of
application can get them right, and the retrier is kept out of it (`claim_idle_ms` of a minute).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone.contracts import Envelope
from pheromone.contracts.sessions import SessionTransitioned
from pheromone.contracts.streams import GROUP_STORE, Keys
from pheromone.services import transport
from pheromone.services.consumer import GroupWorker
from pheromone.services.store.db import Store
from pheromone.services.writer import take_over
from tests.services import helpers as h
from tests.services.conftest import StartRuntime

SESSIONS = 30
SCOPES = 3
PATH = ("triggered", "harvesting", "diagnosing", "planning", "completed")
DEAD = "store-crashed-1"
"""The dead consumer's name in the group; its liveness key is `{prefix}:alive:store:crashed-1`."""
CLAIM_IDLE_MS = 60_000
"""Longer than the test: the retrier cannot be what applies the dead consumer's entries."""


def stream_events() -> list[Envelope]:
    """Sessions one after another in a few scopes (a scope holds one active session at a time), with the
    abandoned-session shape too: every third session is failed by its successor's consolidator right before
    the successor's first event."""
    out: list[Envelope] = []
    for i in range(SESSIONS):
        scope, sid = f"ws-{i % SCOPES}", f"s-{i:03d}"
        path: tuple[str, ...] = PATH[:2] if i % 3 == 1 else PATH
        out += [h.envelope(SessionTransitioned(session_id=sid, scope=scope, to_status=to,  # type: ignore[arg-type]
                                               trigger="on_demand" if to == "triggered" else None), workspace=scope)
                for to in path]
        if i % 3 == 1:  # abandoned in harvesting: the next session of its scope fails it before it starts
            out.append(h.envelope(SessionTransitioned(session_id=sid, scope=scope, to_status="failed",  # type: ignore[arg-type]
                                                      reason="abandoned"), workspace=scope))
    return _interleave(out)


def _interleave(events: list[Envelope]) -> list[Envelope]:
    """The scopes' streams merged round-robin, each scope's own order kept."""
    by_scope: dict[str, list[Envelope]] = {}
    for e in events:
        by_scope.setdefault(e.workspace, []).append(e)
    lanes = list(by_scope.values())
    out: list[Envelope] = []
    while any(lanes):
        for lane in lanes:
            if lane:
                out.append(lane.pop(0))
    return out


async def control(tmp_path: Path, events: list[Envelope]) -> list[tuple[str, str]]:
    async with Store(tmp_path / "control.db") as store:
        result = await store.apply([(e, e.model_dump_json()) for e in events])
        assert result.rejected == []
    return h.query(tmp_path / "control.db", "SELECT session_id, status FROM session_state ORDER BY 1")


@pytest.mark.parametrize("restarted_as", [None, "crashed-1"], ids=["new-name", "same-name"])
async def test_a_dead_consumers_batch_is_applied_before_anything_newer(
    restarted_as: str | None, start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis,
    tmp_path: Path,
) -> None:
    """`same-name`: the store restarts with the dead one's consumer name (`PHEROMONE_CONSUMER`), so the entries
    are its own pending ones, which a group reader never reads again (`>`): the takeover applies them too."""
    keys = Keys(prefix)
    events = stream_events()
    expected = await control(tmp_path, events)
    assert {status for _, status in expected} == {"completed", "failed"}
    await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events])
    await redis.xgroup_create(keys.ingest, GROUP_STORE, id="0", mkstream=True)

    # The crash: a consumer that beats, reads a batch from the middle of sessions, and is never heard of again.
    await redis.set(keys.heartbeat("store:crashed-1"), b"{}", px=1_500)
    read = await redis.xreadgroup(GROUP_STORE, DEAD, {keys.ingest: ">"}, count=len(events) // 3)
    assert len(read[0][1]) == len(events) // 3

    await start_runtime(services=("store",), claim_idle_ms=CLAIM_IDLE_MS, consumer=restarted_as)
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), timeout=20, what="every entry applied")
    assert await h.dead_letters(redis, prefix) == []
    assert h.query(db, "SELECT session_id, status FROM session_state ORDER BY 1") == expected
    # Not merely the same end: the ledger holds the stream in its order, the dead consumer's batch first.
    assert h.query(db, "SELECT event_id FROM ledger ORDER BY seq") == [(e.event_id,) for e in events]
    consumers = {c["name"]: c["pending"] for c in await redis.xinfo_consumers(keys.ingest, GROUP_STORE)}
    assert consumers[DEAD.encode()] == 0


async def test_a_live_consumers_batch_is_left_to_it(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    """A consumer whose liveness key is there still owns what it read: the writer waits for its acks (here:
    for its entries to go idle, as it never acks) before it reads anything newer."""
    keys = Keys(prefix)
    events = stream_events()
    await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events])
    await redis.xgroup_create(keys.ingest, GROUP_STORE, id="0", mkstream=True)
    await redis.set(keys.heartbeat("store:crashed-1"), b"{}", px=60_000)
    await redis.xreadgroup(GROUP_STORE, DEAD, {keys.ingest: ">"}, count=len(events) // 3)

    await start_runtime(services=("store",), claim_idle_ms=1_500)
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), timeout=20, what="every entry applied")
    assert await h.dead_letters(redis, prefix) == []
    assert h.query(db, "SELECT event_id FROM ledger ORDER BY seq") == [(e.event_id,) for e in events]


async def test_a_standby_reads_nothing_and_takes_over_at_once_when_the_writer_stops(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    keys = Keys(prefix)
    writer = await start_runtime(services=("store",), consumer="one", heartbeat_ttl_s=60)
    await h.eventually(lambda: writer._writers[0].active, what="the first store writing")
    standby = await start_runtime(services=("store",), consumer="two")
    await h.eventually(lambda: redis.exists(keys.heartbeat("store:two")), what="the standby beating")
    assert await redis.get(keys.writer("store")) == b"store-one"

    events = stream_events()
    await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events[:50]])
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), what="the writer applying")
    consumers = {c["name"]: c for c in await redis.xinfo_consumers(keys.ingest, GROUP_STORE)}
    assert set(consumers) == {b"store-one"}, "the standby read from the group"

    await writer.stop()  # gives the lease back: the standby need not wait for it to expire (60 s here)
    await h.eventually(lambda: standby._writers[0].active, timeout=5, what="the standby writing")
    await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events[50:]])
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), what="the standby applying")
    assert h.query(db, "SELECT event_id FROM ledger ORDER BY seq") == [(e.event_id,) for e in events]
    assert await h.dead_letters(redis, prefix) == []


async def test_a_writer_that_finds_its_lease_taken_stops_reading_until_it_has_it_again(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    keys = Keys(prefix)
    runtime = await start_runtime(services=("store",), consumer="one")
    writer = runtime._writers[0]
    await h.eventually(lambda: writer.active, what="writing")
    await redis.set(keys.writer("store"), b"store-other", px=60_000)  # another process won it meanwhile
    await h.eventually(lambda: not writer.active and not runtime._subscribers, what="the writer standing down")
    events = stream_events()[:20]
    await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events])
    # A read still blocked on the server when the subscriber stopped may deliver one batch to it: it is not
    # applied, it stays pending under this consumer until a writer takes it over.
    info = {g["name"]: g for g in await redis.xinfo_groups(keys.ingest)}
    store = info[GROUP_STORE.encode()]
    assert store["lag"] + store["pending"] == len(events) and h.ledger_count(db) == 0
    assert not writer.held and not runtime._subscribers

    await redis.delete(keys.writer("store"))  # the other one is gone and gave the lease back
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), what="writing again")
    assert h.query(db, "SELECT event_id FROM ledger ORDER BY seq") == [(e.event_id,) for e in events]


async def test_one_poison_entry_in_a_taken_over_batch_does_not_take_the_others_to_the_dead_letters(
    prefix: str, redis: aioredis.Redis
) -> None:
    """The dead consumer's entries are on their last delivery: the batch that one of them fails dead-letters
    none, and the entries then go one at a time, so only the poison one is dead-lettered."""
    keys = Keys(prefix)
    events = [h.envelope(h.execution()) for _ in range(3)]
    poison = events[1].event_id
    applied: list[str] = []

    async def handler(batch: Sequence[tuple[Envelope, bytes]]) -> list[tuple[int, str]]:
        if any(env.event_id == poison for env, _ in batch):
            raise ValueError("a projection failed")
        applied.extend(env.event_id for env, _ in batch)
        return []

    ids = await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events])
    await redis.xgroup_create(keys.ingest, GROUP_STORE, id="0")
    await redis.xreadgroup(GROUP_STORE, DEAD, {keys.ingest: ">"})
    await redis.xclaim(keys.ingest, GROUP_STORE, DEAD, 0, ids, retrycount=4)  # delivered 4 times of 5
    worker = GroupWorker(service="store", stream=keys.ingest, group=GROUP_STORE, handler=handler, redis=redis,
                         dead_stream=keys.dead, consumer="store-new", records_poison=True, max_deliveries=5)
    assert await take_over(worker, keys, 0.01, lambda: True) == 3
    assert applied == [events[0].event_id, events[2].event_id]
    letters = await h.dead_letters(redis, prefix)
    assert [(f[b"id"], f[b"deliveries"]) for _, f in letters] == [(ids[1], b"5")]
    assert await h.pending(redis, keys.ingest) == 0


async def _all_idle(redis: aioredis.Redis, stream: str, count: int, idle_ms: int) -> bool:
    return len(await transport.idle_pending(redis, stream, GROUP_STORE, idle_ms, count)) == count


async def test_the_retrier_leaves_alone_a_batch_waiting_behind_the_one_in_flight(
    redis: aioredis.Redis, prefix: str
) -> None:
    """A batch delivered while the one before it still commits waits for its slot; its entries pass
    claim_idle_ms meanwhile, and the retrier must not apply them a second time."""
    keys = Keys(prefix)
    events = [h.envelope(h.execution()) for _ in range(4)]
    release = asyncio.Event()
    applied: list[str] = []

    async def handler(batch: Sequence[tuple[Envelope, bytes]]) -> list[tuple[int, str]]:
        applied.extend(env.event_id for env, _ in batch)
        await release.wait()  # a slow commit
        return []

    await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events])
    await redis.xgroup_create(keys.ingest, GROUP_STORE, id="0")
    read = await redis.xreadgroup(GROUP_STORE, "store-c", {keys.ingest: ">"})
    entries = read[0][1]
    worker = GroupWorker(service="store", stream=keys.ingest, group=GROUP_STORE, handler=handler, redis=redis,
                         dead_stream=keys.dead, consumer="store-c", records_poison=True, claim_idle_ms=20)
    await worker.on_batch(entries[:2])  # in flight
    waiting = asyncio.ensure_future(worker.on_batch(entries[2:]))  # waits for the slot
    # Every entry idle past claim_idle_ms in the pending list, the waiting batch's included.
    await h.eventually(lambda: _all_idle(redis, keys.ingest, len(events), 20), what="every entry idle")
    assert not waiting.done()
    assert await worker.claim_pending() == 0
    release.set()
    await waiting
    await worker.drain()
    assert applied == [e.event_id for e in events]  # each once, in stream order
    assert await h.pending(redis, keys.ingest) == 0
