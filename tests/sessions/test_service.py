"""The consolidator against a real Valkey and a real SQLite file: a simulated fleet with a planted cause goes
through the store, a trigger starts a session, and the session finds the cause, proposes the right edit, the
gate accepts it, and staging, approval and rollback change what jobs are served."""

from __future__ import annotations

import json
from pathlib import Path

import redis.asyncio as aioredis

from contracts.sessions import AutonomyMode, LearningSession
from contracts.streams import Keys
from tests.sessions import helpers as h
from tests.sessions.conftest import StartRuntime
from tests.sessions.fleet import PLANTED, WORKSPACE, fleet


async def test_session_finds_the_planted_cause_and_stages_the_right_edit(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    await start_runtime()
    events = fleet(recoveries=True)
    await h.feed(redis, Keys(prefix).ingest, events)
    await h.stored(db, len(events))
    tid = await h.trigger(redis, prefix, WORKSPACE)
    found = await h.session_of(db, tid, "awaiting_review", "completed", "failed")
    s = LearningSession.model_validate_json(Path(found["path"]).read_text())
    assert s.status.value == "awaiting_review", s.error
    staged = [o for o in s.outcomes if o.status.value == "staged"]
    assert [(o.edit.op.value, o.edit.target, o.edit.model) for o in staged] == [
        ("set_pattern_status", PLANTED, "model-b")
    ]
    print(json.dumps([(o.edit.op.value, o.status.value, o.reason) for o in s.outcomes], indent=1))
    assert AutonomyMode.TIERED == s.autonomy
