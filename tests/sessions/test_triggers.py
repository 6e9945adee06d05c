"""Triggers against a real Valkey: malformed entries go to the dead letters, a busy scope is retried, and the
cluster, scheduled and user-flag triggers each start a session; a session that fails is recorded as failed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis

from pheromone.contracts import Envelope, ExecutionRecord
from pheromone.contracts.sessions import SessionTrigger, TriggerKind
from pheromone.contracts.streams import FIELD, GROUP_CONSOLIDATOR, Keys
from pheromone.services.consolidator.runner import SessionRunner
from pheromone.services.settings import SessionsSettings
from pheromone.services.store.session_store import SessionStore
from tests.sessions import cli
from tests.sessions import helpers as h
from tests.sessions.conftest import StartRuntime
from tests.sessions.fleet import WORKSPACE, fleet
from tests.support import eventually


async def dead(redis: aioredis.Redis, prefix: str) -> list[dict[bytes, bytes]]:
    return [fields for _, fields in await redis.xrange(Keys(prefix).dead)]


async def test_malformed_triggers_are_dead_lettered_with_their_reason_and_a_good_one_still_runs(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    await start_runtime()
    keys = Keys(prefix)
    wrong_kind = Envelope(workspace=WORKSPACE, job="j", payload=fleet(jobs=1)[2].payload)
    bad_scope = Envelope(workspace=WORKSPACE, job="j", payload=SessionTrigger(trigger="on_demand", scope="ok"))  # type: ignore[arg-type]
    entries = [
        {FIELD: b"not json"},
        {b"other": b"field"},
        {FIELD: wrong_kind.model_dump_json()},
        {FIELD: bad_scope.model_dump_json().replace('"scope":"ok"', '"scope":"has space"')},
        {FIELD: bad_scope.model_dump_json().replace('"on_demand"', '"whenever"')},
        {FIELD: bad_scope.model_dump_json()},  # envelope workspace ws-fleet asks for scope "ok"
    ]
    for fields in entries:
        await redis.xadd(keys.triggers, fields)  # type: ignore[arg-type]
    letters = await eventually(lambda: _at_least(redis, prefix, 6), what="six dead letters")
    errors = sorted(f[b"error"].decode() for f in letters)
    assert all(f[b"group"] == GROUP_CONSOLIDATOR.encode() for f in letters)
    for needle in ("invalid envelope", "has no 'e' field", "not a session trigger: execution",
                   "payload.session_trigger.scope", "payload.session_trigger.trigger",
                   "cannot ask for a session in ok: only in its own"):
        assert any(needle in e for e in errors), (needle, errors)
    tid = await h.trigger(redis, prefix, WORKSPACE)
    found = await h.session_of(db, tid, "completed")  # nothing harvested: nothing to change
    assert h.read_session(str(found["path"])).report.no_edits_reason.startswith("nothing to change")


async def _at_least(redis: aioredis.Redis, prefix: str, n: int) -> list[dict[bytes, bytes]] | None:
    letters = await dead(redis, prefix)
    return letters if len(letters) >= n else None


async def test_a_busy_scope_is_retried_once_it_is_free(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    await start_runtime(max_deliveries=100)
    lock = Keys(prefix).sessions("lock", WORKSPACE)
    await redis.set(lock, "someone else", px=60_000)
    tid = await h.trigger(redis, prefix, WORKSPACE)
    await eventually(lambda: _delivered_more_than_once(redis, prefix), what="the trigger retried")
    assert h.rows(db, "SELECT COUNT(*) FROM session_index")[0][0] == 0  # never while the scope is held
    await redis.delete(lock)
    await h.session_of(db, tid, "completed")
    assert await dead(redis, prefix) == []


async def _delivered_more_than_once(redis: aioredis.Redis, prefix: str) -> bool:
    rows = await redis.xpending_range(Keys(prefix).triggers, GROUP_CONSOLIDATOR, "-", "+", 10)
    return bool(rows) and int(rows[0]["times_delivered"]) >= 2


def failing_runs(n: int, model: str = "model-x") -> list[Envelope]:
    now = datetime.now(UTC)
    return [Envelope(workspace=WORKSPACE, job=f"j{i % 3}", occurred_at=now, payload=ExecutionRecord(
        workspace_hash=WORKSPACE, job_hash=f"j{i % 3}", sheet_num=i, started_at=now - timedelta(seconds=1),
        completed_at=now, duration_seconds=1.0, status="failed" if i % 4 else "completed", retry_count=0,
        success_without_retry=False, validation_pass_rate=0.0, confidence_score=0.1, model=model))
        for i in range(n)]


async def test_a_failure_cluster_crossing_its_threshold_triggers_one_session(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    await start_runtime(sessions={"cluster_trigger_runs": 20, "cluster_trigger_rate": 0.5})
    await h.feed(redis, Keys(prefix).ingest, failing_runs(40))  # 30 of 40 fail, well inside one window
    await h.feed(redis, Keys(prefix).ingest, failing_runs(40))  # still over: the cooldown holds it to one
    await h.stored(db, 80)
    await eventually(lambda: h.rows(db, "SELECT trigger, status FROM session_state") == [("cluster", "completed")],
                     timeout=30, what="one cluster-triggered session")
    s = h.rows(db, "SELECT path FROM session_index")[0][0]
    assert "model-x" in (h.read_session(s).subject or "")


async def test_scheduled_triggers_cover_each_workspace_with_new_runs(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    await h.feed(redis, Keys(prefix).ingest, failing_runs(3))
    await start_runtime(sessions={"schedule_interval_s": 0.3})
    await h.stored(db, 3)
    await eventually(lambda: ("scheduled", WORKSPACE) in h.rows(db, "SELECT trigger, scope FROM session_state"),
                     timeout=30, what="a scheduled session")


async def test_flagging_a_run_starts_a_session_that_counts_it_as_a_failure(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    await start_runtime()
    runs = failing_runs(8)
    ok = next(e.payload for e in runs if e.payload.status == "completed")  # type: ignore[union-attr]
    await h.feed(redis, Keys(prefix).ingest, runs)
    await h.stored(db, 8)
    earlier = await h.trigger(redis, prefix, WORKSPACE)  # a session that harvests the run before it is flagged
    await h.session_of(db, earlier, "completed")
    sent = await cli.ok_json(tmp_path, "flag", ok.id, url=redis_url, prefix=prefix)  # type: ignore[union-attr]
    assert sent["workspace"] == WORKSPACE and sent["flagged"] == ok.id  # type: ignore[union-attr]
    found = await h.session_of(db, sent["trigger_id"], "completed")
    s = h.read_session(str(found["path"]))
    assert s.trigger is TriggerKind.USER_FLAG and s.subject == ok.id  # type: ignore[union-attr]
    # The run is older than the scope's last session: it is harvested again so that the flag counts.
    assert any(f"flagged:{ok.id}" in d.feedback_signals for d in s.digests)  # type: ignore[union-attr]


class ExplodingTeacher:
    name = "exploding"

    def propose(self, lesson: object) -> list[object]:
        raise RuntimeError("the teacher fell over")


async def test_a_session_that_fails_is_recorded_as_failed(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis, tmp_path: Path
) -> None:
    await start_runtime(services=("store",))
    await h.feed(redis, Keys(prefix).ingest, fleet(jobs=4))
    await h.stored(db, 100)

    async def emit(events: list[Envelope]) -> None:
        await h.feed(redis, Keys(prefix).ingest, events)

    view = SessionStore(db)
    try:
        runner = SessionRunner(view, emit, tmp_path / "sessions", SessionsSettings(), ExplodingTeacher())  # type: ignore[arg-type]
        s = await runner.run(SessionTrigger(trigger=TriggerKind.ON_DEMAND, scope=WORKSPACE), "trigger-1")
        assert s.status.value == "failed" and "the teacher fell over" in (s.error or "")
        assert view.session_status(s.id) == (s.status, WORKSPACE)  # the store has the failed transition
        assert view.active_sessions(WORKSPACE) == []  # and the scope is free again
    finally:
        view.close()


async def test_a_session_abandoned_by_a_dead_consolidator_is_failed_by_the_next_one(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    from pheromone.contracts.sessions import SessionTransitioned

    await start_runtime()
    stale = [Envelope(workspace=WORKSPACE, job="consolidator", payload=SessionTransitioned(
        session_id="s-dead", scope=WORKSPACE, to_status=to, trigger="on_demand" if to == "triggered" else None))  # type: ignore[arg-type]
        for to in ("triggered", "harvesting")]
    await h.feed(redis, Keys(prefix).ingest, stale)
    await h.stored(db, 2)
    tid = await h.trigger(redis, prefix, WORKSPACE)  # its lock expired with it: the scope is free
    await h.session_of(db, tid, "completed")
    assert h.rows(db, "SELECT status FROM session_state WHERE session_id = 's-dead'") == [("failed",)]
    reason = h.rows(db, "SELECT reason FROM session_transitions WHERE session_id = 's-dead' AND to_status = 'failed'")
    assert "abandoned in harvesting" in reason[0][0]


async def test_a_session_whose_last_events_were_dead_lettered_does_not_hold_its_scope_for_good(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    """Its owner is gone and its next move can never apply (here: sent from a status it never reached, refused
    until the retry bound, then dead-lettered): the next trigger of the scope fails it and starts its own."""
    from pheromone.contracts.sessions import SessionTransitioned

    await start_runtime(max_deliveries=2)
    stuck = [SessionTransitioned(session_id="s-stuck", scope=WORKSPACE, to_status="triggered", trigger="on_demand"),  # type: ignore[arg-type]
             SessionTransitioned(session_id="s-stuck", scope=WORKSPACE, to_status="harvesting",  # type: ignore[arg-type]
                                 from_status="triggered"),
             SessionTransitioned(session_id="s-stuck", scope=WORKSPACE, to_status="planning",  # type: ignore[arg-type]
                                 from_status="diagnosing")]  # its diagnosing was lost with its owner
    await h.feed(redis, Keys(prefix).ingest, [Envelope(workspace=WORKSPACE, job="consolidator", payload=p)
                                              for p in stuck])
    letters = await eventually(lambda: dead(redis, prefix), what="the move that waited for diagnosing dead-lettered")
    assert b"waits for the move to diagnosing" in letters[0][b"error"] and letters[0][b"deliveries"] == b"2"
    assert h.rows(db, "SELECT status FROM session_state WHERE session_id = 's-stuck'") == [("harvesting",)]
    tid = await h.trigger(redis, prefix, WORKSPACE)
    await h.session_of(db, tid, "completed")
    assert h.rows(db, "SELECT status FROM session_state WHERE session_id = 's-stuck'") == [("failed",)]


async def test_the_consolidator_runs_alone(start_runtime: StartRuntime, db: Path, prefix: str,
                                           redis: aioredis.Redis) -> None:
    runtime = await start_runtime(services=("consolidator",))  # `pheromone serve --only consolidator`
    assert runtime.names == ("consolidator",)
    assert h.rows(db, "SELECT COUNT(*) FROM session_state") == [(0,)]  # it made the migrated store it reads
    keys = Keys(prefix)
    groups = {s: [g["name"] for g in await redis.xinfo_groups(s)] for s in (keys.triggers, keys.ingest)}
    assert groups == {Keys(prefix).triggers: [b"consolidator"], Keys(prefix).ingest: [b"consolidator"]}
