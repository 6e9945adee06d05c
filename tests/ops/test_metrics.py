"""Prometheus metrics: after a known workload, `/metrics` scraped over HTTP holds the right counts (events
applied, dead letters, batch sizes, handler latencies, broadcasts, rate-limit announcements, entropy responses)
and the lag and pending gauges. Each runtime has its own registry. Real server, real store file."""

from __future__ import annotations

import asyncio
import socket
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis.asyncio as aioredis
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from pheromone import Pheromone
from pheromone.contracts import (
    Envelope,
    EventQuery,
    ExecutionRecord,
    PatternApplied,
    PatternDiscoveryEvent,
    PatternObserved,
    RateLimitEvent,
    pattern_id,
)
from pheromone.contracts.streams import FIELD, Keys
from tests.ops.conftest import StartRuntime
from tests.support import eventually

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def scrape(port: int) -> Samples:
    def get() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            return response.read().decode()

    text = await asyncio.to_thread(get)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def envelope(payload: object) -> str:
    return Envelope(workspace="ws-m", job="job-m", payload=payload).model_dump_json()  # type: ignore[arg-type]


def execution(n: int) -> ExecutionRecord:
    done = datetime.now(UTC)
    return ExecutionRecord(workspace_hash="ws-m", job_hash="job-m", sheet_num=n,
                           started_at=done - timedelta(seconds=2), completed_at=done, duration_seconds=2.0,
                           status="completed", retry_count=0, success_without_retry=True,
                           validation_pass_rate=1.0, confidence_score=0.9, model="claude-sonnet")


