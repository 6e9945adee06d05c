"""PostgreSQL's `SessionStore`: the consolidator's and the session commands' statements on one synchronous
psycopg connection.

`PgSessionStore` is `services.store.session_store.SessionStore` with another connection: `PgSessionConn`
sends each statement as `read_sql.read_statement` rewrites it (placeholders, `INSERT OR REPLACE` as an
upsert, `BEGIN IMMEDIATE` as `BEGIN`, NULL order) and raises PostgreSQL's errors as `StoreError`s. Its rows
are psycopg's tuples, with `numeric` loaded as SQLite would return it, so `guidance_checksum` over it equals
the SQLite store's for the same rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import psycopg

from pheromone.services.store.pg.conn import register_numeric
from pheromone.services.store.pg.read_sql import pg_error, read_statement
from pheromone.services.store.pg.reader import connect_options
from pheromone.services.store.session_store import SessionConn, SessionStore

__all__ = ["PgSessionConn", "PgSessionStore"]


class PgSessionConn:
    """`SessionConn` over a psycopg connection in autocommit mode (transactions are explicit, as on SQLite)."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            self.raw: psycopg.Connection[Any] = psycopg.connect(url, **connect_options(url, "pheromone-sessions"))
        except psycopg.Error as exc:
            raise pg_error(exc, url) from exc
        register_numeric(self.raw)

    def execute(self, sql: str, parameters: Any = (), /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        try:
            return cur.execute(read_statement(sql), parameters)
        except psycopg.Error as exc:
            raise pg_error(exc, self.url) from exc

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        try:
            cur.executemany(read_statement(sql), parameters)
        except psycopg.Error as exc:
            raise pg_error(exc, self.url) from exc
        return cur

    def close(self) -> None:
        self.raw.close()


class PgSessionStore(SessionStore):
    """The session store on PostgreSQL: connects on first use; `close()` when done."""

    def __init__(self, url: str) -> None:  # no file `path`: the URL, which may hold a password, is the store
        self.url = url
        self._conn: SessionConn | None = None

    def _connect(self) -> SessionConn:
        return PgSessionConn(self.url)
