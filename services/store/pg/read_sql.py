"""What the PostgreSQL readers (`reader.PgReader`, `session_store.PgSessionStore`) add to `conn.translate`:
NULLs ordered as SQLite orders them, and PostgreSQL's errors as the store's.

SQLite sorts NULL before every value (first ascending, last descending); PostgreSQL sorts it after (last
ascending, first descending). `nulls_as_sqlite` spells SQLite's order out on each ORDER BY term that names a
column which may hold NULL, and leaves the others alone, so an ordered scan of a NOT NULL index (the ledger
by `seq`) stays one: a NULLS clause that differs from the index's order would make PostgreSQL sort instead.
"""

from __future__ import annotations

import re
from functools import cache

import psycopg

from pheromone.services.errors import StoreBusyError, StoreError, StoreNotMigrated
from pheromone.services.store.location import describe
from pheromone.services.store.pg.conn import translate
from pheromone.services.store.schema import connect, migrate

__all__ = ["nullable_columns", "nulls_as_sqlite", "pg_error", "read_statement"]

_ORDER_BY = re.compile(r"\bORDER\s+BY\b", re.IGNORECASE)
_CLAUSE_END = re.compile(r"(?:LIMIT|OFFSET|UNION|FOR)\b", re.IGNORECASE)
_NULLS = re.compile(r"\bNULLS\s+(?:FIRST|LAST)\b", re.IGNORECASE)
_DESC = re.compile(r"\bDESC\s*$", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@cache
def nullable_columns() -> frozenset[str]:
    """Names of the columns that may hold NULL in some table, read from the schema (built in memory): one
    source for both backends' tables. A name NOT NULL in one table and nullable in another counts as nullable,
    which costs at most a sort of rows that are sorted anyway."""
    conn = connect(":memory:")
    try:
        migrate(conn)
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        names: set[str] = set()
        for table in tables:
            for _, name, _, notnull, _, pk in conn.execute(f"PRAGMA table_info({table})"):
                if not notnull and not pk:
                    names.add(name.lower())
        return frozenset(names)
    finally:
        conn.close()


def nulls_as_sqlite(sql: str, nullable: frozenset[str] | None = None) -> str:
    """`sql` with `NULLS FIRST` (ascending) or `NULLS LAST` (descending) on each ORDER BY term that names a
    nullable column. Terms by position (`ORDER BY 1`) are left as they are."""
    nullable = nullable_columns() if nullable is None else nullable
    out: list[str] = []
    pos = 0
    for m in _ORDER_BY.finditer(sql):
        if m.start() < pos:
            continue
        start = m.end()
        end = _clause_end(sql, start)
        clause = sql[start:end]
        terms = [_with_nulls(t, nullable) for t in _split_terms(clause)]
        lead = clause[: len(clause) - len(clause.lstrip())]
        trail = clause[len(clause.rstrip()):]
        out += [sql[pos:start], lead, ", ".join(terms), trail]
        pos = end
    out.append(sql[pos:])
    return "".join(out)


def _clause_end(sql: str, start: int) -> int:
    """Where the ORDER BY clause that starts at `start` ends: its subquery's `)`, LIMIT/OFFSET/UNION/FOR, or
    the end of the statement."""
    depth, i = 0, start
    while i < len(sql):
        ch = sql[i]
        if ch == "'":
            i = sql.index("'", i + 1)  # the store's statements hold no quoted quote in an ORDER BY
        elif ch == "(":
            depth += 1
        elif ch == ")":
            if depth == 0:
                return i
            depth -= 1
        elif depth == 0 and not (sql[i - 1].isalnum() or sql[i - 1] == "_") and _CLAUSE_END.match(sql, i):
            return i
        i += 1
    return len(sql)


def _split_terms(clause: str) -> list[str]:
    terms, depth, begin = [], 0, 0
    for i, ch in enumerate(clause):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(clause[begin:i].strip())
            begin = i + 1
    terms.append(clause[begin:].strip())
    return terms


def _with_nulls(term: str, nullable: frozenset[str]) -> str:
    if _NULLS.search(term) or not {w.lower() for w in _WORD.findall(term)} & nullable:
        return term
    return f"{term} NULLS LAST" if _DESC.search(term) else f"{term} NULLS FIRST"


@cache
def read_statement(sql: str) -> str:
    """A store statement (SQLite's dialect) as the PostgreSQL readers send it."""
    if sql.strip().upper() == "BEGIN IMMEDIATE":  # SQLite's up-front write lock; PostgreSQL locks per row
        return "BEGIN"
    return nulls_as_sqlite(translate(sql))


def pg_error(exc: psycopg.Error, location: str) -> StoreError:
    """A PostgreSQL error as a store error, in one line naming the store (without its password)."""
    message = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, psycopg.errors.UndefinedTable):
        return StoreNotMigrated(f"store at {describe(location)} not set up: {message}")
    if isinstance(exc, psycopg.OperationalError):  # connection refused or lost, server shutting down
        return StoreBusyError(f"store at {describe(location)} unavailable: {message}")
    return StoreError(f"store at {describe(location)} failed: {message}")

