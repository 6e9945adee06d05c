"""The store's writer: one SQLite connection on its own thread, one explicit transaction per batch.

Why a plain `sqlite3` connection on a single-thread executor rather than aiosqlite here: a batch is hundreds
of small statements (ledger insert plus projections per event), and aiosqlite hops threads per statement.
Running the whole `BEGIN IMMEDIATE … COMMIT` as one function on the writer thread costs one hop per batch and
never blocks the event loop. Readers (`services.store.reader`) use aiosqlite.

`on_loop=True` (the store service alone in its process, `serve --only store`): the batch is applied on the
calling thread, the event loop's, where it was parsed, rather than handing its many fresh objects to
another thread, which costs CPU per event (bench/RESULTS.md). While another
process holds the write lock, the loop waits for it with `asyncio.sleep`, never in SQLite's busy handler
(`_begin_on_loop`); once it has the lock it runs the batch to its commit without an await, so nothing else
on the loop can run inside the transaction (or wait on it: a synchronous writer on the same loop would
otherwise block the very thread that must commit). The loop is busy for the batch's transaction (tens of
milliseconds), which delays nothing when the store is alone: the next read is already in flight. In a
process that hosts other services (queries, broadcasts) that delay would be theirs, so there the whole
transaction stays on the writer thread.

Exactly-once effect: the ledger's primary key is the producer's `event_id`. Each event is inserted with
`ON CONFLICT DO NOTHING` ; only when that insert added a row are its projections applied. A projection
that refuses the event (`EventRejected`) does so before writing, and the event's ledger row is removed. An
event whose projection fails (an exception tied to it, not to the store) is refused alone: the batch is
rolled back and applied again with a savepoint per event (`apply`).
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from pheromone.contracts import Envelope
from pheromone.plumbing.refusals import one_line
from pheromone.services.errors import EventRejected, Refused, StoreBusyError, StoreError
from pheromone.services.settings import LearningSettings
from pheromone.services.store.backend import ApplyResult
from pheromone.services.store.checkpoint import Checkpointer
from pheromone.services.store.codec import us
from pheromone.services.store.context import ProjectionContext
from pheromone.services.store.projections import PROJECTIONS, learning_settings, replay
from pheromone.services.store.schema import PROJECTION_TABLES, connect, migrate

INSERT_LEDGER = """
INSERT INTO ledger (event_id, seq, kind, workspace, job, correlation_id, occurred_us, stored_us,
                    schema_version, body)
VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT(event_id) DO NOTHING
"""
DELETE_LEDGER = "DELETE FROM ledger WHERE event_id = ?"
REPLAY_CHUNK = 5_000
T = TypeVar("T")


def map_sqlite_error(exc: sqlite3.Error) -> StoreError:
    """Operational errors concern the whole store (locked, read-only, full, I/O, a schema the code does not
    match): retryable, so entries wait for it instead of being dead-lettered one by one. Anything else (an
    integrity error, say) is tied to the events being applied."""
    if isinstance(exc, sqlite3.OperationalError | sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError
    ):
        return StoreBusyError(f"store unavailable: {exc}")
    return StoreError(f"store failed: {exc}")


def is_store_wide(exc: BaseException) -> bool:
    """True for a failure every event of a batch would meet alike (see `map_sqlite_error`)."""
    return isinstance(exc, sqlite3.Error) and isinstance(map_sqlite_error(exc), StoreBusyError)


def cannot_store(exc: Exception) -> str:
    """The reason an event the contracts accepted could not be stored, for its dead letter."""
    return one_line(f"cannot be stored: {type(exc).__name__}: {exc}")


class Store:
    """The ledger plus projections in one SQLite file: the SQLite `StoreBackend` (services.store.backend). Use
    `async with Store(path) as store:`.

    `learning`: the rules' settings (`Settings.learning`), recorded in the store when given; when None, the
    store's recorded settings are used (so `rebuild` derives with what the writer used), else the defaults.
    """

    def __init__(self, path: Path | str, *, learning: LearningSettings | None = None, on_loop: bool = False) -> None:
        self.path = Path(path)
        self._learning = learning
        self.on_loop = on_loop
        self._ctx = ProjectionContext(learning or LearningSettings())
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pheromone-store")
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: Checkpointer | None = None

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        await self._call(self._open_sync)

    async def close(self) -> None:
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.close)
            self._checkpointer = None
        if self._conn is not None:
            await self._call(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    async def apply(self, events: Sequence[tuple[Envelope, bytes | str]]) -> ApplyResult:
        """Append a batch to the ledger and project the new events, in one transaction.

        If an event fails in a way tied to it (a value SQLite cannot bind, a projection's bug), the batch is
        rolled back and applied again with a savepoint per event (`_project_isolated`): that event alone is
        refused, at once, and the others are committed now, not after the retrier's idle time. The first
        pass has no savepoint (a savepoint copies every page the batch changes). A store-wide failure (locked,
        full, read-only) fails the whole batch: every event would fail alike.
        """
        if not self.on_loop:
            return await self._call(self._apply_sync, events)
        cp = self._checkpointer
        if cp is not None and cp.must_wait():
            await asyncio.to_thread(cp.wait_idle)  # see services.store.checkpoint: so the WAL starts over
        try:
            await self._begin_on_loop()
            # From BEGIN to COMMIT without an await: nothing else on this loop runs inside the transaction,
            # so the service's subscribers (one per stream) take turns batch by batch.
            try:
                return self._apply_locked(events)
            except Exception as exc:
                if is_store_wide(exc):
                    raise
            await self._begin_on_loop()
            return self._apply_locked(events, isolated=True)
        except sqlite3.Error as exc:
            raise map_sqlite_error(exc) from exc

    async def _begin_on_loop(self) -> None:
        """`BEGIN IMMEDIATE` on the loop's thread without blocking it: while another connection holds the write
        lock, wait with `asyncio.sleep` (1 ms doubling to 50 ms) up to the connection's busy timeout, instead
        of in SQLite's busy handler, which would stop the loop. Cancelled while waiting, it holds nothing."""
        conn = self.conn
        timeout_ms = conn.execute("PRAGMA busy_timeout").fetchone()[0]
        deadline = time.monotonic() + timeout_ms / 1000
        pause = 0.001
        conn.execute("PRAGMA busy_timeout=0")
        try:
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() >= deadline:
                        raise
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(timeout_ms)}")

    async def rebuild(self) -> int:
        """Drop every projection and replay the ledger in order; returns the number of events replayed."""
        return await self._call(self._rebuild_sync)

    async def checksum(self) -> str:
        """A digest over every projection table's rows in key order: equal state, equal digest."""
        return await self._call(self._checksum_sync)

    async def counts(self) -> dict[str, int]:
        return await self._call(self._counts_sync)

    # -- writer thread ---------------------------------------------------------------------------------

    async def _call(self, fn: Callable[..., T], *args: object) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as exc:
            raise map_sqlite_error(exc) from exc

    def _open_sync(self) -> None:
        self._conn = connect(str(self.path))
        migrate(self._conn)
        # The writer's commits never checkpoint; a thread of its own does (services.store.checkpoint).
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = Checkpointer(self.path)
        self._checkpointer.committed()  # the schema, written by migrate()
        self._ctx = ProjectionContext(learning_settings(self._conn, self._learning, us_now()))

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("store is not open")
        return self._conn

    def _apply_sync(self, events: Sequence[tuple[Envelope, bytes | str]]) -> ApplyResult:
        """`apply` on the writer thread."""
        if self._checkpointer is not None and self._checkpointer.must_wait():
            self._checkpointer.wait_idle()  # see services.store.checkpoint: so the WAL starts over
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            return self._apply_locked(events)
        except Exception as exc:
            if is_store_wide(exc):
                raise
        self.conn.execute("BEGIN IMMEDIATE")
        return self._apply_locked(events, isolated=True)

    def _apply_locked(self, events: Sequence[tuple[Envelope, bytes | str]], isolated: bool = False) -> ApplyResult:
        """The batch, in the transaction its caller began: committed, or rolled back if anything fails."""
        conn = self.conn
        self._ctx.begin()
        try:
            self._ctx.owners.load(conn, (env for env, _ in events), postgres=False)
            result = self._project_isolated(events) if isolated else self._project(events)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._committed()
        return result

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed()

    def _project(self, events: Sequence[tuple[Envelope, bytes | str]]) -> ApplyResult:
        result = self._project_events(events)
        self._ctx.finish(self.conn)  # per-batch derived values (projections.ProjectionContext)
        return result

    def _project_events(self, events: Sequence[tuple[Envelope, bytes | str]], first: int = 0) -> ApplyResult:
        """Ledger rows and projections of `events` (the batch's, from index `first`), without `finish`."""
        conn = self.conn
        result = ApplyResult()
        seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger").fetchone()[0]
        now = us_now()
        # One cursor for the batch's ledger inserts (`conn.execute` makes and registers a cursor per
        # statement) and the envelope's fields read once.
        cur, projections, ctx = conn.cursor(), PROJECTIONS, self._ctx
        for index, (env, raw) in enumerate(events, first):
            event_id, kind = env.event_id, env.kind
            cur.execute(
                INSERT_LEDGER,
                (
                    event_id, seq + 1, kind, env.workspace, env.job, env.correlation_id,
                    us(env.occurred_at), now, env.schema_version,
                    raw.decode() if isinstance(raw, bytes) else raw,
                ),
            )
            if cur.rowcount == 0:
                result.duplicates.append(event_id)
                continue
            try:
                projections[kind](conn, env, seq + 1, ctx)
            except EventRejected as exc:
                # Projections refuse before they write (see projections.py), so removing the ledger row
                # undoes the event entirely; cheaper than a savepoint around every event.
                conn.execute(DELETE_LEDGER, (event_id,))
                result.rejected.append(Refused(index, str(exc), exc.retryable))
                continue
            seq += 1
            result.inserted.append(event_id)
        return result

    def _project_isolated(self, events: Sequence[tuple[Envelope, bytes | str]]) -> ApplyResult:
        """The batch again, each event inside its own savepoint; an event that fails is refused alone.

        The batch's in-memory pattern state (`services.store.batch`) is not covered by a savepoint, so it is
        written back after each event (`flush`: the same writes, sooner; the batch reloads what it needs)
        and, when an event fails, what that event left in it is dropped, so the patterns settled at the end
        are those of the events kept.
        """
        conn = self.conn
        result = ApplyResult()
        batch = self._ctx.batch
        for index, event in enumerate(events):
            touched = set(batch.touched)
            conn.execute("SAVEPOINT event")
            try:
                one = self._project_events([event], index)
                batch.flush(conn)
            except Exception as exc:
                if is_store_wide(exc):
                    raise
                conn.execute("ROLLBACK TO event")
                batch.clear()
                self._ctx.owners.clear()  # it may hold what the rolled-back event wrote
                batch.touched |= touched
                result.rejected.append(Refused(index, cannot_store(exc)))
            else:
                result.inserted += one.inserted
                result.duplicates += one.duplicates
                result.rejected += one.rejected
            conn.execute("RELEASE event")
        self._ctx.finish(conn)
        return result

    def _rebuild_sync(self) -> int:
        conn = self.conn
        replayed = 0
        conn.execute("BEGIN IMMEDIATE")
        self._ctx.begin()
        try:
            for table in PROJECTION_TABLES:
                conn.execute(f"DELETE FROM {table}")
            last = 0
            while True:
                rows = conn.execute(
                    "SELECT seq, body FROM ledger WHERE seq > ? ORDER BY seq LIMIT ?", (last, REPLAY_CHUNK)
                ).fetchall()
                if not rows:
                    break
                replayed += replay(conn, rows, self._ctx, postgres=False)
                last = rows[-1][0]
            self._ctx.finish(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        self._committed()
        return replayed

    def _checksum_sync(self) -> str:
        digest = hashlib.sha256()
        for table in PROJECTION_TABLES:
            digest.update(table.encode())
            for row in self.conn.execute(f"SELECT * FROM {table} ORDER BY 1"):
                digest.update(repr(row).encode())
        return digest.hexdigest()

    def _counts_sync(self) -> dict[str, int]:
        return {
            table: self.conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in ("ledger", *PROJECTION_TABLES)
        }


def us_now() -> int:
    return time.time_ns() // 1_000


async def ensure_store(path: Path) -> None:
    """Make an empty, migrated store at `path` if there is none: a reader (query, entropy, consolidator) may
    start before the store service ever ran, and must find the tables it reads."""
    if not path.exists():  # noqa: ASYNC240 - one stat() at start
        async with Store(path):
            pass
