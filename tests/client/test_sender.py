"""The sender thread: events leave while the job's loop is busy, emit() leaves nothing for the job's garbage
collector, and close() does not wait on a server that stopped answering."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from redis import Redis as BlockingRedis
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pheromone import Pheromone
from pheromone.contracts import PatternObserved
from pheromone.contracts.streams import Keys
from pheromone.plumbing.embedded import EmbeddedServer
from tests.client.helpers import eventually, read_envelopes
from tests.support import OpenClient

OBSERVED = PatternObserved(pattern_type="t", pattern_name="n")


async def test_events_reach_redis_while_the_jobs_loop_is_blocked(
    open_client: OpenClient, redis_url: str, prefix: str
) -> None:
    client = await open_client(batch_size=10)
    for _ in range(100):
        client.emit(OBSERVED)
    await asyncio.sleep(0)  # one turn of the loop: the wake-up emit() scheduled runs
    sync = BlockingRedis.from_url(redis_url)
    try:
        # From here the loop never runs again until all 100 are in the stream: a flusher on the loop could
        # not send anything; the sender thread sends all ten batches.
        deadline = time.monotonic() + 10
        while sync.xlen(Keys(prefix).ingest) < 100:
            assert time.monotonic() < deadline, f"{sync.xlen(f'{{{prefix}}}:ingest')}/100 sent with the loop blocked"
            time.sleep(0.001)  # noqa: ASYNC251 - blocking the loop is the point
    finally:
        sync.close()
    await client.flush()
    assert client.stats.sent == 100 and client.backlog == 0


async def test_emit_leaves_no_object_for_the_garbage_collector(open_client: OpenClient, redis: Redis,
                                                              prefix: str) -> None:
    """What emit() buffers is bytes (which the collector does not track) and the record is not kept: a job's
    young collections are not triggered by emitting, and full ones do not walk the buffer."""
    client = await open_client()
    gc.disable()
    try:
        gc.collect()
        before = gc.get_count()[0]
        for i in range(2_000):
            client.emit(OBSERVED, correlation_id="c-1" if i % 2 else None)
        allocated = gc.get_count()[0] - before
    finally:
        gc.enable()
    assert allocated < 50, f"{allocated} tracked objects left behind by 2,000 emits"
    await client.flush()
    assert await redis.xlen(Keys(prefix).ingest) == 2_000


async def test_close_does_not_wait_on_a_server_that_stopped_answering(
    private_server: EmbeddedServer, prefix: str, tmp_path: Path
) -> None:
    spool_dir = tmp_path / "spool"

    def client() -> Pheromone:
        return Pheromone(private_server.url, workspace="ws-s", job="job-s", prefix=prefix, data_dir=tmp_path,
                         spool_dir=spool_dir, close_timeout=0.3)

    first = client()
    await first.open()
    first.emit(OBSERVED)
    await first.flush()  # the sender is connected
    pid = private_server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # accepts bytes into its socket, answers nothing
    try:
        ids = [first.emit(PatternObserved(pattern_type="t", pattern_name=str(i))) for i in range(50)]
        await asyncio.sleep(0)  # the sender takes the batch and waits for replies that never come
        start = time.monotonic()
        await first.close()
        # The socket timeout (5 s) would bound a wait; close() cuts the sender's wait short instead.
        assert time.monotonic() - start < 2.5
    finally:
        os.kill(pid, signal.SIGCONT)
    assert first.stats.spooled == 50 and first.stats.lost == 0  # the batch in flight went to the spool

    second = client()
    async with second:
        pass  # leaving the block replays the spool
    redis = Redis.from_url(private_server.url)
    try:
        sent = [e.event_id for e in await read_envelopes(redis, Keys(prefix).ingest)]
    finally:
        await redis.aclose()
    # At least once: the stopped server applies what it had read when it resumes, and the replay sends it again.
    assert set(ids) <= set(sent) and len(sent) <= 1 + 2 * len(ids)


async def test_a_batch_redis_refuses_is_spooled_and_sent_once_it_accepts(
    open_client: OpenClient, redis: Redis, prefix: str
) -> None:
    stream = Keys(prefix).ingest
    await redis.set(stream, "not a stream")  # every XADD to it answers WRONGTYPE
    client = await open_client(batch_size=50)
    ids = [client.emit(PatternObserved(pattern_type="t", pattern_name=str(i))) for i in range(120)]

    async def refused() -> bool:
        return client.stats.send_failures > 0 and client.backlog == 0 and client.spool_bytes > 0

    await eventually(refused, what="the refused batch and the rest spooled")
    await redis.delete(stream)
    await client.flush(timeout=15)
    sent = [e.event_id for e in await read_envelopes(redis, stream)]
    # At least once and in order: a retry that began before the key was deleted may have added part of a batch.
    assert list(dict.fromkeys(sent)) == ids
    assert client.stats.replayed >= len(ids) - client.stats.sent


async def test_the_backlog_counts_a_failed_batch_until_the_spool_holds_it(
    private_server: EmbeddedServer, open_client: OpenClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job reads `backlog == 0` as "every event sent or on disk" (tests/client/test_restart.py's emitter
    does, before it is killed): it must not read 0 while a failed batch is on its way to the spool."""
    url = private_server.url
    private_server.stop()
    client = await open_client(url=url)
    writing = threading.Event()
    spool = client._spool
    original = spool.append

    def slow_append(*args: Any, **kwargs: Any) -> Any:
        writing.set()
        time.sleep(0.3)  # a slow disk: the batch is in no buffer and not yet in the spool
        return original(*args, **kwargs)

    monkeypatch.setattr(spool, "append", slow_append)
    for i in range(50):
        client.emit(PatternObserved(pattern_type="t", pattern_name=str(i)))
    assert await asyncio.to_thread(writing.wait, 15), "the send never failed over to the spool"
    assert await asyncio.to_thread(lambda: client.backlog) == 0
    assert client.stats.spooled == 50  # by the time the backlog reads 0, the spool holds every event


@pytest.mark.parametrize(
    ("answer", "replies", "error"),
    [
        (b"$15\r\n1733456789012-0\r\n$15\r\n1733456789012-1\r\n", 2, None),
        (b"$15\r\n1733456789012-0\r\n-WRONGTYPE Operation against a key\r\n$3\r\n1-0\r\n", 3, "WRONGTYPE"),
        (b"-ERR first\r\n$3\r\n1-0\r\n", 2, "ERR first"),
    ],
    ids=["ids", "error-between", "error-first"],
)
def test_replies_are_counted_and_an_error_among_them_is_raised(
    tmp_path: Path, answer: bytes, replies: int, error: str | None
) -> None:
    """The sender counts XADD's replies by their CRLFs and falls back to parsing them when one is an error:
    it never waits for bytes an error reply made shorter (the socket's timeout would say so)."""
    client = Pheromone("redis://127.0.0.1:1/0", workspace="w", job="j", spool_dir=tmp_path)
    ours, server = socket.socketpair()
    ours.settimeout(2)
    try:
        for cut in (len(answer), len(answer) // 2, answer.index(b"\r\n") + 1):  # whole, halves, a CRLF cut
            server.sendall(answer[:cut])
            rest = threading.Timer(0.05, server.sendall, [answer[cut:]])
            rest.start()
            if error is None:
                client._exchange(ours, b"", replies)
            else:
                with pytest.raises(ResponseError, match=error):
                    client._exchange(ours, b"", replies)
            rest.join()
    finally:
        ours.close()
        server.close()
