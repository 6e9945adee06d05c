"""pheromone on a real three-node Redis Cluster: the client and every service work, and the hash tag is what
makes their multi-key operations possible.

Each test's prefix hashes to a slot that the seed node (the one the URL names) does not serve, so every test
also proves that connections follow the MOVED reply to the right node (pheromone.plumbing.cluster).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import ClusterCrossSlotError
from typer.testing import CliRunner

from pheromone.cli import app
from pheromone.contracts import EventQuery
from pheromone.contracts.broadcast import BroadcastKind
from pheromone.contracts.streams import FIELD, GROUP_STORE, Keys, key_part
from pheromone.plumbing import connection
from pheromone.plumbing.limits import RECORD_LIMIT
from pheromone.services import transport
from pheromone.services.runtime import service_names
from tests.client.helpers import read_envelopes
from tests.cluster.nodes import LocalCluster, slot_of
from tests.services import helpers as h
from tests.support import OpenClient, runtimes, settings

ALL = service_names()


async def test_events_emitted_through_the_client_are_stored_exactly_once(
    cluster: LocalCluster, redis_url: str, prefix: str, tmp_path: Path, open_client: OpenClient,
    cluster_client: RedisCluster,
) -> None:
    db = tmp_path / "store.db"
    async with runtimes() as pool:
        await pool.start(settings(tmp_path, prefix), redis_url, ALL)
        client = await open_client()
        ids = [client.emit(h.execution()) for _ in range(200)]
        ids += [client.emit(h.observed("back off"))]
        ids += [client.emit(h.applied("back off", success=True)) for _ in range(5)]
        await client.flush()
        await h.eventually(lambda: h.ledger_count(db) == len(ids), what="every event stored")
        keys = Keys(prefix)
        # The entropy service counted the applications, the consolidator the executions per workspace/model.
        await h.eventually(lambda: _equals(cluster_client, keys.entropy("applications"), b"5"), what="entropy")
        windows = keys.sessions("cluster", "ws-t|claude-sonnet") + ":*"
        await h.eventually(lambda: _scan(cluster_client, windows), what="consolidator's failure-cluster window")
    assert sorted(h.ledger_ids(db)) == sorted(ids)
    assert h.query(db, "SELECT occurrence_count, led_to_success_count FROM patterns") == [(1, 5)]
    # Independently of pheromone's routing: the entries are in the cluster, on the node serving the slot.
    assert await cluster_client.xlen(keys.ingest) == len(ids)
    assert cluster.owner(slot_of(prefix)) is not cluster.nodes[0]
    assert await cluster_client.xlen(keys.dead) == 0


async def _equals(cluster_client: RedisCluster, key: str, value: bytes) -> bool:
    return bool(await cluster_client.get(key) == value)


async def _scan(cluster_client: RedisCluster, pattern: str) -> list[bytes]:
    return [key async for key in cluster_client.scan_iter(match=pattern)]


async def test_rate_limit_round_trip(
    redis_url: str, prefix: str, tmp_path: Path, open_client: OpenClient, cluster_client: RedisCluster
) -> None:
    """The coordinator's 5-key script (live keys, index, once-marker, broadcast) and the client's read of it;
    the broadcaster's 2-key publish-once script for a discovery; both reach a subscriber."""
    async with runtimes() as pool:
        await pool.start(settings(tmp_path, prefix), redis_url, ("store", "coordinator", "broadcaster"))
        reporter, other = await open_client("reporter"), await open_client("other")
        async with other.subscribe(kinds=[BroadcastKind.RATE_LIMIT, BroadcastKind.DISCOVERY]) as notices:
            await notices.live(timeout=10)
            event_id = reporter.report_rate_limit("claude-sonnet", "429", 30)
            notice = await asyncio.wait_for(notices.get(), timeout=10)
            discovery_id = reporter.publish_discovery("retry_pattern", "back off", 0.9)
            discovery = await asyncio.wait_for(notices.get(), timeout=10)
        assert notice.id == event_id and discovery.id == discovery_id
        status = await other.rate_limit("claude-sonnet", "429")
        assert status.active and 25 < status.seconds_left <= 30
        assert [s.model for s in await other.rate_limits()] == ["claude-sonnet"]
        await h.eventually(lambda: h.count(tmp_path / "store.db", "ledger", "event_id = ?", event_id) == 1,
                           what="report stored")
    assert await cluster_client.exists(Keys(prefix).rate_limit("claude-sonnet", "429")) == 1


