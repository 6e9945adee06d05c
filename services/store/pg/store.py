"""The PostgreSQL writer (`PgStore`): the same ledger, projections, rebuild and checksum as db.py's `Store`.

One synchronous psycopg connection on a single-thread executor, one transaction per batch, as on SQLite:
projections are synchronous Python (`services.store.projections`, run unchanged through `PgConn`), and a
batch costs one hop to the writer thread, never a block of the event loop.

Order and exactly-once: every batch first takes a transaction-level advisory lock (`WRITE_LOCK`), so writers
on several hosts serialise as SQLite's `BEGIN IMMEDIATE` makes them: a batch's `seq` continues the ledger's
`MAX(seq)`, unique and gapless in commit order. Under the lock, one query finds which of the batch's
event ids the ledger holds already (duplicates, reported and not projected); the new events' ledger rows are
written together once their projections accepted them, so a refused event (`EventRejected`) has no row to
remove.

Speed: a loopback round trip costs tens of microseconds, so the batch runs in psycopg's pipeline mode:
statements are sent without waiting for their results, and only a statement whose result is read (a
projection's SELECT or rowcount) waits, for everything sent before it. A batch costs a few round trips plus
one per read a projection makes, not one per statement.

Failures, as db.py: an event whose projection or row fails (a value PostgreSQL cannot store, a projection's
bug) is refused alone, by applying the batch again with a savepoint per event. A failure of the store itself
(connection lost, server shut down, lock or statement timeout, disk full) fails the batch with
`StoreBusyError`, retryable; the connection is dropped and the next call connects again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from pheromone.contracts import Envelope
from pheromone.plumbing.refusals import one_line
from pheromone.services.errors import EventRejected, Refused, StoreBusyError, StoreError
from pheromone.services.settings import LearningSettings
from pheromone.services.store.backend import ApplyResult
from pheromone.services.store.codec import us
from pheromone.services.store.context import ProjectionContext
from pheromone.services.store.db import cannot_store
from pheromone.services.store.pg.conn import PgConn
from pheromone.services.store.pg.schema import migrate, table_info
from pheromone.services.store.projections import PROJECTIONS, learning_settings, replay
from pheromone.services.store.schema import PROJECTION_TABLES

__all__ = ["WRITE_LOCK", "PgStore", "is_store_wide", "map_pg_error"]

WRITE_LOCK = 0x7068_6572_6F6D_0002
"""The advisory lock key every batch and rebuild holds until its commit (see the module docstring)."""
LOCK_TIMEOUT_MS = 30_000
"""How long a batch waits for another writer's lock before failing retryably: SQLite's busy timeout."""
CONNECT_TIMEOUT_S = 10

TAKE_LOCK = "SELECT pg_advisory_xact_lock(?)"
LAST_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM ledger"
KNOWN_IDS = "SELECT event_id FROM ledger WHERE event_id = ANY(?)"
INSERT_LEDGER = """
INSERT INTO ledger (event_id, seq, kind, workspace, job, correlation_id, occurred_us, stored_us,
                    schema_version, body)
VALUES (?,?,?,?,?,?,?,?,?,?)
"""
REPLAY = "SELECT seq, body FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?"
REPLAY_CHUNK = 5_000
T = TypeVar("T")
Events = Sequence[tuple[Envelope, bytes | str]]


def is_store_wide(exc: BaseException) -> bool:
    """True for a failure every event of a batch would meet alike: the connection (lost, closed), the server
    (shutting down, out of disk or memory), a lock or statement timeout, a serialization failure. psycopg
    files all of these under OperationalError (or InterfaceError for a closed connection). Not a statement
    the pipeline skipped because an earlier one failed: that earlier failure is the event's."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) and not isinstance(
        exc, pg_errors.PipelineAborted
    )


def map_pg_error(exc: psycopg.Error) -> StoreError:
    if is_store_wide(exc):
        return StoreBusyError(one_line(f"store unavailable: {exc}"))
    return StoreError(one_line(f"store failed: {exc}"))


class _Batch:
    """Where the batch stands: the ledger's last seq and the ids it holds (or this batch applied)."""

    __slots__ = ("known", "seq")

    def __init__(self, seq: int, known: set[str]) -> None:
        self.seq = seq
        self.known = known


