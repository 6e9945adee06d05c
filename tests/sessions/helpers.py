"""What the session tests share: feeding envelopes to streams, reading the store and the artifacts."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from pheromone.contracts import Envelope
from pheromone.contracts.sessions import AutonomyMode, SessionTrigger, TriggerKind
from pheromone.contracts.streams import FIELD, Keys
from tests.support import eventually, store_rows


async def feed(redis: aioredis.Redis, stream: str, events: Sequence[Envelope]) -> None:
    """XADD envelopes as a producer writes them, in pipelined chunks."""
    for i in range(0, len(events), 500):
        async with redis.pipeline(transaction=False) as pipe:
            for env in events[i : i + 500]:
                pipe.xadd(stream, {FIELD: env.model_dump_json()})
            await pipe.execute()


rows = store_rows


def ledger_count(db: Path) -> int:
    return int(rows(db, "SELECT COUNT(*) FROM ledger")[0][0]) if db.exists() else 0


async def stored(db: Path, n: int) -> None:
    await eventually(lambda: ledger_count(db) >= n, timeout=60, what=f"{n} events stored")


async def trigger(redis: aioredis.Redis, prefix: str, scope: str, kind: TriggerKind = TriggerKind.ON_DEMAND,
                  autonomy: AutonomyMode | None = None, subject: str | None = None) -> str:
    env = Envelope(workspace=scope, job="tests", payload=SessionTrigger(trigger=kind, scope=scope, subject=subject,
                                                                      autonomy=autonomy, requested_by="tests"))
    await feed(redis, Keys(prefix).triggers, [env])
    return env.event_id


async def session_of(db: Path, trigger_id: str, *statuses: str) -> dict[str, Any]:
    """The indexed session a trigger started, once it reaches one of `statuses` and the store has applied its
    last transition."""

    def look() -> dict[str, Any] | None:
        found = rows(db, "SELECT session_id, status, path FROM session_index WHERE trigger_id = ?", trigger_id)
        if not found or found[0][1] not in statuses:
            return None
        state = rows(db, "SELECT status FROM session_state WHERE session_id = ?", found[0][0])
        if not state or state[0][0] != found[0][1]:
            return None
        return {"id": found[0][0], "status": found[0][1], "path": found[0][2]}

    return await eventually(look, timeout=60, what=f"session of trigger {trigger_id} in {statuses}")


def read_session(path: str) -> Any:
    from pheromone.contracts.sessions import LearningSession

    return LearningSession.model_validate_json(Path(path).read_bytes())


def guidance_checksum(db: Path, workspace: str | None = None) -> str:
    from pheromone.services.store.session_store import guidance_checksum as checksum

    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return checksum(conn, workspace)
    finally:
        conn.close()