async def test_metrics_after_a_known_workload(
    start_runtime: StartRuntime, redis: aioredis.Redis, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    keys, port, n = Keys(prefix), free_port(), 50
    runtime = await start_runtime(["store", "query", "coordinator", "broadcaster", "entropy"],
                                  metrics_port=port, metrics_interval_s=0.1, batch_size=20)
    assert runtime.metrics.registry is not REGISTRY  # a registry per runtime, never the global one
    await redis.xgroup_create(keys.ingest, "audit", id="0")  # a group nobody reads: its lag is the stream's
    now = datetime.now(UTC)
    limit = RateLimitEvent(error_code="429", model="m-1", recorded_at=now, expires_at=now + timedelta(minutes=5),
                           source_job_hash="job-m", duration_seconds=300.0)
    discovery = PatternDiscoveryEvent(
        pattern_id=pattern_id("retry_pattern", "back off"), pattern_name="back off", pattern_type="retry_pattern",
        source_job_hash="job-m", recorded_at=now, expires_at=now + timedelta(minutes=5), effectiveness_score=0.7)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xadd(keys.ingest, {FIELD: b"\x00 poison"})
        for i in range(n):
            pipe.xadd(keys.ingest, {FIELD: envelope(execution(i))})
        pipe.xadd(keys.ratelimits, {FIELD: envelope(limit)})
        pipe.xadd(keys.discoveries, {FIELD: envelope(discovery)})
        await pipe.execute()
    async with Pheromone(redis_url, workspace="ws-m", job="asker", prefix=prefix, data_dir=tmp_path,
                         spool_dir=tmp_path / "spool") as client:
        async def ledger_has_all() -> bool:
            return len(await client.events(EventQuery(workspace="ws-m", limit=1_000))) == n + 2

        await eventually(ledger_has_all, what="every event in the ledger")

    async def settled() -> Samples | None:
        s = await scrape(port)
        # The audit group's lag is the whole stream only in a refresh made after every entry was sent.
        done = (value(s, "pheromone_group_lag", stream="ingest", group="audit") == n + 1
                and value(s, "pheromone_stream_length", stream="ingest") == n + 1
                and value(s, "pheromone_group_lag", stream="ingest", group="store") == 0
                and value(s, "pheromone_group_pending", stream="ingest", group="store") == 0
                and value(s, "pheromone_events_total", service="entropy", stream="ingest", outcome="applied") == n
                and value(s, "pheromone_broadcasts_published_total", service="broadcaster") == 1)
        return s if done else None

    s = await eventually(settled, what="metrics settled")
    assert value(s, "pheromone_events_total", service="store", stream="ingest", outcome="applied") == n
    assert value(s, "pheromone_events_total", service="store", stream="ratelimits", outcome="applied") == 1
    assert value(s, "pheromone_events_total", service="store", stream="discoveries", outcome="applied") == 1
    assert value(s, "pheromone_dead_letters_total", service="store", stream="ingest") == 1
    assert value(s, "pheromone_events_total", service="entropy", stream="ingest", outcome="skipped") == 1
    assert value(s, "pheromone_dead_letters_total", service="entropy", stream="ingest") == 0
    # Batch sizes: every entry read, the poison one included, in batches of at most 20.
    assert value(s, "pheromone_batch_size_sum", service="store", stream="ingest") == n + 1
    batches = value(s, "pheromone_batch_size_count", service="store", stream="ingest")
    assert batches is not None and 3 <= batches <= n + 1
    assert value(s, "pheromone_batch_size_bucket", service="store", stream="ingest", le="20.0") == batches
    commits = value(s, "pheromone_handler_seconds_count", service="store", stream="ingest")
    assert commits is not None and 1 <= commits <= batches
    assert (value(s, "pheromone_handler_seconds_sum", service="store", stream="ingest") or 0) > 0
    assert (value(s, "pheromone_handler_seconds_count", service="query", stream="queries") or 0) >= 1
    # Coordination: one limit announced (a broadcast), one discovery broadcast, no entropy response.
    assert value(s, "pheromone_rate_limits_announced_total") == 1
    assert value(s, "pheromone_broadcasts_published_total", service="coordinator") == 1
    assert value(s, "pheromone_entropy_responses_total") == 0
    # Gauges: the unread group's lag is the whole stream; the store group has caught up.
    assert value(s, "pheromone_group_lag", stream="ingest", group="audit") == n + 1
    assert value(s, "pheromone_group_pending", stream="ingest", group="audit") == 0
    assert value(s, "pheromone_stream_length", stream="ingest") == n + 1
    assert value(s, "pheromone_redis_up") == 1


async def test_entropy_responses_are_counted(
    start_runtime: StartRuntime, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    port = free_port()
    await start_runtime(
        ["store", "entropy"], metrics_port=port,
        coordination={"entropy_check_every": 25, "entropy_check_interval_s": 0.3, "entropy_cooldown_s": 120.0},
        learning={"entropy_min_applications": 50},
    )
    names = [f"pattern {i}" for i in range(8)]
    async with Pheromone(redis_url, workspace="ws-m", job="job-e", prefix=prefix, data_dir=tmp_path,
                         spool_dir=tmp_path / "spool") as client:
        for name in names:
            client.emit(PatternObserved(pattern_type="retry_pattern", pattern_name=name, context_tags=["api"]))
        for i in range(300):  # one pattern takes nearly every application: diversity collapses
            name = names[0] if i % 30 else names[1 + (i // 30) % 7]
            client.emit(PatternApplied(pattern_id=pattern_id("retry_pattern", name), success=True,
                                       grounding_confidence=0.9))
        await client.flush()

    async def responded() -> Samples | None:
        s = await scrape(port)
        return s if value(s, "pheromone_entropy_responses_total") == 1 else None

    s = await eventually(responded, what="one entropy response counted")
    assert value(s, "pheromone_broadcasts_published_total", service="entropy") == 1


async def test_runtimes_in_one_process_count_apart(start_runtime: StartRuntime, redis: aioredis.Redis,
                                                   prefix: str) -> None:
    a = await start_runtime(["store"], metrics_port=free_port())
    b = await start_runtime(["broadcaster"], metrics_port=free_port())
    assert a.metrics.registry is not b.metrics.registry and a.metrics_server and b.metrics_server
    await redis.xadd(Keys(prefix).ingest, {FIELD: envelope(execution(1))})

    async def counted() -> Samples | None:
        s = await scrape(a.metrics_server.port)  # type: ignore[union-attr]
        return s if value(s, "pheromone_events_total", service="store", stream="ingest", outcome="applied") else None

    await eventually(counted, what="store counted the event")
    other = await scrape(b.metrics_server.port)  # type: ignore[union-attr]
    assert value(other, "pheromone_events_total", service="store", stream="ingest", outcome="applied") is None
    assert value(other, "pheromone_events_total", service="broadcaster", stream="discoveries",
                 outcome="applied") == 0
