"""PostgreSQL's `StoreReads`: `PgReader`, the SQLite reader's mixins on one psycopg AsyncConnection.

The read statements are written once (`services.store.reader`, `learning_reads`, `session_reads`, `entropy`);
`PgReadConn` sends each as `read_sql.read_statement` rewrites it (placeholders and SQLite idioms by
`conn.translate`, NULL order by `nulls_as_sqlite`) and loads `numeric` as SQLite would return it, so both
readers give the same answers. The session is read-only and in autocommit: each statement sees the latest
commit, as a SQLite reader outside a transaction does.

Failures are `StoreError`s (`read_sql.pg_error`): an unreachable or restarted server is a `StoreBusyError`
whose message is one line; the next statement reconnects, so a long-lived reader (the query service's)
outlives a server restart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from pheromone.services.store.pg.conn import register_numeric
from pheromone.services.store.pg.read_sql import pg_error, read_statement
from pheromone.services.store.read_conn import ReadCursor
from pheromone.services.store.reader import ConnReads

__all__ = ["PgReadConn", "PgReader", "connect_options"]

CONNECT_TIMEOUT_S = 10
"""Unless the URL sets `connect_timeout`: a host that drops packets fails in this time, not the OS's."""
READ_ONLY = "SET default_transaction_read_only = on"


def connect_options(url: str, application_name: str) -> dict[str, Any]:
    """Connection settings the URL does not set itself (the URL's own win)."""
    given = conninfo_to_dict(url)
    options: dict[str, Any] = {"autocommit": True}
    if "connect_timeout" not in given:
        options["connect_timeout"] = CONNECT_TIMEOUT_S
    if "application_name" not in given:
        options["application_name"] = application_name
    return options


class PgReadConn:
    """`ReadConn` over one read-only psycopg AsyncConnection, reopened after the server dropped it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.raw: psycopg.AsyncConnection[Any] | None = None

    async def connect(self) -> psycopg.AsyncConnection[Any]:
        try:
            raw = await psycopg.AsyncConnection.connect(self.url, **connect_options(self.url, "pheromone-reader"))
            register_numeric(raw)
            await raw.execute(READ_ONLY)
        except psycopg.Error as exc:
            raise pg_error(exc, self.url) from exc
        self.raw = raw
        return raw

    async def close(self) -> None:
        if self.raw is not None:
            await self.raw.close()
            self.raw = None

    @asynccontextmanager
    async def execute(self, sql: str, parameters: Any = (), /) -> AsyncIterator[ReadCursor]:
        raw = self.raw
        if raw is None or raw.closed or raw.broken:
            raw = await self.connect()
        # The yield is inside the try: an error of a fetch in the caller's block is mapped too.
        try:
            async with raw.cursor() as cur:
                await cur.execute(read_statement(sql), parameters)
                yield cur
        except psycopg.Error as exc:
            raise pg_error(exc, self.url) from exc


class PgReader(ConnReads):
    """A read-only session on the PostgreSQL store: `async with PgReader(url) as reader:`."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def open(self) -> None:
        conn = PgReadConn(self.url)
        await conn.connect()
        self._db = conn
