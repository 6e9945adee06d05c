"""Projections are a function of the ledger: dropping and replaying them gives the same state, through the API
and through `pheromone rebuild`, and a damaged projection is repaired by a rebuild."""

from __future__ import annotations

import asyncio
import json
import random

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from pheromone.cli import app
from pheromone.contracts.streams import Keys
from pheromone.services.settings import StoreLocation
from pheromone.services.store.location import open_backend
from pheromone.simulate import SimJob
from tests.services import helpers as h
from tests.services.conftest import StartRuntime
from tests.support import OpenClient, store_cli, store_execute


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both store backends."""
    param: str = request.param
    return param


async def mixed_workload(start_runtime: StartRuntime, open_client: OpenClient, db: StoreLocation, prefix: str,
                         redis: aioredis.Redis) -> int:
    """Four jobs in two workspaces emit every family through the services; returns the ledger's size."""
    runtime = await start_runtime()
    rng = random.Random(11)
    sims = [SimJob(f"ws-{i % 2}", f"job-{i}", random.Random(rng.random())) for i in range(4)]
    clients = [await open_client(s.job, workspace=s.workspace) for s in sims]
    emitted = [c.emit(r) for s, c in zip(sims, clients, strict=True) for r in h.mixed_records(s, 400)]
    # Some the store refuses (a duplicate cycle, an outcome of no escalation) must not shape the rebuild.
    emitted_refused = [clients[0].emit(h.evolution(cycle=5_000)), clients[0].emit(h.evolution(cycle=5_000)),
                       clients[2].emit(h.outcome("esc-nowhere"))]
    await asyncio.gather(*(c.flush() for c in clients))
    await h.eventually(lambda: h.ledger_count(db) >= len(emitted) + 1, what="workload stored")
    for stream in (Keys(prefix).ingest, Keys(prefix).ratelimits, Keys(prefix).discoveries):
        await h.eventually(lambda s=stream: h.group_caught_up(redis, s), what=f"{stream} consumed")
    assert len(await h.dead_letters(redis, prefix)) == 2
    assert set(h.ledger_ids(db)) == set(emitted) | {emitted_refused[0]}
    await runtime.stop()
    return h.ledger_count(db)


async def test_rebuild_reproduces_every_projection(
    start_runtime: StartRuntime, open_client: OpenClient, db: StoreLocation, prefix: str, redis: aioredis.Redis
) -> None:
    stored = await mixed_workload(start_runtime, open_client, db, prefix, redis)
    async with open_backend(db) as store:
        before = await store.checksum()
        counts = await store.counts()
        assert await store.rebuild() == stored
        assert await store.checksum() == before
        assert await store.counts() == counts
        assert counts["executions"] > 0 and counts["pattern_applications"] > 0
        # learning sessions' projections too (tests/services/helpers.session_records)
        assert counts["session_state"] == counts["playbooks"] == 2 and counts["edit_transitions"] == 10
        assert counts["guidance"] == 2 and counts["session_edits"] == 6

        # Damage the projections behind the store's back: the checksum sees it and a rebuild repairs it.
        store_execute(db, "DELETE FROM patterns WHERE id = (SELECT MIN(id) FROM patterns)")
        store_execute(db, "DELETE FROM executions WHERE id = (SELECT MAX(id) FROM executions)")
        store_execute(db, "UPDATE escalation_decisions SET outcome_after_action = NULL")
        damaged = await store.checksum()
        assert damaged != before
        assert await store.rebuild() == stored
        assert await store.checksum() == before
        assert await store.counts() == counts


async def test_rebuild_command_reports_identical_projections(
    start_runtime: StartRuntime, open_client: OpenClient, db: StoreLocation, prefix: str, redis: aioredis.Redis
) -> None:
    stored = await mixed_workload(start_runtime, open_client, db, prefix, redis)
    async with open_backend(db) as store:
        expected = await store.checksum()

    args, env = store_cli(db)
    result = await asyncio.to_thread(CliRunner().invoke, app, ["rebuild", "--json", *args], env=env)
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    report = json.loads(result.stdout)
    assert report == {"replayed": stored, "checksum_before": expected, "checksum_after": expected,
                      "identical": True}

    store_execute(db, "DELETE FROM pattern_applications WHERE event_id IN "
                      "(SELECT event_id FROM pattern_applications ORDER BY event_id LIMIT 3)")
    result = await asyncio.to_thread(CliRunner().invoke, app, ["rebuild", "--json", *args], env=env)
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    repaired = json.loads(result.stdout)
    assert repaired["checksum_before"] != expected  # it saw the damage ...
    assert repaired["checksum_after"] == expected  # ... and the rebuild undid it
    assert repaired["identical"] is False and repaired["replayed"] == stored
