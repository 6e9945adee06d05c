"""Chaos during load: with producers emitting and every service in its own process, each service is SIGKILLed
and restarted in turn, Redis is stopped and then SIGKILLed (AOF on) and restarted, another process holds the
SQLite write lock for a while, and one producer overflows its spool limit during the Redis outage.

Afterwards nothing any producer emitted is lost, nothing is applied twice (the ledger holds each emitted id
once; the projections equal a rebuild from the ledger and match the emitted counts), nothing is pending or
dead, and every service recovered by itself: each was taken back over by its restarted process, rode out the
Redis outage and the lock, and went on processing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from pheromone.contracts import Envelope, PatternObserved, PatternTransitioned
from pheromone.contracts.records import pattern_id
from pheromone.contracts.sessions import Edit, EditOp, EditPillar, EditTransitioned, SessionTransitioned
from pheromone.contracts.streams import GROUP_STORE, Keys
from pheromone.plumbing.embedded import EmbeddedServer
from tests.reliability import fleet as f
from tests.reliability.fleet import SERVICES, Producer, ServiceFleet
from tests.services import helpers as h
from tests.support import eventually

pytestmark = pytest.mark.slow

SHEETS_PER_S = 8.0
OUTAGE_S = 3.0
LOCK_S = 3.0
SPOOL_LIMIT = 8 * 1024
"""The overflowing producer's spool limit: a dozen events' worth, full within the outage."""

GROUPLESS = {"query"}
"""Services that read no stream through a group: the query service answers requests from a list."""

LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""
"""Another process that takes the store's write lock, says so, and holds it until told to let go."""


async def processing(
    fleet: ServiceFleet, redis: aioredis.Redis, producers: list[Producer], service: str, since: float
) -> None:
    """Wait until `service`'s current process has done work after `since` (a `time.time()`): read entries in
    one of its groups, or, for the query service, answered a query."""
    if service in GROUPLESS:
        counts = await producers[0].client.queries.call("counts", {}, timeout=30)  # type: ignore[union-attr]
        assert sum(counts.values()) > 0
        return
    consumer = fleet.consumer(service)

    async def worked() -> bool:
        assert fleet.running()[service], f"{service} exited:\n{fleet.tail(service)}"
        age_ms = (time.time() - since) * 1000
        return any(0 <= s.inactive_ms < age_ms for s in await f.consumer_states(redis, fleet.prefix, consumer))

    await eventually(worked, timeout=30, interval=0.1, what=f"{service} ({consumer}) processing")


async def heartbeats_back(fleet: ServiceFleet, redis: aioredis.Redis) -> None:
    """Delete every liveness key, then wait for each service's current process to write its own again."""
    keys = [k async for k in redis.scan_iter(f"{Keys(fleet.prefix).heartbeat('*')}")]
    if keys:
        await redis.delete(*keys)
    for name in SERVICES:
        await fleet.ready(redis, name)


