"""The store's SQLite-style statements on PostgreSQL: `translate` rewrites them, `PgConn` runs them.

Projections, pattern batches and session projections are written once, against `services.store.sql.SqlConn`,
with `?`, `?N` and `:name` placeholders and SQLite's upsert spellings. `translate` turns such a statement into
one psycopg takes (`%s`, `%(name)s`, a literal `%` doubled, quoted strings and `::` casts left alone) and
rewrites the few SQLite idioms the store uses that PostgreSQL spells otherwise: `INSERT OR IGNORE`,
`INSERT OR REPLACE` / `REPLACE INTO` (an upsert of every column on the table's primary key, which is what
deleting the old row and inserting the new one leaves), two-argument `MIN`/`MAX` (`LEAST`/`GREATEST`),
`IS NOT <value>` (`IS DISTINCT FROM`), `json(?)`. What is not mechanical has a PostgreSQL statement of its own
in `services.store.pg.statements`, looked up by the SQLite text.

`PgConn` wraps a synchronous psycopg connection; `numeric` results (PostgreSQL's `SUM(bigint)`, `AVG`) come
back as int when written without a scale, else float, as SQLite's would (`register_numeric`).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from functools import cache
from typing import Any, Self

import psycopg
from psycopg import adapt
from psycopg.pq import Format

from pheromone.services.errors import StoreError

__all__ = ["PgConn", "PgCursor", "Translated", "register_numeric", "translate"]

NUMERIC_OID = 1700

_TOKEN = re.compile(
    r"""
      (?P<quoted>'(?:[^']|'')*'|"(?:[^"]|"")*")   # string literals and quoted identifiers: untouched
    | (?P<cast>::)                                   # a cast, not a named parameter
    | \?(?P<number>\d+)                              # ?N: SQLite's numbered parameter
    | (?P<qmark>\?)
    | :(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<percent>%)
    """,
    re.VERBOSE,
)
_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_OR_REPLACE = re.compile(r"^\s*(?:INSERT\s+OR\s+REPLACE|REPLACE)\s+INTO\s+(?P<table>\w+)", re.IGNORECASE)
_MIN_MAX = re.compile(r"\b(MIN|MAX)\(\s*([\w.]+)\s*,\s*([\w.]+)\s*\)", re.IGNORECASE)
_IS_NOT = re.compile(r"\bIS\s+NOT\s+(?!NULL\b|TRUE\b|FALSE\b|DISTINCT\b)", re.IGNORECASE)
_JSON = re.compile(r"(?<![\w.])json\(", re.IGNORECASE)
_UPSERT = re.compile(r"^\s*INSERT\s+INTO\s+(?P<table>\w+)\b.*?\bDO\s+UPDATE\s+SET\b", re.IGNORECASE | re.DOTALL)
_ONE_ROW = re.compile(
    r"^(?P<head>\s*INSERT\s+INTO\s+(?P<table>\w+)\s*(?:\((?P<columns>[^()]*)\))?)\s*VALUES\s*"
    r"(?P<row>\((?:\s*%s\s*,)*\s*%s\s*\))(?P<tail>\s*(?:ON\s+CONFLICT\s+DO\s+NOTHING)?\s*)$",
    re.IGNORECASE,
)
_RETURNING = re.compile("RETURNING", re.IGNORECASE)
_WHERE = re.compile("WHERE", re.IGNORECASE)
# A bare word: not a qualified name's part (`t.col`, `excluded.col`), not a parameter (`:name`), not a function.
_WORDS = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|(?<![.:\w])(?P<word>[A-Za-z_]\w*)\b(?!\s*[.(])""")
_STRUCTURE = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|(?P<open>\()|(?P<close>\))|(?P<comma>,)|(?P<word>[A-Za-z_]\w*)"""
)


class Translated:
    """A statement in psycopg's syntax, and how to pass it the parameters written for SQLite.

    `numbered`: the SQLite text used `?N`, rewritten `%(_N)s`; a sequence of parameters becomes the
    mapping {"_1": first, ...}."""

    __slots__ = ("floats", "must_insert", "numbered", "rows", "sql")

    def __init__(self, sql: str, numbered: bool, must_insert: bool = False) -> None:
        self.sql = sql
        self.numbered = numbered
        self.must_insert = must_insert
        self.floats: tuple[int, ...] = ()
        self.rows = None if numbered else _unnest(self, sql)
        """For a plain insert of one row of positional parameters, the same insert of many rows, sent as one
        array per column (`executemany`): one statement, where psycopg's executemany sends one per row."""

    def arrays(self, rows: list[Any]) -> list[list[Any]]:
        """`rows` as one list per column; a float column's ints made floats, so each list has one type."""
        columns = [list(c) for c in zip(*rows, strict=True)]
        for i in self.floats:
            columns[i] = [v if v is None else float(v) for v in columns[i]]
        return columns

    def params(self, parameters: Any) -> Any:
        if self.numbered and not isinstance(parameters, Mapping):
            return {f"_{i}": value for i, value in enumerate(parameters, 1)}
        return parameters


