"""A client whose spool limit is reached while Redis is away: `emit()` never raises, the refusal is counted and
logged, the events wait in memory, and `close()` keeps them on disk past the limit rather than drop them
(it used to drop them silently when the last refused spill was under a second old). Only a disk that refuses
the write loses events, and then each one is counted and the loss logged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone import Pheromone
from pheromone.contracts.streams import FIELD, Keys
from pheromone.plumbing.embedded import EmbeddedServer
from pheromone.spool import Spool, SpoolFullError
from tests.services import helpers as h
from tests.support import eventually

LIMIT = 4 * 1024


def spooled_ids(directory: Path) -> list[str]:
    with Spool(directory) as spool:
        records = spool.read_batch(1_000_000)[0]
    return [json.loads(r.partition(b"\t")[2])["event_id"] for r in records]


async def test_spool_limit_reached_while_offline_keeps_every_event(
    private_server: EmbeddedServer, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url, spool_dir = private_server.url, tmp_path / "spool"
    private_server.stop()

    def client() -> Pheromone:
        return Pheromone(url, workspace="ws-f", job="job-f", prefix=prefix, data_dir=tmp_path, spool_dir=spool_dir,
                         max_spool_bytes=LIMIT, batch_size=20, close_timeout=0.2)

    first = client()
    await first.open()
    with caplog.at_level(logging.ERROR, logger="pheromone.client"):
        emitted = [first.emit(h.execution()) for _ in range(3)]
        await eventually(lambda: first.stats.spooled == 3, what="the first events spooled")
        emitted += [first.emit(h.execution()) for _ in range(200)]  # ~100 KB of envelopes: 25x the limit
        await eventually(lambda: first.stats.spool_refusals > 0, what="a spill refused")
        assert first.backlog > 0 and 0 < first.spool_bytes <= LIMIT  # the rest waits in memory
        emitted += [first.emit(h.execution()) for _ in range(10)]  # still accepted, never raises
        await first.close()  # Redis still away: everything goes to disk, past the limit
    assert any("cannot spool" in r.getMessage() and "keeping them in memory" in r.getMessage()
               for r in caplog.records)
    assert first.stats.lost == 0
    assert sorted(spooled_ids(spool_dir)) == sorted(emitted)

    private_server.start()
    second = client()
    await second.open()
    try:
        await second.flush(timeout=30)
    finally:
        await second.close()
    r = aioredis.Redis.from_url(url)
    try:
        sent = [json.loads(fields[FIELD.encode()])["event_id"] for _, fields in await r.xrange(Keys(prefix).ingest)]
    finally:
        await r.aclose()
    assert sorted(sent) == sorted(emitted)  # each once: the spool was committed as it was replayed
    assert spooled_ids(spool_dir) == []


async def test_events_the_disk_refuses_at_close_are_counted_and_logged(
    private_server: EmbeddedServer, prefix: str, tmp_path: Path, caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = private_server.url
    private_server.stop()
    ph = Pheromone(url, workspace="ws-f", job="job-f", prefix=prefix, data_dir=tmp_path, spool_dir=tmp_path / "s",
                   close_timeout=0.2)
    await ph.open()

    def disk_full(self: Spool, records: object, *, over_limit: bool = False) -> None:
        raise SpoolFullError("spool append failed: [Errno 28] No space left on device")

    monkeypatch.setattr(Spool, "append", disk_full)  # a full disk, which a test cannot make for real
    for _ in range(30):
        ph.emit(h.execution())
    with caplog.at_level(logging.ERROR, logger="pheromone.client"):
        await ph.close()
    assert ph.stats.lost == 30
    assert any("lost 30 events" in r.getMessage() and "No space left" in r.getMessage() for r in caplog.records)
