"""What the coordination tests share: a deadline poller, settings, a read-only look at the store, and
subscription collectors. Nothing waits a fixed time for a condition: `eventually()` polls until a deadline."""

from __future__ import annotations

import asyncio
import inspect
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from contracts.broadcast import BroadcastMessage
from pheromone.subscriptions import Subscription
from services.settings import Settings

T = TypeVar("T")

FAST = {"claim_idle_ms": 300, "group_check_s": 0.2, "poll_ms": 20}
"""Keeps the retrier, the watchdog and the group readers quick in tests."""


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 15.0,
    interval: float = 0.01,
    what: str = "condition",
) -> T:
    """Poll `predicate` (sync or async) until it returns something truthy; fail at `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        last = result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {timeout:g}s (last value: {last!r})")
        await asyncio.sleep(interval)


def settings(tmp_path: Path, prefix: str, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path, prefix=prefix, **{**FAST, **overrides})


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows from the store file through a read-only connection; [] while there is no (migrated) store."""
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


def count(db: Path, table: str, where: str = "1=1", *params: Any) -> int:
    rows = query(db, f"SELECT COUNT(*) FROM {table} WHERE {where}", *params)
    return int(rows[0][0]) if rows else 0


class Collector:
    """Drains a subscription in the background into `messages`, for tests to look at."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.messages: list[BroadcastMessage] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        async for msg in self.sub:
            self.messages.append(msg)

    def ids(self) -> list[str]:
        return [m.id for m in self.messages]

    async def stop(self) -> None:
        self.sub.close()
        await asyncio.wait_for(self._task, 5)