def _unnest(t: Translated, sql: str) -> str | None:
    from pheromone.services.store.pg.schema import table_info

    m = _ONE_ROW.match(sql)
    if m is None or (info := table_info().get(m["table"])) is None:
        return None
    names, _, types = info
    listed = [c.strip() for c in m["columns"].split(",")] if m["columns"] else list(names)
    if m["row"].count("%s") != len(listed) or not set(listed) <= set(names):
        return None
    kinds = [types[names.index(c)] for c in listed]
    t.floats = tuple(i for i, k in enumerate(kinds) if k == "float8")
    arrays = ", ".join(f"%b::{k}[]" for k in kinds)  # binary: no text escaping of every value
    return f"{m['head']} SELECT * FROM unnest({arrays}){m['tail']}"


def translate(sql: str) -> str:
    """A SQLite-style statement of the store as PostgreSQL (psycopg) takes it."""
    return _translated(sql).sql


@cache
def _translated(sql: str) -> Translated:
    from pheromone.services.store.pg.statements import MUST_INSERT, OVERRIDES

    must_insert = sql in MUST_INSERT
    sql = _dialect(OVERRIDES.get(sql, sql))
    styles: set[str] = set()

    def token(m: re.Match[str]) -> str:
        if m["quoted"] is not None:
            # psycopg reads every `%` of a statement it is given parameters for, quoted or not.
            return m[0].replace("%", "%%")
        if m["cast"] is not None:
            return m[0]
        if m["number"] is not None:
            styles.add("numbered")
            return f"%(_{m['number']})s"
        if m["qmark"] is not None:
            styles.add("positional")
            return "%s"
        if m["name"] is not None:
            styles.add("named")
            return f"%({m['name']})s"
        return "%%"

    out = _TOKEN.sub(token, sql)
    numbered = "numbered" in styles
    if "positional" in styles and len(styles) > 1:
        raise StoreError(f"a statement mixes positional and named parameters: {sql.strip()[:80]}")
    return Translated(out, numbered, must_insert)


def _dialect(sql: str) -> str:
    """SQLite idioms, rewritten before the placeholders are (the store's statements hold none inside quotes)."""
    if m := _UPSERT.match(sql):
        sql = _qualify_upsert(sql, m["table"], m.end())
    if m := _OR_REPLACE.match(sql):
        table = m["table"]
        sql = f"INSERT INTO {table}{sql[m.end():]}".rstrip().rstrip(";")
        sql += _upsert_every_column(table)
    elif _OR_IGNORE.match(sql):
        sql = _OR_IGNORE.sub("INSERT INTO", sql, count=1).rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    if sql.lstrip()[:6].upper() == "PRAGMA":
        raise StoreError(f"{sql.strip()} has no PostgreSQL equivalent")
    sql = _MIN_MAX.sub(lambda m: f"{'LEAST' if m[1].upper() == 'MIN' else 'GREATEST'}({m[2]}, {m[3]})", sql)
    sql = _IS_NOT.sub("IS DISTINCT FROM ", sql)
    return _JSON.sub("(", sql)


def _qualify_upsert(sql: str, table: str, start: int) -> str:
    """In `ON CONFLICT … DO UPDATE SET a = a + 1 WHERE b != excluded.b`, SQLite reads a bare column as the
    existing row's; PostgreSQL finds it ambiguous (it could be `excluded`'s). Qualify the bare columns of the
    assignments' values and of the WHERE with the table's name (never an assignment's target)."""
    from pheromone.services.store.pg.schema import table_info

    info = table_info().get(table)
    if info is None:
        return sql
    columns = set(info[0])
    tail = sql[start:]
    returning = _top_level(tail, _RETURNING)
    body, rest = (tail[:returning], tail[returning:]) if returning >= 0 else (tail, "")
    where = _top_level(body, _WHERE)
    sets, cond = (body[:where], body[where:]) if where >= 0 else (body, "")
    assignments = []
    for part in _split_top_level(sets):
        target, eq, value = part.partition("=")
        assignments.append(target + eq + _qualify(value, table, columns))
    return sql[:start] + ",".join(assignments) + _qualify(cond, table, columns) + rest


def _qualify(expr: str, table: str, columns: set[str]) -> str:
    def one(m: re.Match[str]) -> str:
        if m["word"] is not None and m["word"] in columns:
            return f"{table}.{m['word']}"
        return m[0]

    return _WORDS.sub(one, expr)


def _top_level(sql: str, pattern: re.Pattern[str]) -> int:
    """Where `pattern` first matches outside parentheses and quotes in `sql`, or -1."""
    depth = 0
    for m in _STRUCTURE.finditer(sql):
        if m["open"]:
            depth += 1
        elif m["close"]:
            depth -= 1
        elif m["word"] is not None and depth == 0 and pattern.fullmatch(m["word"]):
            return m.start()
    return -1


