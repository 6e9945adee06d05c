"""Graceful shutdown under load: SIGTERM each service process in turn, then all of them at once, while
producers keep emitting. Each exits 0 having committed and acked what it had read (at most one read cut short
stays pending), and the restarted processes finish everything: XPENDING drains to 0 in every group, and the
ledger holds every emitted event exactly once."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone.plumbing.embedded import EmbeddedServer
from tests.reliability import fleet as f
from tests.reliability.fleet import SERVICE_ENV, SERVICES, Producer, ServiceFleet
from tests.services import helpers as h
from tests.support import eventually

pytestmark = pytest.mark.slow

BATCH = int(SERVICE_ENV["PHEROMONE_BATCH_SIZE"])


async def stranded(redis: aioredis.Redis, prefix: str, consumer: str) -> tuple[int, int]:
    """(entries still pending for a stopped process's consumer, groups it was a member of)."""
    states = await f.consumer_states(redis, prefix, consumer)
    return sum(s.pending for s in states), len(states)


def within_one_read(counts: tuple[int, int]) -> bool:
    """A graceful stop commits and acks what it handled: at most one read cut short per group stays."""
    pending, groups = counts
    return pending <= BATCH * groups


@pytest.mark.timeout(240)
async def test_sigterm_under_load_leaves_nothing_a_restart_cannot_finish(
    fleet: ServiceFleet, aof_server: EmbeddedServer, server_redis: aioredis.Redis, producers: list[Producer],
    prefix: str, tmp_path: Path,
) -> None:
    redis = server_redis
    await fleet.start_all(redis)
    await f.open_producers(producers, aof_server.url, prefix, tmp_path / "spool", 4, 2, seed=31)
    stop = asyncio.Event()
    running = [asyncio.create_task(p.run(8.0, stop)) for p in producers]
    stranded_counts: dict[str, int] = {}
    try:
        await eventually(lambda: h.ledger_count(fleet.db) > 300, timeout=60, what="load under way")
        for name in SERVICES:
            consumer = fleet.consumer(name)
            assert await asyncio.to_thread(fleet.signal, name, signal.SIGTERM) == 0, fleet.tail(name)
            left = await stranded(redis, prefix, consumer)
            assert within_one_read(left), (name, left)
            stranded_counts[name] = left[0]
            fleet.start(name)
            await fleet.ready(redis, name)
        before = h.ledger_count(fleet.db)
        await eventually(lambda: h.ledger_count(fleet.db) > before, timeout=30, what="the store going on")

        consumers = {name: fleet.consumer(name) for name in SERVICES}
        codes = await asyncio.to_thread(fleet.stop_all)  # every service at once, producers still emitting
        assert codes == dict.fromkeys(SERVICES, 0), f"{codes}\n{fleet.tails()}"
        for name, consumer in consumers.items():
            left = await stranded(redis, prefix, consumer)
            assert within_one_read(left), (name, left)
            stranded_counts[f"{name} (all at once)"] = left[0]
        await fleet.start_all(redis)
    finally:
        stop.set()
        await asyncio.gather(*running)
    await f.close_producers(producers)

    emitted = {eid for p in producers for eid in p.emitted}
    try:
        await eventually(lambda: f.all_groups_drained(redis, prefix), timeout=90, interval=0.2,
                         what="XPENDING 0 and lag 0 in every group")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{await f.group_state(redis, prefix)}\n{fleet.tails()}") from None
    ids = [i for i, _ in f.producer_events(fleet.db, producers)]
    assert len(ids) == len(emitted) and set(ids) == emitted
    assert await h.dead_letters(redis, prefix) == []
    assert fleet.stop_all() == dict.fromkeys(SERVICES, 0)
    before_sum, after_sum, _ = await f.rebuild_matches(fleet.db)
    assert before_sum == after_sum
    report = {"events": len(emitted), "sigterms": len(SERVICES) * 2, "stranded_after_stop": stranded_counts,
              "lost": 0, "pending_after_restart": 0}
    print("\nGRACEFUL " + json.dumps(report))  # the figures docs/RELIABILITY.md records (pytest -s)
