"""Read-only looks at a running installation: what `pheromone status`, `pheromone health` and the metrics gauges
report. Nothing here writes to Redis, the store or a spool.

- `streams()`: per stream, its length and the age of its oldest and newest entry (ages from the server's
  clock, which made the entry ids);
- `groups()`: per consumer group, `lag` (entries not yet delivered, XINFO GROUPS) and `pending` (delivered,
  not acknowledged);
- `heartbeats()`: the liveness keys `{prefix}:alive:<service>:<consumer>` the runtime's watchdog refreshes;
  each holds a `Beat` (JSON) and expires `heartbeat_ttl_s` after the last beat, so an existing key is a live
  service, and its age is read from its remaining TTL (no clock of another host involved); and whether the
  beating process still holds its named Redis connection (`client_name`), which tells a killed process at
  once;
- `store()`: the SQLite file's size, its WAL's, the ledger count and the last applied event;
- `spool()`: events spooled by local clients and not yet sent (`pheromone.spool`'s file format);
- `problems()`: what makes `pheromone health` fail.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from pheromone.contracts.streams import BROADCAST, DEAD, STREAM_GROUPS, Keys
from pheromone.services.errors import StoreError
from pheromone.services.store.location import StoreLocation, describe, is_postgres, open_reader

STREAMS = (*STREAM_GROUPS, BROADCAST, DEAD)
"""Every stream a status reports, by short name."""


@dataclass(frozen=True, slots=True)
class Beat:
    """The value of a liveness key: who beats, since when, and the key's TTL (to tell the beat's age)."""

    service: str
    consumer: str
    host: str
    pid: int
    started_ms: int
    ttl_ms: int

    def encode(self) -> str:
        return json.dumps(asdict(self))


@dataclass(frozen=True, slots=True)
class Liveness:
    service: str
    consumer: str
    host: str | None
    pid: int | None
    beat_age_s: float | None
    """Seconds since the last beat; None if the key has no readable value or TTL."""
    started_at: str | None
    """When the service started, by its host's clock."""
    connected: bool | None = None
    """Whether the process still holds its named connection to Redis (`client_name`): a killed process's
    connections close with it, so False tells a dead process at once, before its heartbeat expires. None when
    the server would not list its clients (an ACL without CLIENT LIST) or the beat is unreadable."""


def client_name(host: str, pid: int) -> str:
    """The name a runtime's Redis connections carry (CLIENT SETNAME), so `heartbeats()` can find them."""
    return f"pheromone:{host}:{pid}"


async def connected_names(r: aioredis.Redis) -> set[str] | None:
    """Names of the clients connected to the server; None if it refuses to list them."""
    try:
        clients = await r.client_list(_type="normal")
    except ResponseError:
        return None
    return {str(c.get("name", "")) for c in clients}


@dataclass(frozen=True, slots=True)
class StreamStatus:
    name: str
    key: str
    length: int
    oldest_age_s: float | None
    newest_age_s: float | None


@dataclass(frozen=True, slots=True)
class GroupStatus:
    stream: str
    group: str
    consumers: int
    lag: int | None
    """Entries not yet delivered to the group; None when Redis cannot tell (entries deleted mid-stream)."""
    pending: int


def service_groups(service: str) -> list[tuple[str, str]]:
    """(stream, group) pairs a service reads: its groups are named after it (`contracts.streams`)."""
    return [(stream, group) for stream, groups in STREAM_GROUPS.items() for group in groups if group == service]


async def server_ms(r: aioredis.Redis) -> int:
    seconds, micros = await r.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _ms(entry_id: bytes | str) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    return int(text.split("-", 1)[0])


async def streams(r: aioredis.Redis, keys: Keys, now_ms: int) -> list[StreamStatus]:
    out = []
    for name in STREAMS:
        key = keys.stream(name)
        try:
            info = await r.xinfo_stream(key)
        except ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            out.append(StreamStatus(name, key, 0, None, None))
            continue
        first, last = info.get("first-entry"), info.get("last-entry")
        out.append(StreamStatus(
            name, key, int(info["length"]),
            (now_ms - _ms(first[0])) / 1000 if first else None,
            (now_ms - _ms(last[0])) / 1000 if last else None,
        ))
    return out


async def groups(r: aioredis.Redis, keys: Keys, names: tuple[str, ...] = tuple(STREAM_GROUPS)) -> list[GroupStatus]:
    """Every group on the named event streams (the ones that exist), in stream order."""
    out = []
    for name in names:
        try:
            infos = await r.xinfo_groups(keys.stream(name))
        except ResponseError as exc:
            if "no such key" not in str(exc).lower():
                raise
            continue
        for info in infos:
            lag = info.get("lag")
            out.append(GroupStatus(name, _text(info["name"]), int(info["consumers"]),
                                   None if lag is None else int(lag), int(info["pending"])))
    return out