def _split_top_level(sql: str) -> list[str]:
    parts, depth, last = [], 0, 0
    for m in _STRUCTURE.finditer(sql):
        if m["open"]:
            depth += 1
        elif m["close"]:
            depth -= 1
        elif m["comma"] and depth == 0:
            parts.append(sql[last : m.start()])
            last = m.end()
    parts.append(sql[last:])
    return parts


def _upsert_every_column(table: str) -> str:
    from pheromone.services.store.pg.schema import table_info

    info = table_info().get(table)
    if info is None:
        raise StoreError(f"no table {table!r} in the store's schema")
    columns, key, _ = info
    rest = [c for c in columns if c not in key]
    action = "DO UPDATE SET " + ", ".join(f"{c} = EXCLUDED.{c}" for c in rest) if rest else "DO NOTHING"
    return f" ON CONFLICT ({', '.join(key)}) {action}"


# -- results -----------------------------------------------------------------------------------------------


class _NumericLoader(adapt.Loader):
    """numeric as SQLite would return it: an int when PostgreSQL writes it without a scale (`SUM` of
    integers), else a float (`AVG`, which SQLite returns as REAL even when integral)."""

    format = Format.TEXT

    def load(self, data: adapt.Buffer) -> int | float:
        text = bytes(data)
        if text.lstrip(b"-").isdigit():
            return int(text)
        return float(text)  # a scale, NaN or Infinity


def register_numeric(context: psycopg.Connection[Any] | psycopg.AsyncConnection[Any]) -> None:
    """Load `numeric` as int or float (see `_NumericLoader`) on a connection or cursor."""
    context.adapters.register_loader(NUMERIC_OID, _NumericLoader)


# -- the synchronous connection ------------------------------------------------------------------------------


class PgCursor:
    """A cursor as projections use one (`SqlCursor`). In pipeline mode, reading its rowcount or rows first
    syncs the pipeline, so it sees its statement's real result."""

    __slots__ = ("_conn", "_cur", "_pending")

    def __init__(self, conn: PgConn, cur: psycopg.Cursor[Any]) -> None:
        self._conn = conn
        self._cur = cur
        self._pending = False

    def execute(self, sql: str, parameters: Any = None, /) -> Self:
        t = _translated(sql)
        # Always parameters, even none: psycopg then reads the statement's doubled `%` as one.
        self._cur.execute(t.sql, t.params(parameters) if parameters is not None else ())
        self._pending = self._conn.raw._pipeline is not None
        if t.must_insert and self.rowcount == 0:
            # What SQLite raises for this insert, which the projection catches (pg.statements.MUST_INSERT).
            raise sqlite3.IntegrityError(f"UNIQUE constraint failed: {sql.strip()[:60]}")
        return self

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> Self:
        t = _translated(sql)
        if t.rows is None:
            self._cur.executemany(t.sql, [t.params(p) for p in parameters])
        else:
            rows = list(parameters)
            if rows:
                self._cur.execute(t.rows, t.arrays(rows))
        self._pending = self._conn.raw._pipeline is not None
        return self

    def _result(self) -> psycopg.Cursor[Any]:
        if self._pending:
            self._pending = False
            self._conn.sync()
        return self._cur

    @property
    def rowcount(self) -> int:
        return self._result().rowcount

    def fetchone(self) -> Any:
        return self._result().fetchone()

    def fetchall(self) -> list[Any]:
        return self._result().fetchall()

    def __iter__(self) -> Iterator[Any]:
        return iter(self._result())


class PgConn:
    """A psycopg connection with the `SqlConn` methods projections call, taking SQLite-style statements.

    Transactions are explicit: the connection is in autocommit mode and the store issues `BEGIN`/`COMMIT`
    itself, as db.py does on SQLite. `pipeline()` enters psycopg's pipeline mode: statements are sent without
    waiting, and a cursor whose result is read syncs first.
    """

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw
        register_numeric(raw)

    @classmethod
    def connect(cls, url: str, *, application_name: str = "pheromone", **options: Any) -> PgConn:
        raw = psycopg.connect(url, autocommit=True, application_name=application_name, **options)
        return cls(raw)

    def execute(self, sql: str, parameters: Any = None, /) -> PgCursor:
        return PgCursor(self, self.raw.cursor()).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> PgCursor:
        return PgCursor(self, self.raw.cursor()).executemany(sql, parameters)

    def cursor(self) -> PgCursor:
        return PgCursor(self, self.raw.cursor())

    def sync(self) -> None:
        """Send what the pipeline holds and wait for every result (raises the first error among them)."""
        pipeline = self.raw._pipeline
        if pipeline is not None:
            pipeline.sync()

    def pipeline(self) -> AbstractContextManager[psycopg.Pipeline]:
        return self.raw.pipeline()

    def close(self) -> None:
        self.raw.close()

    @property
    def closed(self) -> bool:
        return self.raw.closed or self.raw.broken