def _cli(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}: {result.output}{result.exception!r}"
    return json.loads(result.stdout)


async def test_dead_letter_written_and_replayed(
    redis_url: str, prefix: str, tmp_path: Path, redis: aioredis.Redis
) -> None:
    """A poison entry is dead-lettered (ack and letter in one 2-key script); `pheromone dead replay` puts it
    back (XADD and XDEL on two streams in one MULTI/EXEC)."""
    keys = Keys(prefix)
    async with runtimes() as pool:
        await pool.start(settings(tmp_path, prefix), redis_url, ("store",))
        [poison] = await h.xadd_raw(redis, keys.ingest, [{FIELD: b"not json"}])
        [(dead_id, letter)] = await h.eventually(lambda: h.dead_letters(redis, prefix), what="dead letter")
        assert letter[b"stream"] == keys.ingest.encode() and letter[b"id"] == poison
        assert letter[b"f:e"] == b"not json"
        await h.eventually(lambda: h.group_caught_up(redis, keys.ingest, GROUP_STORE), what="poison acked")
        common = ("--redis-url", redis_url, "--prefix", prefix, "--data-dir", str(tmp_path))
        status = await asyncio.to_thread(_cli, "status", "--json", *common)
        assert status["dead_letters"] == 1  # `pheromone status` reads the cluster too
        done = await asyncio.to_thread(_cli, "dead", "replay", dead_id.decode(), "--json", *common)
        assert done == {"replayed": [dead_id.decode()]}
        # The replayed entry is poison still: it comes back as a new letter, and the old one is gone.
        await h.eventually(lambda: _one_new_letter(redis, prefix, dead_id), what="replayed entry dead again")


async def _one_new_letter(redis: aioredis.Redis, prefix: str, old: bytes) -> bool:
    ids = [i for i, _ in await h.dead_letters(redis, prefix)]
    return len(ids) == 1 and ids[0] != old


async def test_query_round_trip(
    redis_url: str, prefix: str, tmp_path: Path, open_client: OpenClient
) -> None:
    """A query request (RPUSH), the service's answer (reply key and its expiry in one MULTI/EXEC)."""
    async with runtimes() as pool:
        await pool.start(settings(tmp_path, prefix), redis_url, ("store", "query"))
        client = await open_client()
        ids = [client.emit(h.execution()) for _ in range(3)]
        await client.flush()
        await h.eventually(lambda: h.ledger_count(tmp_path / "store.db") == 3, what="stored")
        assert sorted(e.event_id for e in await client.events()) == sorted(ids)


async def test_connections_follow_the_slot_when_it_moves(
    cluster: LocalCluster, redis_url: str, prefix: str, open_client: OpenClient, redis: aioredis.Redis,
    cluster_client: RedisCluster,
) -> None:
    """After a failover or resharding the old node answers MOVED: the client's sender thread and its asyncio
    connections reconnect to the new owner and send again, and nothing is lost."""
    keys = Keys(prefix)
    client = await open_client()
    assert not (await client.rate_limit("m")).active  # the asyncio pool has learned the owner
    client.emit(h.execution())
    await client.flush()  # so has the sender
    slot = slot_of(prefix)
    await cluster_client.delete(keys.ingest)  # so that the new owner's stream holds only what follows
    target = next(n for n in cluster.nodes if n is not cluster.owner(slot))
    await asyncio.to_thread(cluster.move_slot, slot, target)

    ids = [client.emit(h.execution()) for _ in range(10)]
    await client.flush()
    client.report_rate_limit("m", "429", 30)  # the fast path runs the 5-key script on the asyncio pool
    await h.eventually(lambda: _limited(client), what="limit visible through the moved slot")
    await client.flush()
    with target.client() as direct:  # on the new owner, asked directly
        assert direct.xlen(keys.ingest) == 10
        assert direct.xlen(keys.ratelimits) == 1
    assert set(ids) <= {e.event_id for e in await read_envelopes(redis, keys.ingest)}


