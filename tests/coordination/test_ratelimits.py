"""Rate limits across workspaces: one report, every job sees it at once, it expires when the limit does.

Real server, in-process services (store + coordinator + broadcaster), one key prefix per test.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from pheromone import Pheromone
from pheromone.contracts import RateLimitEvent
from pheromone.contracts.broadcast import BroadcastKind, RateLimitNotice, RateLimitStatus
from pheromone.contracts.streams import Keys
from tests.coordination.conftest import StartRuntime
from tests.coordination.helpers import Collector, count, eventually
from tests.support import OpenClient

SERVICES = ["store", "coordinator", "broadcaster"]


async def fleet(open_client: OpenClient, workspaces: int = 5, jobs: int = 4) -> list[Pheromone]:
    return [
        await open_client(f"job-{w}-{j}", workspace=f"ws-{w}") for w in range(workspaces) for j in range(jobs)
    ]


async def active(client: Pheromone, model: str, code: str | None = None) -> RateLimitStatus | None:
    status = await client.rate_limit(model, code)
    return status if status.active else None


async def test_a_limit_reported_by_one_job_is_seen_by_all_20_jobs_in_5_workspaces(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path
) -> None:
    await start_runtime(SERVICES)
    jobs = await fleet(open_client)
    collectors = [Collector(job.subscribe(kinds=["rate_limit"])) for job in jobs]
    reporter = jobs[7]

    event_id = reporter.report_rate_limit("claude-sonnet", "429", 30.0)

    for job in jobs:
        status = await eventually(
            lambda job=job: active(job, "claude-sonnet"), what=f"limit seen by {job.job}"
        )
        assert status.reported_by == reporter.job and status.workspace == reporter.workspace
        assert status.reported_error_code == "429" and status.duration_seconds == 30.0
        assert 25.0 < status.seconds_left <= 30.0
        by_code = await job.rate_limit("claude-sonnet", "429")
        assert by_code.active and by_code.expires_at == status.expires_at
        assert not (await job.rate_limit("claude-sonnet", "529")).active
        assert not (await job.rate_limit("claude-haiku")).active
    # Announced on the broadcast stream to every other job (a job's own report is not echoed back to it).
    for job, col in zip(jobs, collectors, strict=True):
        if job is reporter:
            continue
        await eventually(lambda col=col: col.messages, what=f"notice received by {job.job}")
        [msg] = col.messages
        assert msg.kind is BroadcastKind.RATE_LIMIT and isinstance(msg.body, RateLimitNotice)
        assert (msg.body.model, msg.body.error_code, msg.body.reported_by) == (
            "claude-sonnet",
            "429",
            reporter.job,
        )
        assert msg.id == event_id
    assert collectors[7].messages == []
    # ... and recorded in the ledger by the store.
    await eventually(lambda: count(db, "rate_limit_events") == 1, what="report in the ledger")
    for col in collectors:
        await col.stop()


async def test_a_limit_expires_with_its_duration_and_is_never_reported_active_after(
    start_runtime: StartRuntime, open_client: OpenClient, prefix: str, redis: aioredis.Redis
) -> None:
    await start_runtime(SERVICES)
    reporter, other = await open_client("job-a"), await open_client("job-b", workspace="ws-1")
    reporter.report_rate_limit("gpt-large", "429", 0.8)
    status = await eventually(lambda: active(other, "gpt-large"), what="limit visible")
    assert status.expires_at is not None
    expires = status.expires_at
    assert len(await other.rate_limits()) == 1

    # Every answer until it is inactive says active only before the expiry; after it, never active again.
    while True:
        # Time taken before the call: an "active" answer is given at or after it, so it must precede the
        # expiry whatever the scheduler does between the answer and this check.
        before = datetime.now(UTC)
        if not (await other.rate_limit("gpt-large")).active:
            break
        assert before < expires
        await asyncio.sleep(0.01)
    assert datetime.now(UTC) >= expires - timedelta(milliseconds=50)
    for _ in range(20):
        assert not (await other.rate_limit("gpt-large")).active
        assert not (await other.rate_limit("gpt-large", "429")).active
    assert await other.rate_limits() == []
    # Nothing is left behind: the live keys are gone and the index is pruned on the next write or read.
    keys = Keys(prefix)
    assert await redis.exists(keys.rate_limit("gpt-large"), keys.rate_limit("gpt-large", "429")) == 0


async def test_overlapping_reports_never_shorten_a_limit_latest_expiry_wins(
    start_runtime: StartRuntime, open_client: OpenClient
) -> None:
    await start_runtime(SERVICES)
    a, b, c = [await open_client(f"job-{i}", workspace=f"ws-{i}") for i in range(3)]
    a.report_rate_limit("m", "429", 60.0)
    first = await eventually(lambda: active(c, "m"), what="first report")
    assert first.reported_by == "job-0"

    b.report_rate_limit("m", "429", 5.0)  # shorter: ignored
    b.report_rate_limit("m", "529", 10.0)  # another code, shorter than the model's limit
    await eventually(lambda: active(c, "m", "529"), what="529 limit")
    status = await c.rate_limit("m")
    assert (
        status.reported_by == "job-0" and status.expires_at == first.expires_at and status.seconds_left > 50
    )
    assert (await c.rate_limit("m", "429")).expires_at == first.expires_at
    assert 5 < (await c.rate_limit("m", "529")).seconds_left <= 10

    b.report_rate_limit("m", "529", 120.0)  # longer: extends the 529 limit and the model's
    await eventually(lambda: _longer(c, "m", first), what="model limit extended")
    status = await c.rate_limit("m")
    assert status.reported_by == "job-1" and status.reported_error_code == "529" and status.seconds_left > 100
    assert (await c.rate_limit("m", "429")).expires_at == first.expires_at
    assert sorted((s.error_code, s.reported_by) for s in await c.rate_limits()) == [
        ("429", "job-0"),
        ("529", "job-1"),
    ]


async def _longer(client: Pheromone, model: str, than: RateLimitStatus) -> bool:
    status = await client.rate_limit(model)
    return bool(
        status.active and status.expires_at and than.expires_at and status.expires_at > than.expires_at
    )


async def test_reports_arriving_out_of_order_keep_the_latest_expiry(
    start_runtime: StartRuntime, open_client: OpenClient
) -> None:
    """Two jobs' reports reach the coordinator longest first (one batch): the shorter one changes nothing."""
    a = await open_client("job-a")
    now = datetime.now(UTC)
    long_ = RateLimitEvent(
        error_code="429",
        model="m",
        recorded_at=now,
        expires_at=now + timedelta(seconds=90),
        source_job_hash="job-long",
        duration_seconds=90.0,
    )
    short = RateLimitEvent(
        error_code="429",
        model="m",
        recorded_at=now + timedelta(seconds=1),
        expires_at=now + timedelta(seconds=31),
        source_job_hash="job-short",
        duration_seconds=30.0,
    )
    a.emit(long_)
    a.emit(short)
    await a.flush()
    await start_runtime(SERVICES)
    status = await eventually(lambda: active(a, "m", "429"), what="limit")
    await eventually(lambda: _coordinator_done(a), what="both reports consumed")
    assert status.reported_by == "job-long" and status.seconds_left > 80