class PgStore:
    """The ledger plus projections in a PostgreSQL database: the PostgreSQL `StoreBackend`. Use
    `async with PgStore(url) as store:`. `learning` as for db.py's `Store`."""

    def __init__(self, url: str, *, learning: LearningSettings | None = None) -> None:
        self.url = url
        self._learning = learning
        self._ctx = ProjectionContext(learning or LearningSettings())
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pheromone-pgstore")
        self._conn: PgConn | None = None

    async def __aenter__(self) -> PgStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        await self._call(self._open_sync)

    async def close(self) -> None:
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._drop)
        self._executor.shutdown(wait=True)

    async def apply(self, events: Events) -> ApplyResult:
        """Append a batch to the ledger and project the new events, in one transaction (see db.py's
        `Store.apply`: the same results for the same events)."""
        return await self._call(self._apply_sync, events)

    async def rebuild(self) -> int:
        """Drop every projection and replay the ledger in order; returns the number of events replayed."""
        return await self._call(self._rebuild_sync)

    async def checksum(self) -> str:
        """The digest db.py's `Store.checksum` gives for the same state: same tables, rows in key order, each
        row's repr as a tuple of Python ints, floats, strs and Nones."""
        return await self._call(self._checksum_sync)

    async def counts(self) -> dict[str, int]:
        return await self._call(self._counts_sync)

    # -- writer thread ---------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._guarded, fn, args)
        except psycopg.Error as exc:
            raise map_pg_error(exc) from exc

    def _guarded(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        try:
            return fn(*args)
        except psycopg.Error as exc:
            if is_store_wide(exc):
                self._drop()  # the next call connects again
            raise

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(psycopg.Error):
                self._conn.close()
            self._conn = None

    @property
    def conn(self) -> PgConn:
        if self._conn is None or self._conn.closed:
            self._drop()
            self._conn = PgConn.connect(
                self.url, application_name="pheromone-store", connect_timeout=CONNECT_TIMEOUT_S
            )
            self._conn.raw.execute(f"SET lock_timeout = {LOCK_TIMEOUT_MS}")
        return self._conn

    def _open_sync(self) -> None:
        conn = self.conn
        migrate(conn)
        self._ctx = ProjectionContext(learning_settings(conn, self._learning, us_now()))

    def _apply_sync(self, events: Events) -> ApplyResult:
        if not events:
            return ApplyResult()
        try:
            return self._apply_locked(events)
        except Exception as exc:
            if is_store_wide(exc):
                raise
        return self._apply_locked(events, isolated=True)

    def _apply_locked(self, events: Events, isolated: bool = False) -> ApplyResult:
        """The batch in one transaction, under the write lock: committed, or rolled back if anything fails."""
        conn = self.conn
        self._ctx.begin()
        try:
            with conn.pipeline():
                state = self._begin(conn, [env.event_id for env, _ in events])
                self._ctx.owners.load(conn, (env for env, _ in events), postgres=True)
                if isolated:
                    result = self._project_isolated(conn, events, state)
                else:
                    rows: list[tuple[Any, ...]] = []
                    result = self._project_events(conn, events, 0, state, rows)
                    self._ctx.finish(conn)
                    if rows:
                        conn.executemany(INSERT_LEDGER, rows)
                conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return result

    def _begin(self, conn: PgConn, ids: list[str]) -> _Batch:
        """Open the batch's transaction and take the write lock; the ledger's last seq and which of `ids` it
        holds, in one round trip."""
        conn.execute("BEGIN")
        conn.execute(TAKE_LOCK, (WRITE_LOCK,))
        last = conn.execute(LAST_SEQ)
        known = conn.execute(KNOWN_IDS, (ids,))
        return _Batch(last.fetchone()[0], {row[0] for row in known.fetchall()})

    def _rollback(self, conn: PgConn) -> None:
        if not conn.closed:
            with contextlib.suppress(psycopg.Error):
                conn.raw.execute("ROLLBACK")

    def _project_events(
        self, conn: PgConn, events: Events, first: int, state: _Batch, rows: list[tuple[Any, ...]] | None
    ) -> ApplyResult:
        """Projections of `events` (the batch's, from index `first`), without `finish`. The ledger rows of the
        events applied go to `rows` (written by the caller), or, when None, are written at once."""
        result = ApplyResult()
        now = us_now()
        projections, ctx, known = PROJECTIONS, self._ctx, state.known
        for index, (env, raw) in enumerate(events, first):
            event_id, kind = env.event_id, env.kind
            if event_id in known:
                result.duplicates.append(event_id)
                continue
            seq = state.seq + 1
            try:
                projections[kind](conn, env, seq, ctx)
            except EventRejected as exc:
                # Projections refuse before they write (see projections.py), and the event's ledger row is
                # not written yet: the event leaves nothing.
                result.rejected.append(Refused(index, str(exc), exc.retryable))
                continue
            row = (
                event_id, seq, kind, env.workspace, env.job, env.correlation_id, us(env.occurred_at), now,
                env.schema_version, raw.decode() if isinstance(raw, bytes) else raw,
            )
            if rows is None:
                conn.execute(INSERT_LEDGER, row)
            else:
                rows.append(row)
            state.seq = seq
            known.add(event_id)
            result.inserted.append(event_id)
        return result

    def _project_isolated(self, conn: PgConn, events: Events, state: _Batch) -> ApplyResult:
        """The batch again, each event inside its own savepoint, synced before it is released, so a failure
        is that event's; it is refused alone (the batch's in-memory pattern state as in db.py)."""
        result = ApplyResult()
        batch = self._ctx.batch
        for index, event in enumerate(events):
            touched, seq, known = set(batch.touched), state.seq, set(state.known)
            conn.execute("SAVEPOINT event")
            try:
                one = self._project_events(conn, [event], index, state, None)
                batch.flush(conn)
                conn.sync()
            except Exception as exc:
                if is_store_wide(exc):
                    raise
                conn.execute("ROLLBACK TO SAVEPOINT event")
                batch.clear()
                self._ctx.owners.clear()  # it may hold what the rolled-back event wrote
                batch.touched |= touched
                state.seq, state.known = seq, known
                result.rejected.append(Refused(index, cannot_store(exc)))
            else:
                result.inserted += one.inserted
                result.duplicates += one.duplicates
                result.rejected += one.rejected
            conn.execute("RELEASE SAVEPOINT event")
        self._ctx.finish(conn)
        return result

    def _rebuild_sync(self) -> int:
        conn = self.conn
        replayed = 0
        self._ctx.begin()
        try:
            with conn.pipeline():
                conn.execute("BEGIN")
                conn.execute(TAKE_LOCK, (WRITE_LOCK,))
                for table in PROJECTION_TABLES:
                    conn.execute(f"DELETE FROM {table}")
                last = 0
                while True:
                    rows = conn.execute(REPLAY, (last, REPLAY_CHUNK)).fetchall()
                    if not rows:
                        break
                    replayed += replay(conn, rows, self._ctx, postgres=True)
                    last = rows[-1][0]
                self._ctx.finish(conn)
                conn.execute("COMMIT")
        except BaseException:
            self._rollback(conn)
            raise
        return replayed

    def _checksum_sync(self) -> str:
        # SQLite's `ORDER BY 1` reads a table in its primary key's order, which every projection table starts
        # with: ordering by every column in turn gives that order here, and a total one.
        digest = hashlib.sha256()
        info = table_info()
        raw = self.conn.raw
        for table in PROJECTION_TABLES:
            digest.update(table.encode())
            order = ", ".join(str(i) for i in range(1, len(info[table][0]) + 1))
            for row in raw.execute(f"SELECT * FROM {table} ORDER BY {order}"):
                digest.update(repr(row).encode())
        return digest.hexdigest()

    def _counts_sync(self) -> dict[str, int]:
        raw = self.conn.raw
        counts: dict[str, int] = {}
        for table in ("ledger", *PROJECTION_TABLES):
            row = raw.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
            counts[table] = row[0] if row else 0
        return counts


def us_now() -> int:
    return time.time_ns() // 1_000
