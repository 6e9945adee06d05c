"""What the entropy service reads from the store (`EntropyReader`): read-only, through aiosqlite, one SQL
constant per question.

The store keeps the population's entropy aggregate (`entropy_state`: total applications, sum of c log2 c,
unique and effective pattern counts) and each pattern's current drift (`pattern_drift`) up to date in the same
transaction as the applications (docs/LEARNING.md), so every question here is an indexed look-up: evaluating
diversity costs the same with a thousand applications or a hundred million, and counts are exactly-once.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import aiosqlite

from pheromone.contracts import DriftMetrics, PatternEntropyMetrics
from pheromone.services.errors import StoreError
from pheromone.services.learning.entropy import entropy_from_aggregate
from pheromone.services.store.batch import SELECT_ENTROPY
from pheromone.services.store.db import ensure_store, map_sqlite_error

MAX_COUNT = "SELECT MAX(applications) FROM pattern_counts"
LATEST_BUDGET = "SELECT budget_value FROM exploration_budget ORDER BY seq DESC LIMIT 1"
QUARANTINED = """
SELECT id FROM patterns WHERE quarantine_status = 'quarantined' AND active = 1
ORDER BY quarantined_at_us, id LIMIT ?
"""
"""Longest in quarantine first: a revisited pattern that is quarantined again goes to the back of the line."""
DRIFTING = """
SELECT d.pattern_id, d.drift, p.context_tags FROM pattern_drift d LEFT JOIN patterns p ON p.id = d.pattern_id
WHERE d.drift_exceeded = 1 AND d.drift IS NOT NULL ORDER BY d.drift_magnitude DESC LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class Drifting:
    drift: DriftMetrics
    tags: list[str]


class EntropyReader:
    """A read-only connection to the store file. Use `async with EntropyReader(path) as reader:`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: aiosqlite.Connection | None = None

    async def __aenter__(self) -> EntropyReader:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        """Open read-only, creating an empty store first if there is none (`ensure_store`)."""
        await ensure_store(self.path)
        try:
            self._db = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True)
            await self._db.execute("PRAGMA busy_timeout=10000")
        except sqlite3.Error as exc:
            raise map_sqlite_error(exc) from exc

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def _rows(self, sql: str, args: tuple[object, ...] = ()) -> list[Any]:
        """The rows of one question; a failing store is a `StoreError` (retryable ones `StoreBusyError`)."""
        if self._db is None:
            raise StoreError("EntropyReader used before open()")
        try:
            async with self._db.execute(sql, args) as cur:
                return list(await cur.fetchall())
        except sqlite3.Error as exc:
            raise map_sqlite_error(exc) from exc

    async def entropy(self, *, calculated_at: datetime, alert_threshold: float) -> PatternEntropyMetrics:
        """The population's entropy metrics now (learning's formula, from the store's running aggregate)."""
        state, top = await self._rows(SELECT_ENTROPY), await self._rows(MAX_COUNT)
        total, s, unique, effective = state[0] if state else (0, 0.0, 0, 0)
        return entropy_from_aggregate(
            total=int(total), sum_c_log2_c=float(s), unique=int(unique), effective=int(effective),
            max_count=int(top[0][0] or 0) if top else 0, calculated_at=calculated_at,
            alert_threshold=alert_threshold,
        )

    async def budget(self) -> float | None:
        """The exploration budget's latest value (None before the first budget record)."""
        rows = await self._rows(LATEST_BUDGET)
        return float(rows[0][0]) if rows else None

    async def quarantined(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        return [str(r[0]) for r in await self._rows(QUARANTINED, (limit,))]

    async def drifting(self, limit: int = 100) -> list[Drifting]:
        """Patterns whose current effectiveness drift exceeds its threshold, largest drift first."""
        rows = await self._rows(DRIFTING, (limit,))
        return [Drifting(DriftMetrics.model_validate_json(drift), json.loads(tags) if tags else [])
                for _, drift, tags in rows]
