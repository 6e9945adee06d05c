"""A spooled line the client cannot read is never dropped silently: it goes to the dead letters."""

from __future__ import annotations

from pathlib import Path

from redis.asyncio import Redis

from pheromone.contracts import Envelope, PatternApplied
from pheromone.contracts.streams import Keys
from pheromone.spool import Spool
from tests.client.helpers import eventually, read_envelopes
from tests.support import OpenClient


async def test_unreadable_spool_lines_become_dead_letters_and_the_rest_is_sent(
    open_client: OpenClient, spool_dir: Path, redis: Redis, prefix: str
) -> None:
    # A spool left by an earlier process, with one good record between two damaged ones.
    good = PatternApplied(pattern_id="p-1", success=True)
    with Spool(spool_dir) as spool:
        spool.append([b"garbage without a tab", b"other:prefix:ingest\t{}"])
    first = await open_client()
    event_id = first.emit(good)
    await first.flush()
    assert [e.event_id for e in await read_envelopes(redis, Keys(prefix).ingest)] == [event_id]

    async def dead_arrived() -> bool:
        return await redis.xlen(Keys(prefix).dead) == 2

    await eventually(dead_arrived, what="two dead letters for the unreadable lines")
    letters = await redis.xrange(Keys(prefix).dead)
    assert sorted(f[b"f:raw"] for _, f in letters) == [b"garbage without a tab", b"other:prefix:ingest\t{}"]
    assert {f[b"error"] for _, f in letters} == {b"unreadable spool record"}
    assert first.stats.send_failures == 0


async def test_a_line_spooled_under_the_untagged_key_name_is_sent_to_todays_stream(
    open_client: OpenClient, spool_dir: Path, redis: Redis, prefix: str
) -> None:
    """A spool written before keys carried the hash tag (`prefix:ingest`, not `{prefix}:ingest`) is not lost
    to the dead letters on upgrade: its events go to the stream's current name."""
    old = PatternApplied(pattern_id="p-1", success=True)
    envelope = Envelope(workspace="ws-t", job="job-t", payload=old)
    with Spool(spool_dir) as spool:
        spool.append([f"{prefix}:ingest\t".encode() + envelope.model_dump_json().encode()])
    client = await open_client()
    await client.flush()
    assert [e.event_id for e in await read_envelopes(redis, Keys(prefix).ingest)] == [envelope.event_id]
    assert await redis.exists(Keys(prefix).dead, f"{prefix}:ingest") == 0
