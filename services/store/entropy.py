"""What the entropy service reads from the store (`EntropyReads`, part of `services.store.reader.Reader`):
read-only, one SQL constant per question, on either backend.

The store keeps the population's entropy aggregate (`entropy_state`: total applications, sum of c log2 c,
unique and effective pattern counts) and each pattern's current drift (`pattern_drift`) up to date in the same
transaction as the applications (docs/LEARNING.md), so every question here is an indexed look-up: evaluating
diversity costs the same with a thousand applications or a hundred million, and counts are exactly-once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from pheromone.contracts import DriftMetrics, PatternEntropyMetrics
from pheromone.services.learning.entropy import entropy_from_aggregate
from pheromone.services.store.batch import SELECT_ENTROPY
from pheromone.services.store.read_conn import ReadConn

MAX_COUNT = "SELECT MAX(applications) FROM pattern_counts"
LATEST_BUDGET = "SELECT budget_value FROM exploration_budget ORDER BY seq DESC LIMIT 1"
QUARANTINED = """
SELECT id FROM patterns WHERE quarantine_status = 'quarantined' AND active = 1
ORDER BY quarantined_at_us, id LIMIT ?
"""
"""Longest in quarantine first: a revisited pattern that is quarantined again goes to the back of the line."""
DRIFTING = """
SELECT d.pattern_id, d.drift, p.context_tags FROM pattern_drift d LEFT JOIN patterns p ON p.id = d.pattern_id
WHERE d.drift_exceeded = 1 AND d.drift IS NOT NULL ORDER BY d.drift_magnitude DESC, d.pattern_id LIMIT ?
"""


@dataclass(frozen=True, slots=True)
class Drifting:
    drift: DriftMetrics
    tags: list[str]


class EntropyReads:
    """The entropy service's reads of the store's readers (failures are `StoreError`s, see `read_conn`)."""

    @property
    def db(self) -> ReadConn:
        raise NotImplementedError

    async def entropy(self, *, calculated_at: datetime, alert_threshold: float) -> PatternEntropyMetrics:
        """The population's entropy metrics now (learning's formula, from the store's running aggregate)."""
        async with self.db.execute(SELECT_ENTROPY) as cur:
            row = await cur.fetchone()
        async with self.db.execute(MAX_COUNT) as cur:
            top = await cur.fetchone()
        total, s, unique, effective = row if row is not None else (0, 0.0, 0, 0)
        return entropy_from_aggregate(
            total=int(total), sum_c_log2_c=float(s), unique=int(unique), effective=int(effective),
            max_count=int(top[0] or 0) if top else 0, calculated_at=calculated_at,
            alert_threshold=alert_threshold,
        )

    async def latest_budget(self) -> float | None:
        """The exploration budget's latest value (None before the first budget record)."""
        async with self.db.execute(LATEST_BUDGET) as cur:
            row = await cur.fetchone()
        return None if row is None else float(row[0])

    async def quarantined(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        async with self.db.execute(QUARANTINED, (limit,)) as cur:
            return [str(r[0]) for r in await cur.fetchall()]

    async def drifting(self, limit: int = 100) -> list[Drifting]:
        """Patterns whose current effectiveness drift exceeds its threshold, largest drift first."""
        async with self.db.execute(DRIFTING, (limit,)) as cur:
            rows = await cur.fetchall()
        return [Drifting(DriftMetrics.model_validate_json(drift), json.loads(tags) if tags else [])
                for _, drift, tags in rows]
