"""Read-side access to the store for queries: aiosqlite, read-only, never blocking the event loop.

Every query is one SQL constant with bound parameters; filters only ever add `?` placeholders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiosqlite

from pheromone.contracts import EventQuery
from pheromone.services.store.codec import us


class Reader:
    """A read-only connection to the store file. Use `async with Reader(path) as reader:`."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None

    async def __aenter__(self) -> Reader:
        # as_uri() percent-encodes the path: a '#', '?' or '%' in it must not end the file name early.
        self._db = await aiosqlite.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
        await self._db.execute("PRAGMA busy_timeout=10000")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._db is not None:
            await self._db.close()

    @property
    def db(self) -> aiosqlite.Connection:
        assert self._db is not None, "Reader used outside `async with`"
        return self._db

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
        async with self.db.execute("SELECT kind, COUNT(*) FROM ledger GROUP BY kind ORDER BY kind") as cur:
            for kind, n in await cur.fetchall():
                out[kind] = n
        return out


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
