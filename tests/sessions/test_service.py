"""The consolidator end to end, against a real Valkey and a real SQLite file: the simulated fleet goes through
the store, a trigger starts a session, and what the session staged, approval, rejection and rollback change
what jobs are served (through the query service and the client)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio as aioredis

from pheromone.contracts.sessions import AutonomyMode, EditOp, EditStatus
from pheromone.contracts.streams import Keys
from pheromone.services.store.db import Store
from tests.sessions import cli
from tests.sessions import helpers as h
from tests.sessions.conftest import StartRuntime
from tests.sessions.fleet import PLANTED, WORKSPACE, fleet
from tests.support import OpenClient

FINAL = ("awaiting_review", "completed", "failed")


async def run_session(redis: aioredis.Redis, prefix: str, db: Path, autonomy: AutonomyMode | None = None,
                      recoveries: bool = True) -> dict[str, object]:
    events = fleet(recoveries=recoveries)
    await h.feed(redis, Keys(prefix).ingest, events)
    await h.stored(db, len(events))
    tid = await h.trigger(redis, prefix, WORKSPACE, autonomy=autonomy)
    return await h.session_of(db, tid, *FINAL)


def served(guidance: dict[str, object]) -> set[str]:
    return {p["id"] for p in guidance["patterns"]}  # type: ignore[attr-defined, index]


async def test_approving_a_staged_edit_changes_what_jobs_are_served(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, prefix: str, redis: aioredis.Redis,
    redis_url: str, tmp_path: Path,
) -> None:
    await start_runtime()
    hand = tmp_path / "hand.md"
    hand.write_text("# ws-fleet playbook\n\nAlways run the linter first.\n")
    await cli.ok_json(tmp_path, "playbook", "--workspace", WORKSPACE, "--set", str(hand), url=redis_url,
                      prefix=prefix)
    found = await run_session(redis, prefix, db)
    s = h.read_session(str(found["path"]))
    assert s.status.value == "awaiting_review", s.error
    staged = [o.edit for o in s.outcomes if o.status is EditStatus.STAGED]
    # the block (review tier) and the auto-tier playbook line that documents it, staged with it
    assert [(e.op, e.target, e.model, e.supports) for e in staged] == [
        (EditOp.SET_PATTERN_STATUS, PLANTED, "model-b", None), (EditOp.PLAYBOOK_ADD, None, None, staged[0].id)]

    job_b = await open_client("job-b")
    assert PLANTED in served(await job_b.guidance("model-b"))  # staged: not served yet
    book = await job_b.playbook()
    assert book.startswith(hand.read_text()) and PLANTED not in book  # nor the line that documents it
    listed = await cli.ok_json(tmp_path, "review", "list", "--db", str(db))
    assert [(x["session_id"], x["id"]) for x in listed] == [(s.id, e.id) for e in staged]

    early = await asyncio_run_cli(tmp_path, "review", "approve", s.id, staged[1].id, url=redis_url, prefix=prefix)
    early.assert_clean_failure(f"supports edit {staged[0].id}, which is staged")
    done = await cli.ok_json(tmp_path, "review", "approve", s.id, staged[0].id, url=redis_url, prefix=prefix)
    assert done == {"session_id": s.id, "edit_id": staged[0].id, "status": "applied",
                    "session_status": "awaiting_review"}
    assert PLANTED not in served(await job_b.guidance("model-b"))
    assert PLANTED in served(await job_b.guidance("model-a"))  # it still helps there, and is still served
    done = await cli.ok_json(tmp_path, "review", "approve", s.id, staged[1].id, url=redis_url, prefix=prefix)
    assert done["session_status"] == "completed"
    assert f"`{PLANTED}` on model-b" in await job_b.playbook()
    record = h.read_session(str(found["path"]))
    assert record.status.value == "completed"
    assert next(o for o in record.outcomes if o.edit.id == staged[0].id).decided_by.startswith("operator:")
    assert await cli.ok_json(tmp_path, "review", "list", "--db", str(db)) == []
    # The human-readable views work too, and the playbook is printed verbatim, as jobs are served it.
    shown = await asyncio.to_thread(cli.run, tmp_path, "sessions", "show", s.id)
    assert shown.code == 0 and staged[0].id in shown.out, str(shown)
    assert f"mined {s.report.n_tasks} task(s)" in shown.out and s.report.n_tasks > 0, str(shown)
    detail = await asyncio.to_thread(cli.run, tmp_path, "review", "show", s.id, staged[0].id)
    assert detail.code == 0 and "status: applied" in detail.out, str(detail)
    printed = await asyncio.to_thread(cli.run, tmp_path, "playbook", "--workspace", WORKSPACE)
    assert printed.code == 0 and printed.out == await job_b.playbook(), str(printed)


async def test_rejecting_an_edit_rejects_the_staged_edits_that_support_it(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, prefix: str, redis: aioredis.Redis,
    redis_url: str, tmp_path: Path,
) -> None:
    await start_runtime()
    found = await run_session(redis, prefix, db, recoveries=False)
    s = h.read_session(str(found["path"]))
    parent, child = [o.edit for o in s.outcomes if o.status is EditStatus.STAGED]
    assert child.supports == parent.id
    done = await cli.ok_json(tmp_path, "review", "reject", s.id, parent.id, "--reason", "no", url=redis_url,
                             prefix=prefix)
    assert done["status"] == "rejected" and done["session_status"] == "completed"
    assert h.rows(db, "SELECT edit_id, status FROM session_edits WHERE session_id = ? ORDER BY seq", s.id)[-2:] == [
        (parent.id, "rejected"), (child.id, "rejected")]
    assert PLANTED not in await (await open_client("job")).playbook()
    record = h.read_session(str(found["path"]))
    assert {o.edit.id: o.status for o in record.outcomes}[child.id] is EditStatus.REJECTED


async def test_rejecting_records_why_and_rollback_restores_the_exact_previous_guidance(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, prefix: str, redis: aioredis.Redis,
    redis_url: str, tmp_path: Path,
) -> None:
    await start_runtime()
    before = h.guidance_checksum(db)  # the store service has created and migrated the file
    found = await run_session(redis, prefix, db, autonomy=AutonomyMode.AUTO)
    s = h.read_session(str(found["path"]))
    assert s.status.value == "completed", s.error
    applied = [o.edit for o in s.outcomes if o.status is EditStatus.APPLIED]
    assert {e.op for e in applied} == {EditOp.SET_PATTERN_STATUS, EditOp.PLAYBOOK_ADD, EditOp.SET_WAIT_POLICY}
    assert h.guidance_checksum(db) != before
    job = await open_client("job-b")
    assert PLANTED not in served(await job.guidance("model-b"))
    assert (await job.guidance("model-b"))["waits"] == [{"error_code": "429", "model": "model-b", "seconds": 20.0}]

    async with Store(db) as store:  # the session's events rebuild to the same projections
        checksum = await store.checksum()
        await store.rebuild()
        assert await store.checksum() == checksum

    result = await cli.ok_json(tmp_path, "sessions", "rollback", s.id, "--reason", "test", url=redis_url, prefix=prefix)
    assert result["status"] == "rolled_back" and set(result["rolled_back"]) == {e.id for e in applied}
    assert h.guidance_checksum(db) == before  # exactly the guidance before the session
    assert PLANTED in served(await job.guidance("model-b"))
    assert "split the prompt" not in await job.playbook()
    again = await asyncio_run_cli(tmp_path, "sessions", "rollback", s.id, url=redis_url, prefix=prefix)
    again.assert_clean_failure("illegal session transition rolled_back -> rolled_back")


async def test_rollback_never_touches_the_hand_written_playbook(
    start_runtime: StartRuntime, db: Path, prefix: str, redis: aioredis.Redis, redis_url: str, tmp_path: Path,
) -> None:
    await start_runtime()
    first = h.read_session(str((await run_session(redis, prefix, db, autonomy=AutonomyMode.AUTO))["path"]))
    after_first = h.guidance_checksum(db, WORKSPACE)
    hand = tmp_path / "hand.md"
    hand.write_text("hand\n")
    await cli.ok_json(tmp_path, "playbook", "--workspace", WORKSPACE, "--set", str(hand), url=redis_url, prefix=prefix)
    with_hand = h.guidance_checksum(db, WORKSPACE)
    assert with_hand != after_first
    await cli.ok_json(tmp_path, "sessions", "rollback", first.id, url=redis_url, prefix=prefix)
    assert h.rows(db, "SELECT pillar, key FROM guidance") == []
    assert h.rows(db, "SELECT hand FROM playbooks") == [("hand\n",)]  # the hand-written text is never touched


async def asyncio_run_cli(data_dir: Path, *args: str, url: str, prefix: str) -> cli.Run:
    return await asyncio.to_thread(cli.run, data_dir, *args, url=url, prefix=prefix)
