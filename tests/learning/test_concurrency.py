"""Many concurrent producers applying the same patterns through real Redis and the store service:
exact counts, and the same derived values as a sequential replay of the same events."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import time
from pathlib import Path

import pytest

from pheromone.contracts import SuccessFactors, parse_envelope
from pheromone.services.settings import Settings
from pheromone.services.store.db import Store
from tests.learning.conftest import StartRuntime
from tests.learning.helpers import applied, at, observed, pid, rows
from tests.support import OpenClient

PRODUCERS = 24
APPLICATIONS_EACH = 60
NAMES = [f"shared pattern {i}" for i in range(5)]
RATES = [0.9, 0.7, 0.5, 0.3, 0.1]
DERIVED = (
    "led_to_success_count",
    "led_to_failure_count",
    "occurrence_count",
    "effectiveness_score",
    "variance",
    "priority_score",
    "last_confirmed_us",
    "last_applied_us",
    "success_factors",
)


async def wait_for_ledger(db: Path, expected: int, within_s: float = 60.0) -> None:
    deadline = time.monotonic() + within_s
    count = -1
    while time.monotonic() < deadline:
        if db.exists():  # noqa: ASYNC240 - a stat, in a test's poll loop
            count = rows(db, "SELECT COUNT(*) FROM ledger")[0][0]
            if count >= expected:
                return
        await asyncio.sleep(0.05)
    raise AssertionError(f"ledger holds {count} events, expected {expected}")


def derived(db: Path) -> dict[str, tuple]:
    conn = sqlite3.connect(db)
    try:
        out = {}
        for name in NAMES:
            row = conn.execute(
                f"SELECT {', '.join(DERIVED)} FROM patterns WHERE id = ?", (pid(name),)
            ).fetchone()
            out[name] = tuple(round(v, 12) if isinstance(v, float) else v for v in row)
        return out
    finally:
        conn.close()


@pytest.mark.slow
async def test_concurrent_producers_match_a_sequential_replay(
    runtime: StartRuntime, open_client: OpenClient, learning_settings: Settings, tmp_path: Path
) -> None:
    await runtime()
    db = learning_settings.store_path
    expected_ok = {name: 0 for name in NAMES}
    expected_n = {name: 0 for name in NAMES}

    async def producer(k: int) -> int:
        client = await open_client(f"job-{k}", workspace=f"ws-{k % 4}")
        rng = random.Random(k)
        sent = 0
        for name in NAMES:
            client.emit(observed(name, tags=[f"t{k % 3}"]), occurred_at=at(0))
            sent += 1
        for j in range(APPLICATIONS_EACH):
            i = rng.randrange(len(NAMES))
            ok = rng.random() < RATES[i]
            expected_ok[NAMES[i]] += ok
            expected_n[NAMES[i]] += 1
            factors = SuccessFactors(
                error_categories=[rng.choice(["auth", "rate_limit"])], retry_iteration=j % 3
            )
            # distinct event times across producers, so "the last five" is well defined by time alone
            client.emit(
                applied(NAMES[i], ok, round(rng.uniform(0.3, 1.0), 3), factors=factors),
                occurred_at=at(1 + j + k / 100),
            )
            sent += 1
            if j % 7 == 0:
                await asyncio.sleep(0)  # interleave producers
        await client.flush(timeout=30)
        return sent

    total = sum(await asyncio.gather(*(producer(k) for k in range(PRODUCERS))))
    await wait_for_ledger(db, total)

    # exact counts: nothing lost, nothing applied twice
    for name in NAMES:
        row = rows(
            db,
            "SELECT led_to_success_count, led_to_failure_count, occurrence_count FROM patterns WHERE id = ?",
            pid(name),
        )[0]
        assert row == (expected_ok[name], expected_n[name] - expected_ok[name], PRODUCERS), name
    assert rows(db, "SELECT SUM(applications) FROM pattern_counts")[0][0] == PRODUCERS * APPLICATIONS_EACH
    assert rows(db, "SELECT total, unique_patterns, effective_patterns FROM entropy_state") == [
        (PRODUCERS * APPLICATIONS_EACH, len(NAMES), len(NAMES))
    ]

    # a sequential replay of the same events, one at a time in event-time order, reaches the same state
    bodies = [b for (b,) in rows(db, "SELECT body FROM ledger")]
    envelopes = sorted((parse_envelope(b) for b in bodies), key=lambda e: (e.occurred_at, e.event_id))
    replay = tmp_path / "replay.db"
    async with Store(replay, learning=learning_settings.learning) as store:
        for env in envelopes:
            assert (await store.apply([(env, env.model_dump_json())])).rejected == []
    assert derived(replay) == derived(db)
    assert rows(replay, "SELECT * FROM pattern_drift ORDER BY 1") == rows(
        db, "SELECT * FROM pattern_drift ORDER BY 1"
    )
    assert rows(replay, "SELECT * FROM success_factor_counts ORDER BY 1, 2, 3") == rows(
        db, "SELECT * FROM success_factor_counts ORDER BY 1, 2, 3"
    )