async def _coordinator_done(client: Pheromone) -> bool:
    from pheromone.contracts.streams import GROUP_COORDINATOR

    redis = client._live_redis()
    for info in await redis.xinfo_groups(client.keys.ratelimits):
        if info["name"].decode() == GROUP_COORDINATOR:
            return bool(info["lag"] == 0 and info["pending"] == 0)
    return False


async def test_a_report_that_has_already_expired_is_never_active_nor_announced(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path
) -> None:
    await start_runtime(SERVICES)
    a, b = await open_client("job-a"), await open_client("job-b")
    col = Collector(b.subscribe())
    then = datetime.now(UTC) - timedelta(minutes=5)
    a.emit(
        RateLimitEvent(
            error_code="429",
            model="stale",
            recorded_at=then,
            expires_at=then + timedelta(seconds=60),
            source_job_hash="job-a",
            duration_seconds=60.0,
        )
    )
    a.report_rate_limit("fresh", "429", 30.0)  # a marker behind it in the same stream
    await eventually(lambda: active(b, "fresh"), what="the report after it")
    await eventually(lambda: count(db, "rate_limit_events") == 2, what="both recorded in the ledger")
    assert not (await b.rate_limit("stale")).active
    assert [s.model for s in await b.rate_limits()] == ["fresh"]
    await eventually(lambda: col.messages, what="fresh notice")
    assert [m.body.model for m in col.messages] == ["fresh"]  # type: ignore[union-attr]
    await col.stop()


