"""What the coordination tests share: a deadline poller, settings, a read-only look at the store, and
subscription collectors. Nothing waits a fixed time for a condition: `eventually()` polls until a deadline."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pheromone.contracts.broadcast import BroadcastMessage
from pheromone.subscriptions import Subscription
from tests.support import FAST, eventually, settings, store_rows  # noqa: F401 - re-exported for the tests here

query = store_rows


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
