"""The one way to read the store: `Reader`, a read-only aiosqlite connection that never blocks the event loop.

It implements `services.store.reads.StoreReads` over SQLite: the ledger reads are here (`LedgerReads`), the
learning model's in `learning_reads`, the learning sessions' in `session_reads`, the entropy service's in
`entropy`. Every query is one SQL constant with bound parameters; filters only ever add `?` placeholders. The
PostgreSQL reader (`services.store.pg.reader.PgReader`) runs the same mixins on its own `ReadConn`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Self

import aiosqlite

from pheromone.contracts import EventQuery
from pheromone.services.store.codec import us
from pheromone.services.store.entropy import EntropyReads
from pheromone.services.store.learning_reads import LearningReads
from pheromone.services.store.read_conn import ReadConn, SqliteReadConn, sqlite_read_error
from pheromone.services.store.session_reads import SessionReads

COUNTS = "SELECT kind, COUNT(*) FROM ledger GROUP BY kind ORDER BY kind"
LEDGER_COUNT = "SELECT COUNT(*) FROM ledger"
LAST_EVENT = "SELECT seq, event_id, kind, workspace, stored_us FROM ledger ORDER BY seq DESC LIMIT 1"
LEDGER_SINCE = "SELECT seq, event_id, kind FROM ledger WHERE seq > ? ORDER BY seq"
JOB_EVENT_COUNT = "SELECT COUNT(*) FROM ledger WHERE job NOT IN ({})"
PROBE = "PRAGMA schema_version"
BUSY_TIMEOUT = "PRAGMA busy_timeout=10000"


def probe(path: Path | str) -> None:
    """Open the file read-only and read its schema version, synchronously; raises sqlite3.Error when it is
    no SQLite database or cannot be opened. A path aiosqlite cannot open fails inside its worker thread,
    which then reports into an event loop `asyncio.run` may have closed: a command probes first instead."""
    conn = sqlite3.connect(_uri(Path(path)), uri=True)
    try:
        conn.execute(PROBE)
    finally:
        conn.close()


def _uri(path: Path) -> str:
    # as_uri() percent-encodes the path: a '#', '?' or '%' in it must not end the file name early.
    return f"{path.resolve().as_uri()}?mode=ro"


class LedgerReads:
    """The ledger's reads: events by filter, a cursor over the ledger, counts."""

    @property
    def db(self) -> ReadConn:
        raise NotImplementedError

    async def events(self, query: EventQuery) -> list[str]:
        """Envelope JSON of the newest `limit` matching events, returned oldest first."""
        where, params = _where(query)
        sql = f"SELECT body FROM (SELECT seq, body FROM ledger WHERE {where} ORDER BY seq DESC LIMIT ?) ORDER BY seq"
        async with self.db.execute(sql, [*params, query.limit]) as cur:
            return [row[0] for row in await cur.fetchall()]

    async def page(self, query: EventQuery, after: int) -> tuple[list[tuple[int, str]], bool]:
        """(seq, envelope JSON) of the oldest `limit` matching events stored after ledger position `after`, and
        whether more follow: a cursor over the whole ledger (`pheromone events --after`), stable while the
        store appends, since `seq` only grows."""
        where, params = _where(query)
        sql = f"SELECT seq, body FROM ledger WHERE {where} AND seq > ? ORDER BY seq LIMIT ?"
        async with self.db.execute(sql, [*params, after, query.limit + 1]) as cur:
            rows = [(int(r[0]), str(r[1])) for r in await cur.fetchall()]
        return rows[: query.limit], len(rows) > query.limit

    async def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        async with self.db.execute(COUNTS) as cur:
            for kind, n in await cur.fetchall():
                out[kind] = n
        return out

    async def ledger_summary(self) -> tuple[int, tuple[int, str, str, str, int] | None]:
        """The ledger's row count and its last event: (seq, event id, kind, workspace, stored at in us)."""
        async with self.db.execute(LEDGER_COUNT) as cur:
            count = int((await cur.fetchone() or (0,))[0])
        async with self.db.execute(LAST_EVENT) as cur:
            row = await cur.fetchone()
        return count, None if row is None else (int(row[0]), str(row[1]), str(row[2]), str(row[3]), int(row[4]))

    async def ledger_since(self, seq: int) -> list[tuple[int, str, str]]:
        """(seq, event id, kind) of every event stored after ledger position `seq`, in commit order."""
        async with self.db.execute(LEDGER_SINCE, (seq,)) as cur:
            return [(int(s), str(e), str(k)) for s, e, k in await cur.fetchall()]

    async def job_event_count(self, excluded_jobs: Sequence[str]) -> int:
        """Events in the ledger except those of the named jobs (e.g. the services' own)."""
        sql = JOB_EVENT_COUNT.format(",".join("?" * len(excluded_jobs)) or "NULL")
        async with self.db.execute(sql, list(excluded_jobs)) as cur:
            return int((await cur.fetchone() or (0,))[0])


class ConnReads(LedgerReads, LearningReads, SessionReads, EntropyReads):
    """Every read of `StoreReads` on one `ReadConn`, which each backend's `open` makes: `async with`."""

    _db: ReadConn | None = None

    async def open(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def db(self) -> ReadConn:
        assert self._db is not None, f"{type(self).__name__} used outside `async with`"
        return self._db


class Reader(ConnReads):
    """A read-only connection to the store file: `async with Reader(path) as reader:`. It is the SQLite
    `StoreReads`; its failures are `StoreError`s (`services.store.read_conn`)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    async def open(self) -> None:
        try:
            raw = await aiosqlite.connect(_uri(self.path), uri=True)
        except sqlite3.Error as exc:
            raise sqlite_read_error(exc) from exc
        self._db = SqliteReadConn(raw)
        async with self._db.execute(BUSY_TIMEOUT):
            pass


def _where(query: EventQuery) -> tuple[str, list[Any]]:
    """The ledger filter of an EventQuery: SQL conditions and their parameters."""
    where: list[str] = ["1=1"]
    params: list[Any] = []
    if query.workspace is not None:
        where.append("workspace = ?")
        params.append(query.workspace)
    if query.job is not None:
        where.append("job = ?")
        params.append(query.job)
    if query.correlation_id is not None:
        where.append("correlation_id = ?")
        params.append(query.correlation_id)
    if query.kinds:
        where.append(f"kind IN ({','.join('?' * len(query.kinds))})")
        params.extend(k.value for k in query.kinds)
    if query.time_range is not None:
        if query.time_range.start is not None:
            where.append("occurred_us >= ?")
            params.append(us(query.time_range.start))
        if query.time_range.end is not None:
            where.append("occurred_us <= ?")
            params.append(us(query.time_range.end))
    return " AND ".join(where), params
