"""`pheromone status`: the numbers it shows are the ones the conditions made (known lag, pending, dead letters,
ledger, spool backlog), its JSON parses, and it never shows a password. Real server, real store file."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from pheromone.contracts import Envelope, ExecutionRecord
from pheromone.contracts.streams import FIELD, GROUP_STORE, Keys
from pheromone.plumbing.embedded import EmbeddedServer
from pheromone.spool import Spool
from tests.ops.conftest import Cli, StartRuntime
from tests.support import eventually


def execution(n: int) -> Envelope:
    done = datetime.now(UTC)
    return Envelope(workspace="ws-ops", job="job-ops", payload=ExecutionRecord(
        workspace_hash="ws-ops", job_hash="job-ops", sheet_num=n, started_at=done - timedelta(seconds=3),
        completed_at=done, duration_seconds=3.0, status="completed", retry_count=0, success_without_retry=True,
        validation_pass_rate=1.0, confidence_score=0.9, model="claude-sonnet",
    ))


async def xadd(r: aioredis.Redis, stream: str, values: list[str | bytes]) -> list[bytes]:
    async with r.pipeline(transaction=False) as pipe:
        for value in values:
            pipe.xadd(stream, {FIELD: value})
        return list(await pipe.execute())


def ledger_count(db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])


def group(report: dict[str, Any], stream: str, name: str) -> dict[str, Any]:
    [row] = [g for g in report["groups"] if g["stream"] == stream and g["group"] == name]
    return row


def stream(report: dict[str, Any], name: str) -> dict[str, Any]:
    [row] = [s for s in report["streams"] if s["name"] == name]
    return row


async def no_blocked_reader(redis: aioredis.Redis) -> bool:
    clients = await redis.client_list()
    return not any(c.get("cmd") == "xreadgroup" and "b" in c.get("flags", "") for c in clients)


async def test_status_reports_known_lag_pending_dead_letters_store_and_spool(
    start_runtime: StartRuntime, cli: Cli, redis: aioredis.Redis, prefix: str, tmp_path: Path
) -> None:
    keys, db = Keys(prefix), tmp_path / "store.db"
    # 1. The store applies three events and dead-letters one poison entry, then stops.
    runtime = await start_runtime(["store"])
    first = [execution(i) for i in range(3)]
    await xadd(redis, keys.ingest, [b"\xff not json", *(e.model_dump_json() for e in first)])
    await eventually(lambda: ledger_count(db) == 3, what="three events in the ledger")
    await eventually(lambda: redis.xlen(keys.dead), what="one dead letter")
    await runtime.stop()
    # The server drops a closed reader's blocked XREADGROUP when it reads the close; an entry added before
    # that would still be handed to the stopped consumer, so wait until no reader of the group is blocked.
    await eventually(lambda: no_blocked_reader(redis), what="the stopped store's reads released")
    # 2. With the store stopped, seven more arrive; a consumer reads two of them and never acks.
    await xadd(redis, keys.ingest, [execution(10 + i).model_dump_json() for i in range(7)])
    read = await redis.xreadgroup(GROUP_STORE, "stuck-consumer", {keys.ingest: ">"}, count=2)
    assert len(read[0][1]) == 2
    # 3. A local client spooled four events and has sent one of them.
    records = [f"{keys.ingest}\t{execution(20 + i).model_dump_json()}".encode() for i in range(4)]
    with Spool(tmp_path / "spool" / "job-a") as spool:
        spool.append(records)
        _, cursor = spool.read_batch(1)
        spool.commit(cursor)

    run = await cli("status", "--json")
    assert run.code == 0, run
    report = json.loads(run.out)
    assert report["redis"]["reachable"] is True and report["prefix"] == prefix
    assert stream(report, "ingest")["length"] == 1 + 3 + 7
    assert stream(report, "ingest")["oldest_age_s"] >= stream(report, "ingest")["newest_age_s"] >= 0
    assert stream(report, "ratelimits")["length"] == 0 and stream(report, "ratelimits")["oldest_age_s"] is None
    # One consumer: the stuck one. The store stopped cleanly and deleted its own (it held nothing).
    assert group(report, "ingest", "store") == {"stream": "ingest", "group": "store", "consumers": 1,
                                                "lag": 5, "pending": 2}
    assert group(report, "ratelimits", "store")["lag"] == 0
    assert report["dead_letters"] == 1 and stream(report, "dead")["length"] == 1
    assert report["services"] == []  # the store stopped cleanly and withdrew its heartbeat
    store = report["store"]
    assert store["exists"] and store["ledger"] == 3 and store["bytes"] > 0 and store["wal_bytes"] >= 0
    assert store["last_event"]["event_id"] == first[-1].event_id and store["last_event"]["kind"] == "execution"
    assert report["spool"]["events"] == 3 and report["spool"]["files"] == 1
    assert report["spool"]["bytes"] == sum(len(r) + 1 for r in records[1:])

    table = await cli("status")
    assert table.code == 0, table
    assert "dead letters: 1" in table.out and "ledger 3 events" in table.out
    assert "3 events" in table.out.split("spool", 1)[1]


async def test_status_lists_live_services_with_host_pid_and_beat_age(
    start_runtime: StartRuntime, cli: Cli, prefix: str
) -> None:
    import os

    runtime = await start_runtime(["store", "query"], heartbeat_ttl_s=5.0)
    await eventually(lambda: runtime.writing, what="the store writing")
    run = await cli("status", "--json")
    assert run.code == 0, run
    report = json.loads(run.out)
    services = {s["service"]: s for s in report["services"]}
    assert set(services) == {"store", "query"}
    for beat in services.values():
        assert beat["pid"] == os.getpid() and beat["host"] == os.uname().nodename
        assert 0 <= beat["beat_age_s"] <= 5.0 and beat["started_at"]
    assert report["store_writer"] == f"store-{os.uname().nodename}-{os.getpid()}"


async def test_status_json_never_shows_the_password(private_server: EmbeddedServer, cli: Cli) -> None:
    secret = "s3cret-Passw0rd"
    admin = aioredis.Redis.from_url(private_server.url)
    await admin.config_set("requirepass", secret)
    await admin.aclose()
    url = private_server.url.replace("redis://", f"redis://:{secret}@")

    run = await cli("status", "--json", env={"PHEROMONE_REDIS_URL": url})
    assert run.code == 0, run
    report = json.loads(run.out)
    assert report["redis"]["reachable"] and "***" in report["redis"]["url"]
    assert secret not in run.out + run.err

    table = await cli("status", env={"PHEROMONE_REDIS_URL": url})
    assert table.code == 0 and secret not in table.out + table.err, table

    wrong = await cli("status", "--json", env={"PHEROMONE_REDIS_URL": url.replace(secret, secret + "x")})
    assert wrong.code == 1, wrong
    assert json.loads(wrong.out)["redis"]["reachable"] is False
    assert secret not in wrong.out + wrong.err and "Traceback" not in wrong.out + wrong.err


async def test_status_without_redis_still_shows_the_local_spool(cli: Cli, tmp_path: Path, prefix: str) -> None:
    with Spool(tmp_path / "spool") as spool:
        spool.append([f"{{{prefix}}}:ingest\t{execution(i).model_dump_json()}".encode() for i in range(2)])
    run = await cli("status", "--json", env={"PHEROMONE_REDIS_URL": None})  # no URL, no embedded server
    assert run.code == 1, run
    report = json.loads(run.out)
    assert report["redis"]["reachable"] is False and "no embedded server" in report["redis"]["error"]
    assert report["spool"]["events"] == 2 and report["store"]["exists"] is False


async def test_status_shows_the_consolidators_triggers_and_its_ingest_group(
    start_runtime: StartRuntime, cli: Cli, redis: aioredis.Redis, prefix: str
) -> None:
    await start_runtime(("consolidator",))
    await redis.xadd(Keys(prefix).triggers, {FIELD: b"not an envelope"})  # acked and dead-lettered at once
    report = json.loads((await cli("status", "--json")).out)
    assert stream(report, "triggers")["length"] == 1
    await eventually(lambda: _consumed(cli), what="the consolidator to read its trigger")
    assert group(report, "ingest", "consolidator")["pending"] == 0


async def _consumed(cli: Cli) -> bool:
    report = json.loads((await cli("status", "--json")).out)
    row = group(report, "triggers", "consolidator")
    return bool(row["lag"] == 0 and row["pending"] == 0 and report["dead_letters"] >= 1)
