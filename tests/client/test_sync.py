"""`SyncPheromone` against a real server, from plain (non-asyncio) test functions: emit returns at once and the
ledger gets every event exactly once (from several threads too), queries and rate limits block until their
answer, a subscription is an iterator that ends on its timeout, events emitted while Redis is away are spooled
and delivered by the next client, and a closed client refuses calls and leaves no thread behind."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pheromone import ClientClosedError, SyncPheromone
from pheromone.contracts import EventQuery, PatternObserved
from pheromone.services.runtime import Runtime
from tests.ops.test_metrics import execution as sample_execution
from tests.support import settings


@pytest.fixture
def services(tmp_path: Path, prefix: str, redis_url: str) -> Iterator[None]:
    """The store, query, coordinator and broadcaster on a loop of their own (the tests themselves are sync)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    runtime = Runtime(settings(tmp_path, prefix), redis_url, ["store", "query", "coordinator", "broadcaster"])
    asyncio.run_coroutine_threadsafe(runtime.start(), loop).result(60)
    try:
        yield
    finally:
        asyncio.run_coroutine_threadsafe(runtime.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def client(redis_url: str, prefix: str, tmp_path: Path, job: str = "job-s", **kwargs: object) -> SyncPheromone:
    kwargs.setdefault("spool_dir", tmp_path / f"spool-{job}")
    return SyncPheromone(redis_url, workspace="ws-s", job=job, prefix=prefix, data_dir=tmp_path,
                         close_timeout=2.0, **kwargs)  # type: ignore[arg-type]


def wait_for(predicate: object, timeout: float = 20.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()  # type: ignore[operator]
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout:g}s (last: {result!r})")
        time.sleep(0.02)


def test_emit_flush_and_query(services: None, redis_url: str, prefix: str, tmp_path: Path) -> None:
    with client(redis_url, prefix, tmp_path) as ph:
        ids = [ph.emit(sample_execution(i)) for i in range(50)]
        assert len(set(ids)) == 50
        ph.flush()
        assert ph.backlog == 0
        events = wait_for(lambda: len(found := ph.events(EventQuery(workspace="ws-s", limit=100))) == 50 and found,
                          what="50 events in the ledger")
        assert [e.event_id for e in events] == ids  # type: ignore[attr-defined]
        ph.emit(PatternObserved(pattern_type="retry_pattern", pattern_name="back off", context_tags=["api"]))
        ph.flush()
        patterns = wait_for(lambda: ph.queries.patterns(tags=["api"]), what="the pattern")
        assert patterns[0]["pattern_name"] == "back off"  # type: ignore[index]
        assert "current" in ph.queries.entropy()


def test_threads_share_one_client(services: None, redis_url: str, prefix: str, tmp_path: Path) -> None:
    with client(redis_url, prefix, tmp_path) as ph:
        def work(n: int) -> None:
            for i in range(100):
                ph.emit(sample_execution(n * 1000 + i))

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        ph.flush()
        wait_for(lambda: ph.queries.call("counts", {}).get("execution") == 400, what="400 executions, once each")


def test_rate_limits_block_until_answered(services: None, redis_url: str, prefix: str, tmp_path: Path) -> None:
    with client(redis_url, prefix, tmp_path) as ph:
        ph.report_rate_limit("model-s", "429", 120)
        status = wait_for(lambda: (s := ph.rate_limit("model-s")).active and s, what="limit visible")
        assert 0 < status.seconds_left <= 120  # type: ignore[attr-defined]
        assert [s.model for s in ph.rate_limits()] == ["model-s"]
        started = time.monotonic()
        assert ph.wait_until_free("model-s", timeout=0.3) is False
        assert time.monotonic() - started >= 0.3
        assert ph.wait_until_free("other-model", timeout=5) is True


def test_a_subscription_is_an_iterator(services: None, redis_url: str, prefix: str, tmp_path: Path) -> None:
    with client(redis_url, prefix, tmp_path, job="listener") as listener, \
            client(redis_url, prefix, tmp_path, job="finder") as finder:
        sub = listener.subscribe(kinds={"discovery"}, timeout=1.0)
        sub.live(timeout=10)  # the reader has caught up: the discovery below arrives live
        finder.publish_discovery("retry_pattern", "jitter", 0.8, context_tags=["api"])
        finder.flush()
        got = []
        started = time.monotonic()
        for msg in sub:  # ends once no message came for 1 s
            got.append(msg)
        assert [m.body.pattern_name for m in got] == ["jitter"]  # type: ignore[union-attr]
        assert time.monotonic() - started >= 1.0
        sub.close()
        with pytest.raises(StopAsyncIteration):
            sub.get(timeout=1)


def test_events_emitted_while_redis_is_away_are_delivered_later(
    services: None, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    spool = tmp_path / "shared-spool"
    away = client("redis://127.0.0.1:1/0", prefix, tmp_path, job="offline", spool_dir=spool)
    started = time.monotonic()
    ids = [away.emit(sample_execution(i)) for i in range(20)]
    assert time.monotonic() - started < 2, "emit never waits on the network"
    away.close()  # cannot send: whatever it holds stays in the spool
    with client(redis_url, prefix, tmp_path, job="online", spool_dir=spool) as ph:
        ph.flush()
        events = wait_for(lambda: len(found := ph.events(EventQuery(workspace="ws-s"))) == 20 and found,
                          what="the spooled events delivered")
        assert sorted(e.event_id for e in events) == sorted(ids)  # type: ignore[attr-defined]


def test_a_closed_client_refuses_calls_and_ends_its_thread(redis_url: str, prefix: str, tmp_path: Path) -> None:
    ph = client(redis_url, prefix, tmp_path)
    thread = ph._loop.thread
    assert thread.is_alive() and thread.daemon and thread.name == "pheromone-sync"
    ph.close()
    ph.close()  # idempotent
    with pytest.raises(ClientClosedError):
        ph.emit(sample_execution(1))
    assert not thread.is_alive()
    with pytest.raises(ValueError, match="buffer_size"):
        SyncPheromone(redis_url, workspace="ws-s", job="j", buffer_size=0)
