"""The PostgreSQL schema: `services.store.schema.MIGRATIONS`, translated, so a migration is written once.

`to_postgres` maps SQLite's types to PostgreSQL's (INTEGER → BIGINT, REAL → DOUBLE PRECISION, TEXT → TEXT
COLLATE "C", so text orders byte by byte as SQLite's BINARY collation does) and drops `WITHOUT ROWID`; column
order is kept, since the checksum and the projections' `INSERT … VALUES` rely on it.

The version lives in a table of its own (`store_schema`; SQLite keeps it in `PRAGMA user_version`).
`migrate` runs in one transaction under a transaction-level advisory lock, so processes that open a fresh
database at once apply each migration once: the second waits for the first's commit, then finds the new
version. DDL is transactional on PostgreSQL, so a migration that fails leaves nothing behind. A database
newer than the code is refused.
"""

from __future__ import annotations

import contextlib
import re
from functools import cache

import psycopg

from pheromone.services.errors import StoreError
from pheromone.services.store.pg.conn import PgConn
from pheromone.services.store.schema import MIGRATIONS, connect
from pheromone.services.store.schema import migrate as migrate_sqlite

__all__ = ["MIGRATE_LOCK", "PG_MIGRATIONS", "VERSION_TABLE", "migrate", "table_info", "to_postgres"]

VERSION_TABLE = "store_schema"
MIGRATE_LOCK = 0x7068_6572_6F6D_0001
"""The advisory lock key migrations hold (writers hold `store.WRITE_LOCK`): any 64-bit constant of ours."""

_TYPES = (
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    (re.compile(r"\bTEXT\b"), 'TEXT COLLATE "C"'),
    (re.compile(r"\)\s*WITHOUT\s+ROWID\b"), ")"),
)


_ARRAY_TYPES = {"INTEGER": "bigint", "REAL": "float8", "TEXT": "text"}


def to_postgres(script: str) -> str:
    """One SQLite migration script as PostgreSQL DDL."""
    for pattern, replacement in _TYPES:
        script = pattern.sub(replacement, script)
    return script


PG_MIGRATIONS: tuple[str, ...] = tuple(to_postgres(script) for script in MIGRATIONS)


def statements(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


@cache
def table_info() -> dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """Every table's columns in order, its primary key and its columns' PostgreSQL types, from the SQLite
    schema (built in memory): what an `INSERT OR REPLACE` of the table becomes on PostgreSQL, and the arrays
    a many-row insert sends (`conn.translate`)."""
    conn = connect(":memory:")
    try:
        migrate_sqlite(conn)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        info: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {}
        for table in tables:
            rows = conn.execute(f"PRAGMA table_info({table})").fetchall()  # cid, name, type, notnull, dflt, pk
            columns = tuple(r[1] for r in rows)
            key = tuple(r[1] for r in sorted((r for r in rows if r[5]), key=lambda r: r[5]))
            types = tuple(_ARRAY_TYPES[r[2]] for r in rows)
            info[table] = (columns, key, types)
        return info
    finally:
        conn.close()


def migrate(conn: PgConn) -> int:
    """Bring the database to the newest version; returns it. Safe when processes race."""
    raw = conn.raw
    raw.execute("BEGIN")
    try:
        raw.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,))
        raw.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version BIGINT NOT NULL)")
        row = raw.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
        if row is None:
            raw.execute(f"INSERT INTO {VERSION_TABLE} VALUES (0)")
        version = row[0] if row else 0
        if version > len(PG_MIGRATIONS):
            raise StoreError(
                f"store schema version {version} is newer than this pheromone ({len(PG_MIGRATIONS)}); upgrade"
            )
        for script in PG_MIGRATIONS[version:]:
            for statement in statements(script):
                raw.execute(statement)  # without parameters psycopg sends the text as it is
        if version < len(PG_MIGRATIONS):
            raw.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (len(PG_MIGRATIONS),))
        raw.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            raw.execute("ROLLBACK")
        raise
    return len(PG_MIGRATIONS)