async def _limited(client: Any) -> bool:
    return bool((await client.rate_limit("m", "429")).active)


async def test_multi_key_operations_on_untagged_names_fail_with_crossslot(
    cluster: LocalCluster, prefix: str
) -> None:
    """What the hash tag buys: the same operations under the old `prefix:name` names span slots, and the
    cluster refuses them; under `Keys` they run."""
    model, code = "claude-sonnet", "429"
    old = [f"{prefix}:rl:{key_part(model)}:{key_part(code)}", f"{prefix}:rl:{key_part(model)}",
           f"{prefix}:rl-index", f"{prefix}:bc-once:x", f"{prefix}:broadcast"]
    assert len({key_slot(k.encode()) for k in old}) > 1
    keys = Keys(prefix)
    new = [keys.rate_limit(model, code), keys.rate_limit(model), keys.rate_limit_index, keys.broadcast_once("x"),
           keys.broadcast]
    args = [str(2**50), "{}", "{}", "rate_limit"]
    node = cluster.owner(key_slot(old[0].encode()))
    with node.client() as c:
        with pytest.raises(ClusterCrossSlotError):  # the server's CROSSSLOT reply
            c.eval(RECORD_LIMIT, len(old), *old, *args)
        with pytest.raises(ClusterCrossSlotError):  # the server's CROSSSLOT reply
            c.eval(transport.ACK_THEN_LETTER, 2, f"{prefix}:ingest", f"{prefix}:dead", "g", "0-1", "a", "b")
    with cluster.owner(slot_of(prefix)).client() as c:
        assert c.eval(RECORD_LIMIT, len(new), *new, *args) == 1 + 2 + 4
        assert c.eval(transport.ACK_THEN_LETTER, 2, keys.ingest, keys.dead, "g", "0-1", "a", "b") == 0


async def test_a_setup_error_is_one_line(redis_url: str) -> None:
    with pytest.raises(connection.ConnectionSetupError, match="cluster=true needs a host and port"):
        connection.client_options("unix:///tmp/x.sock?cluster=true")
    with pytest.raises(connection.ConnectionSetupError, match="cluster must be true or false"):
        connection.client_options(redis_url.replace("cluster=true", "cluster=maybe"))


async def test_services_carry_on_when_the_slot_moves_under_them(
    cluster: LocalCluster, redis_url: str, prefix: str, tmp_path: Path, open_client: OpenClient,
) -> None:
    """Resharding with the services running: their blocked reads and their writes are answered MOVED by the
    old owner, they reconnect to the new one with their groups and pending entries (moved with the keys), and
    every event is stored once."""
    db = tmp_path / "store.db"
    async with runtimes() as pool:
        await pool.start(settings(tmp_path, prefix), redis_url, ("store", "query", "coordinator"))
        client = await open_client()
        ids = [client.emit(h.execution()) for _ in range(50)]
        await client.flush()
        await h.eventually(lambda: h.ledger_count(db) == 50, what="first half stored")
        slot = slot_of(prefix)
        target = next(n for n in cluster.nodes if n is not cluster.owner(slot))
        await asyncio.to_thread(cluster.move_slot, slot, target)
        ids += [client.emit(h.execution()) for _ in range(50)]
        client.report_rate_limit("m", "429", 30)
        await client.flush()
        await h.eventually(lambda: h.ledger_count(db) == 101, what="second half stored")
        assert len(await client.events(EventQuery(limit=500))) == 101  # the query service answers too
    assert set(ids) < set(h.ledger_ids(db)) and len(h.ledger_ids(db)) == 101
    with target.client() as direct:
        assert direct.xlen(Keys(prefix).ingest) == 100 and direct.xlen(Keys(prefix).dead) == 0
