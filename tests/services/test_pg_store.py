"""The PostgreSQL writer (`services.store.pg.store.PgStore`) against a real PostgreSQL (tests/conftest.py's
fixtures): the same projections as SQLite's `Store` for the same events (equal checksums, before and after a
rebuild), exactly-once, refusals alone, writers racing, migrations racing, and a server killed mid-batch."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import random
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pheromone.contracts import Envelope, PatternObserved
from pheromone.services.errors import StoreBusyError, StoreError
from pheromone.services.store import projections as sqlite_projections
from pheromone.services.store.db import Store
from pheromone.services.store.embedded_pg import EmbeddedPostgres
from pheromone.services.store.pg.conn import PgConn, translate
from pheromone.services.store.pg.schema import PG_MIGRATIONS, VERSION_TABLE, migrate, table_info
from pheromone.services.store.pg.store import PgStore
from pheromone.services.store.schema import PROJECTION_TABLES
from pheromone.simulate import SimJob
from tests.services import helpers as h

Batch = list[tuple[Envelope, bytes]]


def workload(n: int = 300, seed: int = 5) -> Batch:
    """Every family through a legal lifecycle (tests/services/helpers.mixed_records: sheets, services' records,
    sessions), from four jobs in two workspaces, plus events the store refuses and a tag PostgreSQL and
    SQLite must merge alike."""
    rng = random.Random(seed)
    sims = [SimJob(f"ws-{i % 2}", f"job-{i}", random.Random(rng.random())) for i in range(4)]
    per_job = [[h.envelope(r, workspace=s.workspace, job=s.job) for r in h.mixed_records(s, n)] for s in sims]
    # Producers interleave, each in its own order (sessions and lifecycles need it).
    envs = [e for step in itertools.zip_longest(*per_job) for e in step if e is not None]
    odd_tags = PatternObserved(pattern_type="retry_pattern", pattern_name="back off", description="x",
                               context_tags=["z", "é", "a\nb", 'q"', "a/b"])
    envs += [
        h.envelope(h.evolution(cycle=9_000)), h.envelope(h.evolution(cycle=9_000)),  # the second is refused
        h.envelope(h.outcome("esc-nowhere")),  # refused, retryable
        h.envelope(odd_tags), h.envelope(odd_tags.model_copy(update={"context_tags": ["b", "é"]})),
    ]
    return [(e, e.model_dump_json().encode()) for e in envs]


async def apply_all(store: Any, events: Batch, size: int = 250) -> list[Any]:
    return [await store.apply(events[i : i + size]) for i in range(0, len(events), size)]


async def test_same_events_same_checksum_as_sqlite_and_after_rebuild(pg_url: str, tmp_path: Path) -> None:
    events = workload()
    async with Store(tmp_path / "s.db") as sqlite, PgStore(pg_url) as pg:
        lite = await apply_all(sqlite, events)
        post = await apply_all(pg, events)
        assert [(r.inserted, r.duplicates, [(x.index, x.retry) for x in r.rejected]) for r in lite] == [
            (r.inserted, r.duplicates, [(x.index, x.retry) for x in r.rejected]) for r in post
        ]
        assert sum(len(r.rejected) for r in post) == 2
        counts = await pg.counts()
        assert counts == await sqlite.counts()
        assert all(counts[t] > 0 for t in ("executions", "pattern_applications", "session_edits", "guidance"))
        expected = await sqlite.checksum()
        assert await pg.checksum() == expected
        assert await pg.rebuild() == counts["ledger"]
        assert await pg.checksum() == expected


def test_checksum_order_is_the_primary_key_order() -> None:
    """PgStore orders each table by all its columns; SQLite's `ORDER BY 1` reads in primary key order: the two
    agree because every projection table's key is its leading columns."""
    for table in PROJECTION_TABLES:
        columns, key, _ = table_info()[table]
        assert columns[: len(key)] == key, table


async def test_duplicates_are_applied_once(pg_url: str) -> None:
    events = workload(40)[:60]
    async with PgStore(pg_url) as pg:
        first = await pg.apply(events + events[:5])  # a redelivery inside the batch too
        assert len(first.inserted) == 60 and first.duplicates == [e.event_id for e, _ in events[:5]]
        before = await pg.checksum()
        again = await pg.apply(events)
        assert again.inserted == [] and again.duplicates == [e.event_id for e, _ in events]
        assert await pg.checksum() == before
        assert (await pg.counts())["ledger"] == 60


