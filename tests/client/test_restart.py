"""Restarts: events spooled by a client that was killed, or closed while Redis was down, are replayed by the
next client on the same spool directory, each once and in order."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

from redis.asyncio import Redis

from pheromone import Pheromone
from pheromone.contracts import PatternObserved
from pheromone.contracts.streams import Keys
from pheromone.plumbing.embedded import EmbeddedServer
from tests.client.helpers import listing, read_envelopes
from tests.support import OpenClient

# Emits N events at a Redis that is down, waits (polling, with a deadline) until a failed send has moved them
# all to the spool, prints their ids as one JSON line, then hangs until killed.
EMITTER = """
import asyncio, json, sys
from pathlib import Path
from pheromone.contracts import PatternObserved
from pheromone import Pheromone

async def main(url: str, prefix: str, spool_dir: str, n: int) -> None:
    client = Pheromone(url, workspace="ws-k", job="doomed", prefix=prefix, spool_dir=Path(spool_dir),
                       data_dir=Path(spool_dir).parent)
    await client.open()
    ids = [client.emit(PatternObserved(pattern_type="restart", pattern_name=f"n{i}")) for i in range(n)]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while client.backlog or client.stats.send_failures == 0:
        if loop.time() > deadline:
            sys.exit(f"events never reached the spool: {client.stats}")
        await asyncio.sleep(0.01)
    print(json.dumps(ids), flush=True)
    await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
"""


def emitter(url: str, prefix: str, spool_dir: Path, n: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", EMITTER, url, prefix, str(spool_dir), str(n)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


async def test_events_of_a_killed_client_are_replayed_once_in_order_by_the_next(
    private_server: EmbeddedServer, prefix: str, spool_dir: Path, open_client: OpenClient
) -> None:
    url = private_server.url
    private_server.stop()
    n = 300
    with emitter(url, prefix, spool_dir, n) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
            if not line:
                proc.wait()
                raise AssertionError(f"emitter exited {proc.returncode}: {proc.stderr.read().decode()}")
            ids = json.loads(line)
        finally:
            proc.send_signal(signal.SIGKILL)  # no close(), no flush, no cleanup
        assert proc.wait() == -signal.SIGKILL
    assert len(ids) == n
    assert any(name.endswith(".jsonl") for name in listing(spool_dir))  # the events outlived the process

    private_server.start()
    client = await open_client(url=url, batch_size=64)  # same spool directory
    await client.flush(timeout=15)  # flush() waits for the adopted spool, not only this client's emits

    redis = Redis.from_url(url)
    try:
        envelopes = await read_envelopes(redis, Keys(prefix).ingest)
    finally:
        await redis.aclose()
    assert [e.event_id for e in envelopes] == ids  # all of them, once each, in emit order
    assert [e.payload.pattern_name for e in envelopes if isinstance(e.payload, PatternObserved)] == [
        f"n{i}" for i in range(n)
    ]
    assert {(e.workspace, e.job) for e in envelopes} == {("ws-k", "doomed")}  # the original producer's
    assert client.stats.replayed == n and client.stats.emitted == 0
    await client.close()
    assert listing(spool_dir) == []  # fully consumed: files and sidecars gone


async def test_close_while_redis_is_down_keeps_events_for_the_next_client(
    private_server: EmbeddedServer, prefix: str, spool_dir: Path, tmp_path: Path
) -> None:
    url = private_server.url
    private_server.stop()
    first = Pheromone(url, workspace="ws-c", job="first", prefix=prefix, spool_dir=spool_dir,
                      data_dir=tmp_path, close_timeout=0.2)
    async with first:
        ids = [first.emit(PatternObserved(pattern_type="t", pattern_name=str(i))) for i in range(50)]
    assert first.stats.spooled == 50  # the close gave up on Redis and kept everything on disk
    assert any(name.endswith(".jsonl") for name in listing(spool_dir))

    private_server.start()
    second = Pheromone(url, workspace="ws-c", job="second", prefix=prefix, spool_dir=spool_dir,
                       data_dir=tmp_path)
    async with second:
        # Leaving the block must drain the adopted spool too, even though this client emitted nothing.
        pass

    redis = Redis.from_url(url)
    try:
        envelopes = await read_envelopes(redis, Keys(prefix).ingest)
    finally:
        await redis.aclose()
    assert [e.event_id for e in envelopes] == ids
    assert {e.job for e in envelopes} == {"first"}
    assert listing(spool_dir) == []
