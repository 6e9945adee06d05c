"""What every real-server test package shares: a deadline poller, fast service settings, and the runtimes a
test starts (stopped at its teardown).

Nothing waits a fixed time for a condition: `eventually()` polls until a deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, overload

from pheromone import Pheromone
from pheromone.services.runtime import Runtime
from pheromone.services.settings import Settings, StoreLocation
from pheromone.services.store.location import is_postgres

T = TypeVar("T")

OpenClient = Callable[..., Awaitable[Pheromone]]
"""The `open_client` fixture (tests/conftest.py): `await open_client(job, url=None, **options)`."""

FAST = {"claim_idle_ms": 300, "group_check_s": 0.2, "poll_ms": 20}
"""Settings that keep the retrier, the watchdog and the group readers quick in tests."""


@overload
async def eventually(
    predicate: Callable[[], Awaitable[T]], *, timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...
@overload
async def eventually(
    predicate: Callable[[], T], *, timeout: float = ..., interval: float = ..., what: str = ...
) -> T: ...
async def eventually(
    predicate: Callable[[], Any],
    *,
    timeout: float = 15.0,
    interval: float = 0.01,
    what: str = "condition",
) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; return that. Fails at `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:g}s (last value: {last!r})")
        await asyncio.sleep(interval)


def settings(tmp_path: Path, prefix: str, **overrides: Any) -> Settings:
    """Settings for one test: its own data directory and key prefix, FAST unless overridden."""
    return Settings(data_dir=tmp_path, prefix=prefix, **{**FAST, **overrides})


def store_rows(db: StoreLocation, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows from the store through a connection of our own (read-only for a file); [] while there is no
    (migrated) store. `sql` is written for SQLite (`?` placeholders); on PostgreSQL it is translated as the
    store's own statements are."""
    if is_postgres(db):
        return _pg_rows(str(db), sql, params)
    db = Path(db)
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()


def _pg_rows(url: str, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    import psycopg

    from pheromone.services.store.pg.conn import PgConn

    conn = PgConn.connect(url)
    try:
        return [tuple(row) for row in conn.execute(sql, params).fetchall()]
    except psycopg.errors.UndefinedTable:
        return []
    finally:
        conn.close()


def store_env(db: StoreLocation) -> dict[str, str]:
    """The environment that points a `pheromone` process at `db` (its default store is `<data-dir>/store.db`)."""
    return {"PHEROMONE_STORE_URL": str(db)} if is_postgres(db) else {}


def store_cli(db: StoreLocation) -> tuple[list[str], dict[str, str]]:
    """(arguments, environment) that point a CLI command at `db`: `--db FILE`, or PHEROMONE_STORE_URL."""
    return ([], store_env(db)) if is_postgres(db) else (["--db", str(db)], {})


def store_execute(db: StoreLocation, sql: str, *params: Any) -> None:
    """One statement written for SQLite, run on the store behind the store's back (to damage it, say)."""
    if is_postgres(db):
        from pheromone.services.store.pg.conn import PgConn

        pg = PgConn.connect(str(db))
        try:
            pg.execute(sql, params).rowcount  # noqa: B018 - reading the result raises the statement's error
        finally:
            pg.close()
        return
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        conn.execute(sql, params)
    finally:
        conn.close()


class Runtimes:
    """The runtimes one test started; `stop_all()` stops those the test did not stop itself."""

    def __init__(self) -> None:
        self.started: list[Runtime] = []

    async def start(self, settings: Settings, url: str, services: Sequence[str] | None) -> Runtime:
        runtime = Runtime(settings, url, services)
        await runtime.start()
        self.started.append(runtime)
        return runtime

    async def stop_all(self) -> None:
        for runtime in reversed(self.started):
            if runtime._tasks:  # not stopped by the test itself
                await runtime.stop()


@asynccontextmanager
async def runtimes() -> AsyncIterator[Runtimes]:
    """`async with runtimes() as pool:` in a fixture: every runtime started through `pool` is stopped after."""
    pool = Runtimes()
    try:
        yield pool
    finally:
        await pool.stop_all()


async def run_process(*args: str, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None,
                      stderr: bool = True) -> str:
    """Run a program to its end within `timeout` seconds (killed if not); its stdout, asserting exit 0."""
    proc = await asyncio.create_subprocess_exec(
        *args, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE if stderr else asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, f"{' '.join(args)} -> exit {proc.returncode}\n{out.decode()}{(err or b'').decode()}"
    return out.decode()
