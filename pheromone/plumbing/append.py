"""Appending envelopes to streams: the one way an envelope becomes a stream entry.

An entry carries the envelope's JSON under `FIELD` and its payload's type under `FIELD_KIND`
(`contracts.streams.entry`). Services and the CLI append with `append` (several envelopes in one MULTI/EXEC:
all or none) or queue onto a pipeline of their own with `add_envelopes`; `add_entry` puts back an entry's
fields exactly as they were sent (`pheromone dead replay`).

The client's sender thread does not use redis-py: it writes RESP bytes on its socket itself, so its XADD
commands are built here too, beside the function they must agree with: `envelope_frame` (head and tail
around the envelope's JSON, which `emit()` fills in), `spooled_frame` (a spooled envelope sent again, without
its kind), `spool_line` (a frame back to its spool record) and `letter_frame` (a dead letter). No other module
writes XADD (tests/test_wire_in_one_place.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline

from pheromone.contracts import Envelope
from pheromone.contracts.streams import FIELD, FIELD_KIND, entry


def add_entry(pipe: Pipeline, stream: str, fields: Mapping[Any, Any]) -> None:
    """Queue XADD `stream` * `fields` on `pipe`."""
    pipe.xadd(stream, dict(fields))


def add_envelopes(pipe: Pipeline, stream: str, envelopes: Iterable[Envelope]) -> None:
    """Queue one XADD per envelope on `pipe`, each entry laid out by `contracts.streams.entry`."""
    for env in envelopes:
        add_entry(pipe, stream, entry(env.model_dump_json(), env.kind))


async def append(redis: aioredis.Redis, stream: str, envelopes: Iterable[Envelope]) -> None:
    """Append `envelopes` to `stream` in one MULTI/EXEC: all of them or none."""
    async with redis.pipeline(transaction=True) as pipe:
        add_envelopes(pipe, stream, envelopes)
        await pipe.execute()


# -- the same entries as raw RESP, for the client's sender thread ------------------------------------------

def command(*args: bytes) -> bytes:
    """One Redis command in RESP, the bytes redis-py would send for it."""
    return b"*%d\r\n%s" % (len(args), b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in args]))


def envelope_frame(stream: bytes, kind: bytes) -> tuple[bytes, bytes]:
    """`XADD <stream> * e <envelope> k <kind>` cut around the envelope: the head ends where the envelope's
    length goes (`$<length>\\r\\n<envelope>` completes it), the tail is what follows the envelope."""
    head = b"*7\r\n" + command(b"XADD", stream, b"*", FIELD.encode())[len(b"*4\r\n"):]
    tail = b"\r\n" + command(FIELD_KIND.encode(), kind)[len(b"*2\r\n"):]
    return head, tail


def spooled_frame(stream: bytes, body: bytes) -> bytes:
    """XADD of a spooled envelope: no kind, since the spool keeps only the stream and the JSON (an entry
    without one is parsed by every group: contracts.streams)."""
    return command(b"XADD", stream, b"*", FIELD.encode(), body)


def letter_frame(dead: bytes, letter: list[bytes]) -> bytes:
    """XADD of a dead letter (`contracts.streams.dead_letter`'s fields) onto the dead stream `dead`."""
    return command(b"XADD", dead, b"*", *letter)


def spool_line(frame: bytes) -> bytes:
    """The spool record (`stream<TAB>envelope JSON`) of an `envelope_frame` XADD command.

    The command's parts are separated by CRLF, which neither a stream name nor the envelope's JSON can hold
    (JSON escapes control characters): the stream is its 5th part, the JSON its 11th."""
    parts = frame.split(b"\r\n", 11)
    return parts[4] + b"\t" + parts[10]
