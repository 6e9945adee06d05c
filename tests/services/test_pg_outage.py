"""The store on PostgreSQL, and PostgreSQL goes away: SIGKILLed under a running store service, its entries stay
pending (never dead-lettered, whatever their delivery count), the query service answers with a one-line
error, and once the server is back every event is stored exactly once, without restarting a service."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from pheromone.contracts import EventQuery, pattern_id
from pheromone.contracts.streams import Keys
from pheromone.errors import PheromoneError
from pheromone.services.store.embedded_pg import EmbeddedPostgres
from tests.services import helpers as h
from tests.services.conftest import StartRuntime
from tests.support import OpenClient

NAME = "wait for the database"


@pytest.mark.timeout(120)
async def test_store_and_queries_ride_out_a_postgresql_crash(
    private_pg: EmbeddedPostgres, start_runtime: StartRuntime, open_client: OpenClient, prefix: str,
    redis: aioredis.Redis,
) -> None:
    db = private_pg.create_database("outage")
    max_deliveries = 2
    await start_runtime(store_url=db, max_deliveries=max_deliveries)
    ingest = Keys(prefix).ingest
    client = await open_client("job-pg")
    before = [client.emit(h.observed(NAME))] + [client.emit(h.execution()) for _ in range(40)]
    await client.flush()
    await h.eventually(lambda: h.ledger_count(db) == len(before), what="events before the crash")

    private_pg.kill()  # the postmaster and every backend, as a crash of the database host would
    during = [client.emit(h.applied(NAME, success=True)) for _ in range(3)]
    during += [client.emit(h.execution()) for _ in range(20)]
    await client.flush()

    async def redelivered() -> bool:
        rows = await redis.xpending_range(ingest, "store", min="-", max="+", count=100)
        return max((int(r["times_delivered"]) for r in rows), default=0) >= max_deliveries + 2

    await h.eventually(redelivered, timeout=30, what="entries redelivered past max_deliveries while down")
    assert await h.pending(redis, ingest) == len(during)
    assert await h.dead_letters(redis, prefix) == []
    with pytest.raises(PheromoneError, match="store") as refused:  # a query gets the store's one-line error
        await client.events(EventQuery(limit=5), timeout=10)
    assert "\n" not in str(refused.value) and "Traceback" not in str(refused.value)

    private_pg.start()  # same port, same data: the services reconnect on their own
    after = [client.emit(h.execution()) for _ in range(20)]
    await client.flush()
    everything = before + during + after
    await h.eventually(lambda: set(h.ledger_ids(db)) == set(everything), timeout=60, what="every event stored")
    await h.eventually(lambda: h.group_caught_up(redis, ingest), what="nothing pending")
    assert h.ledger_count(db) == len(everything)
    assert h.query(db, "SELECT led_to_success_count FROM patterns WHERE id = ?",
                   pattern_id("retry_pattern", NAME)) == [(3,)]
    assert await h.dead_letters(redis, prefix) == []
    assert len(await client.events(EventQuery(limit=500), timeout=10)) == len(everything)