async def test_refusals_are_alone(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    mine = h.envelope(h.execution(id="exec-shared"), workspace="ws-a")
    theirs = h.envelope(h.execution(id="exec-shared"), workspace="ws-b")
    poison = h.envelope(h.execution(id="exec-poison"))
    nul = h.envelope(h.execution(id="exec-nul", model="bad\x00model"))  # PostgreSQL text holds no NUL
    fine = [h.envelope(h.execution(id=f"exec-{i}")) for i in range(5)]
    real = sqlite_projections.execution

    def projection(conn: Any, env: Envelope, seq: int, ctx: Any) -> None:
        if env.event_id == poison.event_id:
            raise RuntimeError("a projection's bug")
        real(conn, env, seq, ctx)

    monkeypatch.setitem(sqlite_projections.PROJECTIONS, "execution", projection)
    batch = [mine, fine[0], theirs, fine[1], poison, fine[2], nul, fine[3], fine[4]]
    async with PgStore(pg_url) as pg:
        result = await pg.apply([(e, e.model_dump_json()) for e in batch])
        assert [r.index for r in result.rejected] == [2, 4, 6]
        assert "belongs to another workspace" in result.rejected[0].reason
        assert "a projection's bug" in result.rejected[1].reason
        assert result.inserted == [e.event_id for e in (mine, *fine)]
        with psycopg.connect(pg_url) as conn:
            seqs = [r[0] for r in conn.execute("SELECT seq FROM ledger ORDER BY seq")]
            assert seqs == list(range(1, 7))
            assert conn.execute("SELECT workspace FROM executions WHERE id = 'exec-shared'").fetchall() == [("ws-a",)]
            assert conn.execute("SELECT COUNT(*) FROM executions").fetchone() == (6,)


async def test_two_writers_keep_seq_unique_and_gapless(pg_url: str) -> None:
    events = workload(120)
    halves = [events[0::2], events[1::2]]
    async with PgStore(pg_url) as a, PgStore(pg_url) as b:
        results = await asyncio.gather(apply_all(a, halves[0], 40), apply_all(b, halves[1], 40))
        stored = sum(len(r.inserted) for rs in results for r in rs)
        with psycopg.connect(pg_url) as conn:
            seqs = [r[0] for r in conn.execute("SELECT seq FROM ledger ORDER BY seq")]
        assert seqs == list(range(1, stored + 1))
        racing = await a.checksum()
        # The projections equal those of one writer applying the ledger in its order.
        assert await b.rebuild() == stored
        assert await a.checksum() == racing


def _migrate(url: str) -> None:
    conn = PgConn.connect(url)
    try:
        migrate(conn)
    finally:
        conn.close()


def test_racing_migrations_apply_once(pg_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_migrate, args=(pg_url,)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    with psycopg.connect(pg_url) as conn:
        assert conn.execute(f"SELECT version FROM {VERSION_TABLE}").fetchall() == [(len(PG_MIGRATIONS),)]


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    async with PgStore(pg_url):
        pass
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"UPDATE {VERSION_TABLE} SET version = 99")
    store = PgStore(pg_url)
    with pytest.raises(StoreError, match="schema version 99 is newer") as refused:
        await store.open()
    assert "\n" not in str(refused.value)
    await store.close()


async def test_server_killed_mid_batch(private_pg: EmbeddedPostgres, monkeypatch: pytest.MonkeyPatch) -> None:
    url = private_pg.create_database("killed")
    first = [h.envelope(h.execution(id=f"exec-a{i}")) for i in range(10)]
    second = [h.envelope(h.execution(id=f"exec-b{i}")) for i in range(50)]
    real = sqlite_projections.execution

    def projection(conn: Any, env: Envelope, seq: int, ctx: Any) -> None:
        if env.event_id == second[25].event_id:
            private_pg.kill()  # from the writer thread, between two statements of the batch
        real(conn, env, seq, ctx)

    async with PgStore(url) as pg:
        await pg.apply([(e, e.model_dump_json()) for e in first])
        monkeypatch.setitem(sqlite_projections.PROJECTIONS, "execution", projection)
        with pytest.raises(StoreBusyError):
            await pg.apply([(e, e.model_dump_json()) for e in second])
        monkeypatch.setitem(sqlite_projections.PROJECTIONS, "execution", real)
        with pytest.raises(StoreBusyError):  # still down: retryable, not refused
            await pg.apply([(e, e.model_dump_json()) for e in second])
        private_pg.start()
        with psycopg.connect(url) as conn:  # nothing of the killed batch is visible
            assert conn.execute("SELECT COUNT(*) FROM ledger").fetchone() == (10,)
            assert conn.execute("SELECT COUNT(*) FROM executions").fetchone() == (10,)
        result = await pg.apply([(e, e.model_dump_json()) for e in second])  # reconnects
        assert len(result.inserted) == 50
        assert (await pg.counts())["ledger"] == 60


def test_translate_keeps_quotes_and_casts() -> None:
    assert translate("SELECT '?:x%' || ?, y::text FROM t WHERE a = ?") == (
        "SELECT '?:x%%' || %s, y::text FROM t WHERE a = %s"
    )
    assert translate("UPDATE t SET a = :a WHERE b = :b AND c IS NOT :a") == (
        "UPDATE t SET a = %(a)s WHERE b = %(b)s AND c IS DISTINCT FROM %(a)s"
    )
    assert translate("INSERT OR IGNORE INTO pattern_tags VALUES (?, ?)") == (
        "INSERT INTO pattern_tags VALUES (%s, %s) ON CONFLICT DO NOTHING"
    )
    with pytest.raises(StoreError):
        translate("SELECT ? WHERE x = :x")