async def test_wait_until_free_returns_when_the_limit_expires_or_false_at_the_timeout(
    start_runtime: StartRuntime, open_client: OpenClient
) -> None:
    await start_runtime(SERVICES)
    a, b = await open_client("job-a"), await open_client("job-b", workspace="ws-9")
    assert await b.wait_until_free("m", timeout=0.1) is True  # nothing reported: free at once
    a.report_rate_limit("m", "429", 1.0)
    status = await eventually(lambda: active(b, "m"), what="limit")
    assert await b.wait_until_free("m", timeout=0.05) is False
    started = time.monotonic()
    assert await b.wait_until_free("m", timeout=10) is True
    assert status.expires_at is not None and datetime.now(UTC) >= status.expires_at - timedelta(
        milliseconds=20
    )
    # It returned because the limit expired (after ~1 s), not at its 10 s timeout; the bound is loose on
    # purpose: this checks behaviour, not speed.
    assert time.monotonic() - started < 9.0


async def test_the_coordinator_restarted_keeps_live_limits_and_applies_what_arrived_meanwhile(
    start_runtime: StartRuntime, open_client: OpenClient
) -> None:
    runtime = await start_runtime(SERVICES)
    a, b = await open_client("job-a"), await open_client("job-b")
    a.report_rate_limit("m1", "429", 60.0)
    await eventually(lambda: active(b, "m1"), what="first limit")
    await runtime.stop()
    # A report that only the coordinator can apply (emitted as a plain record, as a non-Python producer or a
    # spool replay would send it), while no coordinator runs.
    now = datetime.now(UTC)
    a.emit(
        RateLimitEvent(
            error_code="429",
            model="m2",
            recorded_at=now,
            expires_at=now + timedelta(seconds=60),
            source_job_hash="job-a",
            duration_seconds=60.0,
        )
    )
    await a.flush()
    assert (await b.rate_limit("m1")).active  # state lives in Redis, not in the service
    assert not (await b.rate_limit("m2")).active
    await start_runtime(SERVICES)
    await eventually(lambda: active(b, "m2"), what="limit reported during the restart")


async def test_the_reporters_fast_path_makes_a_limit_visible_without_the_coordinator(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path
) -> None:
    """report_rate_limit() applies the coordinator's script itself; the coordinator, when it reads the report,
    changes nothing and announces it once."""
    a, b = await open_client("job-a"), await open_client("job-b", workspace="ws-1")
    col = Collector(b.subscribe(kinds=["rate_limit"]))
    a.report_rate_limit("m", "429", 60.0)
    status = await eventually(lambda: active(b, "m"), what="visible with no service running")
    await eventually(lambda: col.messages, what="announced by the fast path")
    await start_runtime(SERVICES)
    await eventually(lambda: _coordinator_done(a), what="coordinator consumed the report")
    await eventually(lambda: count(db, "rate_limit_events") == 1, what="recorded in the ledger")
    assert (await b.rate_limit("m")).expires_at == status.expires_at
    assert len(col.messages) == 1  # not announced a second time
    await col.stop()


@pytest.mark.parametrize(
    "duration",
    [0.0, -1.0, 86_400.5, float("nan"), float("inf")],
    ids=["zero", "negative", "over-a-day", "nan", "inf"],
)
async def test_an_impossible_duration_is_refused_at_the_call(
    open_client: OpenClient, duration: float
) -> None:
    a = await open_client("job-a")
    with pytest.raises(ValidationError):
        a.report_rate_limit("m", "429", duration)
    assert a.stats.emitted == 0