async def heartbeats(r: aioredis.Redis, keys: Keys) -> list[Liveness]:
    base = keys.heartbeat("")
    found = sorted([key async for key in r.scan_iter(match=f"{base}*", count=1000)])
    if not found:
        return []
    async with r.pipeline(transaction=False) as pipe:
        for key in found:
            pipe.get(key)
            pipe.pttl(key)
        replies = await pipe.execute()
    names = await connected_names(r)
    out = []
    for key, value, pttl in zip(found, replies[::2], replies[1::2], strict=True):
        if value is None:
            continue  # expired between SCAN and GET
        service, _, consumer = _text(key)[len(base):].partition(":")
        try:
            beat = Beat(**json.loads(value))
        except (ValueError, TypeError):
            out.append(Liveness(service, consumer, None, None, None, None))
            continue
        age_ms = beat.ttl_ms - int(pttl) if int(pttl) >= 0 else None
        out.append(Liveness(service, consumer, beat.host, beat.pid,
                            None if age_ms is None else max(0, age_ms) / 1000,
                            datetime.fromtimestamp(beat.started_ms / 1000, UTC).isoformat(),
                            None if names is None else client_name(beat.host, beat.pid) in names))
    return out


def _store_file(path: Path) -> dict[str, Any]:
    """Whether the store file exists, and its size and its WAL's."""
    wal = path.with_name(path.name + "-wal")
    out: dict[str, Any] = {"path": str(path), "exists": path.is_file()}
    if out["exists"]:
        out["bytes"] = path.stat().st_size
        out["wal_bytes"] = wal.stat().st_size if wal.exists() else 0
    return out


async def store(location: StoreLocation) -> dict[str, Any]:
    """The ledger count and the last applied event (highest `seq`); for a SQLite store also the file's size and
    its WAL's, for a PostgreSQL store its URL (without a password) and whether it answered."""
    if is_postgres(location):
        out: dict[str, Any] = {"url": describe(location), "exists": True}
    else:
        out = _store_file(Path(location))
        if not out["exists"]:
            return out
    try:
        async with open_reader(location) as reader:
            out["ledger"], last = await reader.ledger_summary()
    except StoreError as exc:
        if not is_postgres(location):
            raise
        return {**out, "exists": False, "error": str(exc)}
    out["last_event"] = None if last is None else {
        "seq": last[0], "event_id": last[1], "kind": last[2], "workspace": last[3],
        "stored_at": datetime.fromtimestamp(last[4] / 1e6, UTC).isoformat(),
    }
    return out


def spool(directory: Path) -> dict[str, Any]:
    """Events local clients spooled and have not sent yet: every `spool-*.jsonl` under `directory`.

    Per file, the unsent part is from its `.offset` sidecar (absent: 0) to its last complete line; a file is
    read, never locked, so a client adopting it at the same moment is not disturbed.
    """
    out: dict[str, Any] = {"path": str(directory), "files": 0, "events": 0, "bytes": 0}
    if not directory.is_dir():
        return out
    for path in sorted(directory.rglob("spool-*.jsonl")):
        try:
            offset_file = path.with_name(path.name + ".offset")
            try:
                offset = int(offset_file.read_bytes())
            except (FileNotFoundError, ValueError):
                offset = 0
            with path.open("rb") as fh:
                fh.seek(offset)
                data = fh.read()
        except FileNotFoundError:
            continue  # consumed and deleted meanwhile
        unsent = data[: data.rfind(b"\n") + 1]
        if unsent:
            out["files"] += 1
            out["events"] += unsent.count(b"\n")
            out["bytes"] += len(unsent)
    return out


async def writer(r: aioredis.Redis, keys: Keys) -> str | None:
    """The consumer name of the store process that writes (`services.writer`'s lease); None: no store writes."""
    value = await r.get(keys.writer("store"))
    return None if value is None else _text(value)


async def snapshot(r: aioredis.Redis, keys: Keys, store_location: StoreLocation, spool_dir: Path) -> dict[str, Any]:
    """Everything `pheromone status` shows, as one JSON-ready object."""
    now_ms = await server_ms(r)
    stream_rows = await streams(r, keys, now_ms)
    return {
        "prefix": keys.prefix,
        "time": datetime.fromtimestamp(now_ms / 1000, UTC).isoformat(),
        "streams": [asdict(s) for s in stream_rows],
        "groups": [asdict(g) for g in await groups(r, keys)],
        "dead_letters": next(s.length for s in stream_rows if s.name == DEAD),
        "services": [asdict(b) for b in await heartbeats(r, keys)],
        "store_writer": await writer(r, keys),
        "store": await store(store_location),
        "spool": spool(spool_dir),
        "host": os.uname().nodename,
    }


def problems(
    services: list[Liveness],
    group_rows: list[GroupStatus],
    expected: tuple[str, ...],
    *,
    max_lag: int,
    max_pending: int,
    host: str | None = None,
) -> list[str]:
    """One line per reason the expected services are not healthy; [] when they are.

    A service is up when it has a live heartbeat (on `host`, if given) from a process still connected (a beat
    whose process's connections are gone is a dead process's, however fresh); each of its groups must have at most
    `max_lag` unread and `max_pending` unacknowledged entries. An unknown lag (None) is not held against it.
    """
    out = []
    for name in expected:
        beats = [b for b in services if b.service == name and (host is None or b.host == host)
                 and b.connected is not False]
        if not beats:
            where = f" on host {host}" if host is not None else ""
            out.append(f"service {name} is down: no heartbeat{where}")
        wanted = set(service_groups(name))
        for g in group_rows:
            if (g.stream, g.group) not in wanted:
                continue
            if g.lag is not None and g.lag > max_lag:
                out.append(f"group {g.group} on {g.stream}: lag {g.lag} > {max_lag}")
            if g.pending > max_pending:
                out.append(f"group {g.group} on {g.stream}: {g.pending} pending > {max_pending}")
    return out


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value
