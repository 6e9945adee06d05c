"""The connection the read mixins (`LedgerReads`, `LearningReads`, `SessionReads`, `EntropyReads`) run their
statements on: `ReadConn`, one statement at a time as `async with conn.execute(sql, params) as cur:`, rows
through `await cur.fetchone()` / `await cur.fetchall()` and names through `cur.description`.

The statements are written once, in SQLite's dialect with `?` and `:name` placeholders. `SqliteReadConn` runs
them on aiosqlite; `services.store.pg.reader` translates them for PostgreSQL. Both raise a failing store as a
`StoreError` (`StoreNotMigrated` for a missing table, `StoreBusyError` when retryable), never a driver's
error, so callers of `StoreReads` catch one tree whichever backend they read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol

import aiosqlite

from pheromone.services.errors import StoreError, StoreNotMigrated
from pheromone.services.store.db import map_sqlite_error


class ReadCursor(Protocol):
    @property
    def description(self) -> Any: ...
    async def fetchone(self) -> Any: ...
    async def fetchall(self) -> Iterable[Any]: ...


class ReadConn(Protocol):
    def execute(self, sql: str, parameters: Any = ..., /) -> AbstractAsyncContextManager[ReadCursor]: ...
    async def close(self) -> None: ...


def sqlite_read_error(exc: sqlite3.Error) -> StoreError:
    """A reader's SQLite error as a store error: a missing table means a store not set up (or upgraded) yet."""
    if isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc):
        return StoreNotMigrated(f"store not set up: {exc}")
    return map_sqlite_error(exc)


class SqliteReadConn:
    """`ReadConn` over one aiosqlite connection."""

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    async def close(self) -> None:
        await self.raw.close()

    @asynccontextmanager
    async def execute(self, sql: str, parameters: Any = (), /) -> AsyncIterator[ReadCursor]:
        # The yield is inside the try: an error of a fetch in the caller's block is mapped too.
        try:
            async with self.raw.execute(sql, parameters) as cur:
                yield cur
        except sqlite3.Error as exc:
            raise sqlite_read_error(exc) from exc
