"""Redis operations the services share: groups, acks, dead letters, claims and trimming.

No handler talks to Redis directly; it calls these. Every multi-step write that must not half-happen (a
dead letter and the ack of its entry) runs in one script, atomically on the server.

Dead-letter entries on `{prefix}:dead` are laid out by `contracts.streams.dead_letter`: `stream`, `group`, `id`
(the original entry id), `error`, `deliveries`, `at` (ms since epoch), and each original field under
`f:<name>`, byte for byte, so `pheromone dead replay` can put back exactly what was sent.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from pheromone.contracts.streams import dead_letter as letter_fields
from pheromone.plumbing.scripts import run_batch

Entry = tuple[bytes, dict[bytes, bytes]]
"""A stream entry as redis-py returns it: (id, fields)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    stream: str
    group: str
    entry_id: bytes
    fields: Mapping[bytes, bytes]
    error: str
    deliveries: int = 1


async def ensure_group(r: aioredis.Redis, stream: str, group: str) -> bool:
    """Create `group` on `stream` (and the stream) reading from the start; True if it had to be created.

    Id `0`, not `$`: a group made after producers started (or after the server lost its data) must still
    see every entry already in the stream.
    """
    try:
        await r.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


async def ack(r: aioredis.Redis, stream: str, group: str, ids: Sequence[bytes]) -> None:
    if ids:
        await r.xack(stream, group, *ids)


ACK_THEN_LETTER = """
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 1 then
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, 3))
  return 1
end
return 0
"""
"""KEYS: the entry's stream, the dead stream. ARGV: group, entry id, then the letter's field/value pairs.

    if XACK(stream, group, id) took the entry off the pending list:  XADD dead * fields...   -- the one letter
    else:                                                           nothing                 -- already handled

Two handlers can hold one entry (the retrier and a writer taking over a dead consumer's entries); only the
one whose ack removes it writes its letter, so a letter is never doubled, and never lost (same script)."""


async def dead_letter(r: aioredis.Redis, dead_stream: str, letters: Sequence[DeadLetter]) -> None:
    """Dead-letter each entry and ack it, atomically per entry (ACK_THEN_LETTER): never lost nor doubled."""
    if not letters:
        return
    now_ms = int(time.time() * 1000)
    calls: list[tuple[Sequence[str], Sequence[Any]]] = []
    for letter in letters:
        fields = letter_fields(stream=letter.stream, group=letter.group, entry_id=letter.entry_id,
                               error=letter.error, deliveries=letter.deliveries, at_ms=now_ms,
                               original=letter.fields)
        calls.append(([letter.stream, dead_stream], [letter.group, letter.entry_id, *fields]))
    await run_batch(r, r.register_script(ACK_THEN_LETTER), calls)


async def idle_pending(
    r: aioredis.Redis, stream: str, group: str, idle_ms: int, count: int
) -> list[tuple[bytes, int]]:
    """Entries pending longer than `idle_ms` in `group`, oldest first, with their delivery counts."""
    rows = await r.xpending_range(stream, group, min="-", max="+", count=count, idle=idle_ms)
    # redis-py types replies loosely (bytes | str | ...); without decode_responses they are bytes.
    return [(cast(bytes, row["message_id"]), int(row["times_delivered"])) for row in cast(list[dict[str, Any]], rows)]


async def claim(
    r: aioredis.Redis, stream: str, group: str, consumer: str, idle_ms: int, ids: Sequence[bytes]
) -> list[Entry]:
    """Take over idle entries; entries deleted from the stream meanwhile are dropped from the PEL."""
    if not ids:
        return []
    claimed = await r.xclaim(stream, group, consumer, min_idle_time=idle_ms, message_ids=list(ids))
    return [(eid, fields) for eid, fields in cast(list[tuple[bytes, dict[bytes, bytes] | None]], claimed)
            if fields is not None]


def id_key(entry_id: bytes | str) -> tuple[int, int]:
    """An entry id as (ms, seq): sorts as the stream does."""
    return _id_tuple(entry_id)


def _id_tuple(entry_id: bytes | str) -> tuple[int, int]:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


async def safe_trim_id(r: aioredis.Redis, stream: str, cutoff_ms: int) -> str:
    """The oldest id that may be trimmed away without losing an entry some group has not finished.

    XTRIM MINID by age alone would delete entries a lagging group has not read, or has read but not acked;
    so the cut is the minimum of the age cutoff, each group's oldest pending entry and its next unread one.
    Groups that do not exist yet cannot be protected: a service started later reads what retention kept.
    """
    floor = (cutoff_ms, 0)
    for info in await r.xinfo_groups(stream):
        last = _id_tuple(info["last-delivered-id"])
        floor = min(floor, (last[0], last[1] + 1))
        if info["pending"]:
            summary = await r.xpending(stream, info["name"])
            if summary["min"] is not None:  # None: its consumers acked everything since XINFO GROUPS
                floor = min(floor, _id_tuple(summary["min"]))
    return f"{floor[0]}-{floor[1]}"


async def trim(r: aioredis.Redis, stream: str, retention_s: float, *, respect_groups: bool = True) -> int:
    """Trim `stream` by age (XTRIM MINID), never past what a group still needs; returns entries removed."""
    cutoff_ms = int((time.time() - retention_s) * 1000)
    try:
        min_id = await safe_trim_id(r, stream, cutoff_ms) if respect_groups else f"{cutoff_ms}-0"
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return 0
        raise
    return int(await r.xtrim(stream, minid=min_id, approximate=False))
