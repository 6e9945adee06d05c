"""Discovery broadcast: every concurrently subscribed job receives it, filtered, until it expires.

Real server, in-process services, one key prefix per test; no fixed sleeps (deadline polls only).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio as aioredis

from pheromone import Pheromone
from pheromone import subscriptions as subs_module
from pheromone.contracts import PatternDiscoveryEvent, pattern_id
from pheromone.contracts.broadcast import BroadcastKind, BroadcastMessage
from pheromone.contracts.streams import GROUP_BROADCASTER, Keys
from pheromone.plumbing.embedded import EmbeddedServer
from pheromone.plumbing.publish import Publisher
from pheromone.services import transport
from tests.coordination.conftest import StartRuntime
from tests.coordination.helpers import Collector, eventually
from tests.support import OpenClient

SERVICES = ["store", "coordinator", "broadcaster"]


async def fleet(open_client: OpenClient, workspaces: int = 5, jobs: int = 4) -> list[Pheromone]:
    return [
        await open_client(f"job-{w}-{j}", workspace=f"ws-{w}") for w in range(workspaces) for j in range(jobs)
    ]


def names(col: Collector) -> list[str]:
    return [m.body.pattern_name for m in col.messages]  # type: ignore[union-attr]


async def test_a_discovery_reaches_every_other_subscribed_job_of_20_in_5_workspaces(
    start_runtime: StartRuntime, open_client: OpenClient, redis: aioredis.Redis, prefix: str
) -> None:
    await start_runtime(SERVICES)
    jobs = await fleet(open_client)
    collectors = [Collector(job.subscribe(kinds=["discovery"])) for job in jobs]
    own = Collector(jobs[3].subscribe(kinds=["discovery"], include_own=True))

    event_id = jobs[3].publish_discovery(
        "retry_pattern", "exponential backoff on 429", 0.82, context_tags=["api", "rate_limit"]
    )

    for job, col in zip(jobs, collectors, strict=True):
        if job is jobs[3]:
            continue
        await eventually(lambda col=col: col.messages, what=f"discovery received by {job.job}")
        [msg] = col.messages
        assert msg.id == event_id and msg.kind is BroadcastKind.DISCOVERY
        assert (msg.workspace, msg.job) == ("ws-0", "job-0-3")
        assert msg.body.pattern_id == pattern_id("retry_pattern", "exponential backoff on 429")  # type: ignore[union-attr]
        assert msg.tags == ["api", "rate_limit"] and msg.effectiveness == 0.82
        assert timedelta(seconds=299) < msg.expires_at - msg.published_at <= timedelta(seconds=300)
    await eventually(lambda: own.messages, what="own discovery, asked for")
    assert collectors[3].messages == []  # its own, not asked for
    # One reader for the whole process: 21 subscriptions, 20 clients, a single blocking XREAD connection.
    assert len([h for h in subs_module._HUBS.values() if h.keys.prefix == prefix]) == 1
    assert await _blocked_readers(redis) == 1
    for col in [*collectors, own]:
        await col.stop()


async def _blocked_readers(redis: aioredis.Redis) -> int:
    clients = await redis.client_list()
    return sum(1 for c in clients if c.get("cmd") == "xread")


async def test_subscriptions_filter_by_kind_tags_effectiveness(
    start_runtime: StartRuntime, open_client: OpenClient
) -> None:
    await start_runtime(SERVICES)
    publisher, listener = (
        await open_client("pub", workspace="ws-p"),
        await open_client("sub", workspace="ws-s"),
    )
    api = Collector(listener.subscribe(tags=["api"]))
    json_or_files = Collector(listener.subscribe(kinds=["discovery"], tags={"json", "files"}))
    strong = Collector(listener.subscribe(kinds={BroadcastKind.DISCOVERY}, min_effectiveness=0.7))
    limits = Collector(listener.subscribe(kinds=["rate_limit"]))
    everything = Collector(listener.subscribe())

    publisher.publish_discovery("retry_pattern", "back off", 0.9, context_tags=["api", "rate_limit"])
    publisher.publish_discovery("validation_failure", "re-read the schema", 0.6, context_tags=["json"])
    publisher.publish_discovery("tool_pattern", "grep first", 0.75, context_tags=["files", "search"])
    publisher.publish_discovery("prompt_pattern", "plan first", 0.5)
    publisher.report_rate_limit("claude", "429", 30.0)

    await eventually(lambda: len(everything.messages) == 5, what="all five broadcasts")
    await eventually(
        lambda: len(strong.messages) == 2 and len(json_or_files.messages) == 2 and len(limits.messages) == 1,
        what="filtered subscriptions",
    )
    # Tags filter only the kinds that carry tags: a rate-limit notice passes a tag filter.
    await eventually(lambda: len(api.messages) == 2, what="tagged subscription")
    by_kind = {m.kind: m for m in api.messages}
    assert set(by_kind) == {BroadcastKind.DISCOVERY, BroadcastKind.RATE_LIMIT}
    assert by_kind[BroadcastKind.DISCOVERY].body.pattern_name == "back off"  # type: ignore[union-attr]
    assert sorted(names(json_or_files)) == ["grep first", "re-read the schema"]
    assert sorted(names(strong)) == ["back off", "grep first"]
    assert limits.messages[0].body.model == "claude"  # type: ignore[union-attr]
    for col in (api, json_or_files, strong, limits, everything):
        await col.stop()


async def test_a_late_subscriber_gets_every_unexpired_discovery_and_never_an_expired_one(
    start_runtime: StartRuntime, open_client: OpenClient
) -> None:
    await start_runtime(SERVICES)
    publisher = await open_client("pub", workspace="ws-p")
    early = await open_client("early", workspace="ws-e")
    early_col = Collector(early.subscribe(kinds=["discovery"]))
    publisher.publish_discovery("retry_pattern", "long lived", 0.8, ttl_s=300)
    publisher.publish_discovery("retry_pattern", "short lived", 0.8, ttl_s=0.5)
    await eventually(lambda: len(early_col.messages) == 2, what="both delivered while live")
    short = next(m for m in early_col.messages if m.body.pattern_name == "short lived")  # type: ignore[union-attr]
    await eventually(lambda: datetime.now(UTC) > short.expires_at, what="short one expired")

    # Same process, reader already running: the late subscription is served from the reader's cache.
    late = await open_client("late", workspace="ws-l")
    late_col = Collector(late.subscribe(kinds=["discovery"]))
    await eventually(lambda: late_col.messages, what="late subscriber replay")
    publisher.publish_discovery("retry_pattern", "after joining", 0.8)
    await eventually(lambda: len(late_col.messages) == 2, what="live one after the replay")
    assert names(late_col) == ["long lived", "after joining"]

    # A fresh reader (every client closed, so the process's reader stopped) starts from the stream itself.
    for col in (early_col, late_col):
        await col.stop()
    for c in (publisher, early, late):
        await c.close()
    assert not [h for h in subs_module._HUBS.values() if h.keys.prefix == publisher.keys.prefix]
    fresh = await open_client("fresh", workspace="ws-f")
    fresh_col = Collector(fresh.subscribe(kinds=["discovery"]))
    await eventually(lambda: len(fresh_col.messages) == 2, what="fresh reader replay")
    assert names(fresh_col) == ["long lived", "after joining"]
    await fresh_col.stop()


async def test_an_expired_discovery_is_never_delivered(
    start_runtime: StartRuntime, open_client: OpenClient, redis: aioredis.Redis, prefix: str
) -> None:
    await start_runtime(SERVICES)
    publisher, listener = await open_client("pub"), await open_client("sub", workspace="ws-s")
    sub = listener.subscribe(kinds=["discovery"])
    # Already expired when published: the broadcaster drops it (the store still records it).
    then = datetime.now(UTC) - timedelta(seconds=10)
    publisher.emit(
        PatternDiscoveryEvent(
            pattern_id="p_x",
            pattern_name="stale",
            pattern_type="t",
            source_job_hash="pub",
            recorded_at=then,
            expires_at=then + timedelta(seconds=5),
            effectiveness_score=0.9,
        )
    )
    # Expires while queued for a subscriber that is not reading: dropped when taken.
    publisher.publish_discovery("t", "brief", 0.9, ttl_s=0.3)
    publisher.publish_discovery("t", "lasting", 0.9, ttl_s=60)
    await eventually(lambda: sub.pending() == 2, what="two queued")
    queued = list(sub._queue)
    await eventually(lambda: datetime.now(UTC) > queued[0].expires_at, what="brief one expired in the queue")
    msg = await sub.get(timeout=5)
    assert msg.body.pattern_name == "lasting"  # type: ignore[union-attr]
    assert sub.pending() == 0
    entries = await redis.xrange(Keys(prefix).broadcast)
    assert len(entries) == 2  # "stale" never reached the broadcast stream
    sub.close()


async def test_the_broadcaster_restarted_mid_stream_loses_nothing_unexpired_and_doubles_nothing(
    start_runtime: StartRuntime, open_client: OpenClient, redis: aioredis.Redis, prefix: str
) -> None:
    runtime = await start_runtime(SERVICES)
    publisher = await open_client("pub", workspace="ws-p")
    listeners = [await open_client(f"sub-{i}", workspace=f"ws-{i}") for i in range(5)]
    collectors = [Collector(c.subscribe(kinds=["discovery"])) for c in listeners]
    published: list[str] = []

    async def publish(n: int) -> None:
        for _ in range(n):
            published.append(publisher.publish_discovery("t", f"d{len(published)}", 0.7))
            await asyncio.sleep(0)

    await publish(50)
    await eventually(lambda: len(collectors[0].messages) > 10, what="some delivered before the restart")
    stop = asyncio.create_task(runtime.stop())  # the broadcaster stops while discoveries keep coming
    await publish(50)
    await stop
    await publish(50)
    await publisher.flush()
    await start_runtime(SERVICES)
    await publish(50)

    for col in collectors:
        await eventually(
            lambda col=col: len(col.messages) >= len(published), what="every discovery delivered"
        )
        # All of them, once each. Entries a stopping broadcaster had fetched are published by the retrier
        # after the restart, so order across the restart is not promised.
        assert len(col.ids()) == len(set(col.ids())) and sorted(col.ids()) == sorted(published)
    for col in collectors:
        await col.stop()


async def test_entries_a_crashed_broadcaster_read_but_never_published_are_published_by_the_retrier(
    start_runtime: StartRuntime, open_client: OpenClient, redis: aioredis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    publisher, listener = await open_client("pub"), await open_client("sub", workspace="ws-s")
    col = Collector(listener.subscribe(kinds=["discovery"]))
    ids = [publisher.publish_discovery("t", f"d{i}", 0.7) for i in range(5)]
    await publisher.flush()
    await transport.ensure_group(redis, keys.discoveries, GROUP_BROADCASTER)
    taken = await redis.xreadgroup(GROUP_BROADCASTER, "crashed", {keys.discoveries: ">"}, count=100)
    assert len(taken[0][1]) == 5  # read by a broadcaster that died before publishing or acking

    await start_runtime(SERVICES)
    await eventually(lambda: len(col.messages) == 5, what="claimed and published")
    assert sorted(col.ids()) == sorted(ids)
    assert (await redis.xpending(keys.discoveries, GROUP_BROADCASTER))["pending"] == 0
    await col.stop()


async def test_a_message_is_published_once_however_often_its_source_is_delivered(
    redis: aioredis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    publisher = Publisher(redis, keys)
    now = datetime.now(UTC)
    body = PatternDiscoveryEvent(
        pattern_id="p_x",
        pattern_name="n",
        pattern_type="t",
        source_job_hash="j",
        recorded_at=now,
        expires_at=now + timedelta(seconds=30),
        effectiveness_score=0.5,
    )
    msg = BroadcastMessage(
        id="01JABCDEFGHJKMNPQRSTVWXYZ0",
        published_at=now,
        expires_at=body.expires_at,
        workspace="w",
        job="j",
        body=body,
    )
    assert await publisher.publish([msg, msg]) == 1
    assert await publisher.publish([msg]) == 0
    expired = msg.model_copy(update={"id": "other", "expires_at": now - timedelta(seconds=1)})
    assert await publisher.publish([expired]) == 0
    assert await redis.xlen(keys.broadcast) == 1
    # The once-marker expires with the message it guards: nothing outlives the TTL.
    assert 29_000 < await redis.pttl(keys.broadcast_once(msg.id)) <= 30_000


async def test_a_slow_subscriber_loses_its_oldest_messages_not_the_others(
    start_runtime: StartRuntime, open_client: OpenClient
) -> None:
    await start_runtime(SERVICES)
    publisher, listener = await open_client("pub"), await open_client("sub", workspace="ws-s")
    slow = listener.subscribe(kinds=["discovery"], max_queue=3)
    fast = Collector(listener.subscribe(kinds=["discovery"]))
    for i in range(10):
        publisher.publish_discovery("t", f"d{i}", 0.7)
    await eventually(lambda: len(fast.messages) == 10, what="fast subscriber has all")
    assert slow.dropped == 7 and slow.pending() == 3
    assert [(await slow.get(timeout=1)).body.pattern_name for _ in range(3)] == ["d7", "d8", "d9"]  # type: ignore[union-attr]
    slow.close()
    await fast.stop()


async def test_closing_the_client_ends_its_subscriptions(open_client: OpenClient) -> None:
    client = await open_client("c")
    sub = client.subscribe()
    waiter = asyncio.create_task(sub.get(timeout=30))
    await asyncio.sleep(0)
    await client.close()
    assert sub.closed
    try:
        await asyncio.wait_for(waiter, 5)
    except StopAsyncIteration:
        pass
    else:
        raise AssertionError("a closed subscription returned a message")


async def test_the_reader_rides_out_a_redis_restart_and_misses_nothing(
    private_server: EmbeddedServer, start_runtime: StartRuntime, open_client: OpenClient
) -> None:
    url = private_server.url
    await start_runtime(SERVICES, url=url)
    publisher = await open_client("pub", url=url)
    listener = await open_client("sub", workspace="ws-s", url=url)
    col = Collector(listener.subscribe(kinds=["discovery"]))
    before = [publisher.publish_discovery("t", f"before {i}", 0.7) for i in range(5)]
    await eventually(lambda: len(col.messages) == 5, what="delivered before the restart")

    await asyncio.to_thread(private_server.stop)
    during = [publisher.publish_discovery("t", f"during {i}", 0.7) for i in range(5)]  # spooled by the client
    await asyncio.to_thread(private_server.start)  # same port, same data (AOF)
    after = [publisher.publish_discovery("t", f"after {i}", 0.7) for i in range(5)]

    await eventually(lambda: len(col.messages) == 15, timeout=30, what="everything after the restart")
    assert sorted(col.ids()) == sorted(before + during + after)
    await col.stop()


async def test_a_subscription_can_await_being_live(
    start_runtime: StartRuntime, open_client: OpenClient, redis: aioredis.Redis, prefix: str
) -> None:
    await start_runtime(SERVICES)
    publisher = await open_client("pub", workspace="ws-p")
    for i in range(3):
        publisher.publish_discovery("retry_pattern", f"before {i}", 0.8, ttl_s=300)
    await publisher.flush()
    await eventually(lambda: _broadcasts(redis, prefix, 3), what="three broadcasts")
    listener = await open_client("listener", workspace="ws-l")
    sub = listener.subscribe(kinds=["discovery"])
    assert not sub.is_live  # its process's reader has only just been started
    await sub.live(timeout=10)
    # Live means caught up: what the stream held is queued already, no waiting for it.
    assert sub.is_live and sub.pending() == 3
    publisher.publish_discovery("retry_pattern", "after", 0.8)
    assert [(await sub.get(timeout=10)).body.pattern_name for _ in range(4)] == [  # type: ignore[union-attr]
        "before 0", "before 1", "before 2", "after"]
    sub.close()


async def test_live_times_out_while_redis_is_unreachable(open_client: OpenClient) -> None:
    client = await open_client("away", url="redis://127.0.0.1:1/0", close_timeout=0.2)
    sub = client.subscribe()
    with pytest.raises(TimeoutError):
        await sub.live(timeout=0.3)
    assert not sub.is_live


async def _broadcasts(redis: aioredis.Redis, prefix: str, n: int) -> bool:
    return await redis.xlen(Keys(prefix).broadcast) >= n
