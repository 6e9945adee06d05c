"""Batch boundaries do not change the store: the same events in batches of any size give the same state.

The store keeps a batch's pattern state in memory and writes it back once per pattern
(services/store/batch.py). This checks that a mixed workload applied one event at a time, in batches of 13
and of 997, and by a rebuild, reaches the same `checksum()` (every projection table, row for row) and that
the same events are refused.
"""

from __future__ import annotations

import random
from pathlib import Path

from pheromone.contracts import EntropyResponseRecord, Envelope, ExecutionRecord, SuccessFactors
from pheromone.services.learning.scores import priority
from pheromone.services.settings import LearningSettings
from pheromone.services.store.db import Store
from tests.learning.helpers import applied, at, event, moved, observed, pattern_row, pid

NAMES = [f"batched {i}" for i in range(8)]
RATES = [0.95, 0.85, 0.6, 0.45, 0.3, 0.15, 0.05, 0.5]


def mixed_workload(seed: int, n: int = 1500) -> list[tuple[Envelope, str]]:
    """Observations (some after a pattern's first applications), applications with out-of-order event times
    and ties, manual transitions (some illegal, so refused), entropy responses revisiting quarantined
    patterns, and unrelated events in between."""
    rng = random.Random(seed)
    events = [event(observed(name, tags=[f"t{i % 3}"]), 0) for i, name in enumerate(NAMES[:5])]
    for k in range(n):
        roll = rng.random()
        name = rng.choice(NAMES)
        minutes = 1 + k // 3 + rng.choice([0, 0, 0.5, -7, -30, 3])  # out of order, with equal times
        if roll < 0.78:
            factors = (
                SuccessFactors(
                    error_categories=[rng.choice(["auth", "rate_limit", "io"])],
                    retry_iteration=rng.randint(0, 2),
                    validation_types=rng.sample(["file", "schema", "lint"], rng.randint(0, 2)),
                )
                if rng.random() < 0.7
                else None
            )
            grounding = rng.choice([None, round(rng.uniform(0.2, 1.0), 3), 1.0])
            ok = rng.random() < RATES[NAMES.index(name)]
            events.append(event(applied(name, ok, grounding, factors=factors), minutes, job=f"job-{k % 5}"))
        elif roll < 0.84:
            events.append(event(observed(name, tags=[rng.choice(["a", "b", "c"])]), minutes))
        elif roll < 0.90:
            to = rng.choice(["pending", "validated", "quarantined", "retired"] + ["pending"] * 3)
            events.append(event(moved(name, to), minutes))
        elif roll < 0.95:
            response = EntropyResponseRecord(
                job_hash="entropy",
                recorded_at=at(minutes),
                entropy_at_trigger=0.1,
                threshold_used=0.3,
                actions_taken=["quarantine_revisit"],
                quarantine_revisits=2,
                patterns_revisited=[pid(x) for x in rng.sample(NAMES, 3)] + [pid("unknown")],
            )
            events.append(event(response, minutes))
        else:
            record = ExecutionRecord(
                id=f"exec-{rng.randrange(40)}",
                workspace_hash="w",
                job_hash="j",
                sheet_num=k,
                started_at=at(minutes),
                completed_at=at(minutes + 1),
                duration_seconds=60.0,
                status="completed",
                retry_count=rng.randint(0, 3),
                success_without_retry=rng.random() < 0.5,
                validation_pass_rate=rng.random(),
                confidence_score=0.5,
                model=None,
            )
            events.append(event(record, minutes))
    return events


async def _apply(db: Path, events: list[tuple[Envelope, str]], batch: int) -> tuple[str, list[int]]:
    rejected: list[int] = []
    async with Store(db) as store:
        for start in range(0, len(events), batch):
            result = await store.apply(events[start : start + batch])
            rejected += [start + r.index for r in result.rejected]
        return await store.checksum(), rejected


async def test_batch_boundaries_do_not_change_any_table(tmp_path: Path) -> None:
    events = mixed_workload(17)
    one, one_rejected = await _apply(tmp_path / "one.db", events, 1)
    big, big_rejected = await _apply(tmp_path / "big.db", events, 997)
    odd, odd_rejected = await _apply(tmp_path / "odd.db", events, 13)
    assert one_rejected, "the workload should include refused transitions"
    assert big_rejected == one_rejected == odd_rejected
    assert big == one == odd
    async with Store(tmp_path / "one.db") as store:
        assert await store.rebuild() == len(events) - len(one_rejected)
        assert await store.checksum() == one


async def test_observations_of_a_pattern_the_batch_holds_keep_its_priority_exact(tmp_path: Path) -> None:
    """An observation of a pattern the batch holds in memory updates it there (services/store/patterns.py:
    `observe`). Between 15 and 99 occurrences the priority still grows with the count (log10(n + 1) / 2 over
    the 0.6 floor), so a count left stale in the batch would show in the stored priority."""
    events = [event(observed("busy"), 0)]
    for k in range(60):
        events += [event(applied("busy", k % 3 != 0, 0.8), k + 1), event(observed("busy"), k + 1.5)]
    one, _ = await _apply(tmp_path / "one.db", events, 1)
    whole, _ = await _apply(tmp_path / "whole.db", events, len(events))
    assert whole == one
    row = pattern_row(tmp_path / "whole.db", pid("busy"))
    assert row["occurrence_count"] == 61
    expected = priority(row["effectiveness_score"], 61, row["variance"], LearningSettings())
    assert row["priority_score"] == expected
    assert expected > priority(row["effectiveness_score"], 20, row["variance"], LearningSettings())