@pytest.mark.timeout(300)
async def test_chaos_during_load_loses_nothing_applies_nothing_twice_and_recovers_alone(
    fleet: ServiceFleet, aof_server: EmbeddedServer, server_redis: aioredis.Redis, producers: list[Producer],
    prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    redis, url = server_redis, aof_server.url
    assert await redis.config_get("appendfsync") == {"appendfsync": "always"}
    await fleet.start_all(redis)
    await f.open_producers(producers, url, prefix, tmp_path / "spool", 4, 2, seed=23)
    await f.open_producers(producers, url, prefix, tmp_path / "spool", 1, 1, seed=29, tag="tight",
                           max_spool_bytes=SPOOL_LIMIT)
    tight = producers[-1]
    stop = asyncio.Event()
    running = [asyncio.create_task(p.run(SHEETS_PER_S * (3 if p is tight else 1), stop)) for p in producers]
    faults: list[str] = []
    orphaned: dict[str, int] = {}  # entries a killed process had read and not acked, left to its successor
    t0 = time.monotonic()
    try:
        await eventually(lambda: h.ledger_count(fleet.db) > 500, timeout=60, what="load under way")

        # 1. SIGKILL each service in turn; its restarted process takes over its pending entries and goes on.
        for name in SERVICES:
            if name == "store":
                orphaned[name] = await kill_store_mid_batch(fleet, redis, prefix)
                assert orphaned[name] > 0
                faults.append("SIGKILL store mid-batch (blocked on the write lock)")
            else:
                killed = fleet.consumer(name)
                assert fleet.signal(name, signal.SIGKILL) == -signal.SIGKILL
                orphaned[name] = sum(c.pending for c in await f.consumer_states(redis, prefix, killed))
                faults.append(f"SIGKILL {name}")
            since = time.time()
            fleet.start(name)
            await fleet.ready(redis, name)
            await processing(fleet, redis, producers, name, since)

        # 2. Redis stopped (graceful SHUTDOWN) for OUTAGE_S while producers keep emitting (they spool; the
        #    tight one overflows its spool limit and keeps events in memory), then started again.
        with caplog.at_level(logging.ERROR, logger="pheromone.client"):
            await asyncio.to_thread(aof_server.stop)
            faults.append(f"Redis stopped {OUTAGE_S:g}s")
            await asyncio.sleep(OUTAGE_S)  # the outage's length: producers emit into it
            await eventually(lambda: tight.client.stats.spool_refusals > 0, timeout=30,
                             what="the tight producer's spool full")
            await asyncio.to_thread(aof_server.start)
            await redis.connection_pool.disconnect()  # this test's own connections died with the server
            since = time.time()
        faults.append(f"spool limit of {SPOOL_LIMIT} bytes overflowed")
        assert any("cannot spool" in r.getMessage() for r in caplog.records), "spool overflow not logged"
        assert all(p.client.stats.send_failures > 0 for p in producers)
        await heartbeats_back(fleet, redis)
        for name in SERVICES:
            await processing(fleet, redis, producers, name, since)

        # 3. Redis SIGKILLed and restarted at once: with appendfsync always, every acknowledged write is kept.
        await asyncio.to_thread(aof_server.kill)
        faults.append("Redis SIGKILL")
        await asyncio.to_thread(aof_server.start)
        await redis.connection_pool.disconnect()
        since = time.time()
        await heartbeats_back(fleet, redis)
        for name in SERVICES:
            await processing(fleet, redis, producers, name, since)

        # 4. Another process holds the store's write lock: nothing commits, entries wait, none is dead.
        await lock_store(fleet, redis, prefix)
        faults.append(f"SQLite write lock held {LOCK_S:g}s by another process")
        released = h.ledger_count(fleet.db)
        await eventually(lambda: h.ledger_count(fleet.db) > released, timeout=30, what="the store committing again")
    finally:
        stop.set()
        await asyncio.gather(*running)
    loaded_s = time.monotonic() - t0
    await f.close_producers(producers)

    emitted = [eid for p in producers for eid in p.emitted]
    try:
        await eventually(lambda: len(f.producer_events(fleet.db, producers)) >= len(emitted), timeout=120,
                         interval=0.5, what="every emitted event stored")
        await eventually(lambda: f.all_groups_drained(redis, prefix), timeout=60, interval=0.2,
                         what="every group drained (XPENDING 0, lag 0)")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{fleet.tails()}") from None
    assert await h.dead_letters(redis, prefix) == []
    assert all(fleet.running().values()), fleet.tails()
    codes = fleet.stop_all()
    assert codes == dict.fromkeys(codes, 0), f"{codes}\n{fleet.tails()}"

    ids = [i for i, _ in f.producer_events(fleet.db, producers)]
    assert len(ids) == len(set(ids)) == len(emitted) == len(set(emitted))  # nothing lost, nothing twice
    assert set(ids) == set(emitted)
    kinds = Counter[str]()
    for p in producers:
        kinds.update(p.types)
    assert h.count(fleet.db, "pattern_applications") == kinds["pattern_applied"]
    assert h.count(fleet.db, "executions") == kinds["execution"]
    assert h.scalar(fleet.db, "SELECT SUM(led_to_success_count) FROM patterns") == sum(
        p.applied_successes for p in producers)
    before, after, replayed = await f.rebuild_matches(fleet.db)
    assert before == after and replayed == h.ledger_count(fleet.db)
    assert tight.client.stats.lost == 0 and tight.client.stats.spool_refusals > 0

    report = {"events": len(emitted), "producers": len(producers), "seconds_under_load": round(loaded_s),
              "faults": faults, "service_starts": dict(fleet.starts), "left_pending_by_killed": orphaned,
              "spool_refusals": tight.client.stats.spool_refusals, "lost": 0, "applied_twice": 0}
    print("\nCHAOS " + json.dumps(report))  # the figures docs/RELIABILITY.md records (pytest -s)


@contextlib.asynccontextmanager
async def write_lock(db: Path) -> AsyncIterator[None]:
    """Another process holds the store's write lock (BEGIN EXCLUSIVE) for the block's duration."""
    locker = await asyncio.create_subprocess_exec(sys.executable, "-c", LOCKER, str(db),
                                                  stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    try:
        assert locker.stdout is not None and locker.stdin is not None
        line = await asyncio.wait_for(locker.stdout.readline(), 30)
        assert line.strip() == b"locked", line
        yield
        locker.stdin.write(b"release\n")
        await locker.stdin.drain()
        assert await asyncio.wait_for(locker.wait(), 30) == 0
    finally:
        if locker.returncode is None:
            locker.kill()
            await locker.wait()


async def lock_store(fleet: ServiceFleet, redis: aioredis.Redis, prefix: str) -> None:
    """Hold the store's write lock from another process for LOCK_S; the store waits and commits nothing."""
    async with write_lock(fleet.db):
        held = h.ledger_count(fleet.db)
        await asyncio.sleep(LOCK_S)  # the fault's length: producers keep emitting into it
        assert h.ledger_count(fleet.db) == held, "the store committed while another process held the lock"
        assert await h.all_pending(redis, prefix) + await _store_lag(redis, prefix) > 0
        assert fleet.running()["store"]


async def kill_store_mid_batch(fleet: ServiceFleet, redis: aioredis.Redis, prefix: str) -> int:
    """SIGKILL the store with a batch read and not committed; returns how many entries it left pending.

    The write lock holds the store inside its transaction (waiting on the busy timeout) with the entries it
    read still unacked: the worst moment to die, made certain instead of hoped for."""
    consumer = fleet.consumer("store")

    async def reading() -> int:
        return sum(c.pending for c in await f.consumer_states(redis, prefix, consumer))

    async with write_lock(fleet.db):
        await eventually(reading, timeout=30, interval=0.05, what="the store holding a read batch")
        assert fleet.signal("store", signal.SIGKILL) == -signal.SIGKILL
        return await reading()


async def _store_lag(redis: aioredis.Redis, prefix: str) -> int:
    state = await f.group_state(redis, prefix)
    return sum(lag or 0 for (_, g), (_, lag) in state.items() if g == GROUP_STORE)


def lifecycles() -> tuple[list[Envelope], list[Envelope]]:
    """A session (sent as older producers send it: no `from_status`), an edit through review and a pattern's
    lifecycle moves, cut in two: the first events of each entity, and the rest, which starts with a record
    that no lifecycle holds back (it shows whether anything newer overtook the dead process's entries)."""
    sid, scope = "s-chaos", "ws-chaos"
    edit = Edit(id="e-chaos", pillar=EditPillar.WAIT_POLICY, op=EditOp.SET_WAIT_POLICY, workspace=scope,
                target="E_CHAOS", seconds=12.0)
    pid = pattern_id("retry_pattern", "chaos")

    def session(to: str, **kw: Any) -> Envelope:
        return Envelope(workspace=scope, job="consolidator", payload=SessionTransitioned(
            session_id=sid, scope=scope, to_status=to, trigger="on_demand" if to == "triggered" else None, **kw))  # type: ignore[arg-type]

    def pattern(prev: str, to: str) -> Envelope:
        return h.envelope(PatternTransitioned(pattern_id=pid, to_status=to, from_status=prev, reason="op", actor="op"))  # type: ignore[arg-type]

    first = [session("triggered"), session("harvesting"),
             h.envelope(PatternObserved(pattern_type="retry_pattern", pattern_name="chaos", description="d")),
             pattern("pending", "validated")]
    rest = [h.envelope(h.execution()),
            session("diagnosing"), session("planning"), session("gating"), session("executing"),
            Envelope(workspace=scope, job="consolidator", payload=EditTransitioned(
                session_id=sid, edit_id=edit.id, to_status="staged", edit=edit)),  # type: ignore[arg-type]
            session("awaiting_review"),
            Envelope(workspace=scope, job="review", payload=EditTransitioned(
                session_id=sid, edit_id=edit.id, to_status="applied", from_status="staged")),  # type: ignore[arg-type]
            session("completed"), pattern("validated", "quarantined"), pattern("quarantined", "retired")]
    return first, rest


@pytest.mark.timeout(120)
async def test_a_kill_between_two_lifecycle_events_of_one_entity_keeps_their_order(
    fleet: ServiceFleet, server_redis: aioredis.Redis, prefix: str
) -> None:
    """The store is SIGKILLed holding the first events of a session, an edit and a pattern (read, blocked in
    its transaction by another process's write lock), with their next events already in the stream and not
    read. Its successor applies the dead process's entries before the newer ones: the ledger holds the stream
    in its order, every entity ends where its events lead, and nothing is dead-lettered."""
    redis, keys = server_redis, Keys(prefix)
    fleet.start("store")
    await fleet.ready(redis, "store")
    consumer = fleet.consumer("store")
    first, rest = lifecycles()
    filler = h.envelope(h.execution())

    async def held(ids: list[bytes]) -> bool:
        rows = await redis.xpending_range(keys.ingest, GROUP_STORE, "-", "+", 100, consumername=consumer)
        return {r["message_id"] for r in rows} >= set(ids)

    async with write_lock(fleet.db):
        async with redis.pipeline(transaction=True) as pipe:  # at once: the store reads them in one batch
            for e in first:
                pipe.xadd(keys.ingest, h.entry(e))  # type: ignore[arg-type]
            first_ids = list(await pipe.execute())
        await eventually(lambda: held(first_ids), timeout=30, what="the store blocked holding the first events")
        # The next batch it reads waits for the blocked one to commit: after it the store reads nothing more.
        filler_ids = await h.xadd_raw(redis, keys.ingest, [h.entry(filler)])
        await eventually(lambda: held(filler_ids), timeout=30, what="the store holding its next batch")
        rest_ids = await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in rest])
        assert fleet.signal("store", signal.SIGKILL) == -signal.SIGKILL
        rows = await redis.xpending_range(keys.ingest, GROUP_STORE, "-", "+", 100, consumername=consumer)
        assert not {r["message_id"] for r in rows} & set(rest_ids), "the kill must land before the rest is read"
    fleet.start("store")
    await eventually(lambda: f.all_groups_drained(redis, prefix), timeout=60, interval=0.1,
                     what="every entry applied after the restart")
    assert await h.dead_letters(redis, prefix) == []
    order = [e.event_id for e in (*first, filler, *rest)]
    assert [i for (i,) in h.query(fleet.db, "SELECT event_id FROM ledger ORDER BY seq")] == order
    assert h.query(fleet.db, "SELECT status FROM session_state") == [("completed",)]
    assert h.query(fleet.db, "SELECT status FROM session_edits") == [("applied",)]
    assert h.query(fleet.db, "SELECT quarantine_status FROM patterns") == [("retired",)]
    assert fleet.stop_all() == {"store": 0}, fleet.tails()
