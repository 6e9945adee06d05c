"""The client library jobs use: fire-and-forget emit, durable when Redis is away, and queries.

`emit(record)` builds the envelope and appends it to an in-memory buffer, then returns: no network, no await.
A background task serialises the buffer and sends it with pipelined XADD. While Redis is unreachable, or when
the buffer is full, buffered events move to a local spool file (`pheromone.spool`) and are replayed, oldest
first, before anything newer once Redis answers again, by this process or, after a restart, by the next client
that opens the same spool directory. `flush()` and leaving the `async with` block drain both; on close,
whatever could not be sent stays in the spool.

Delivery is at-least-once (a batch sent just before a connection drop may be sent again); the store applies
each `event_id` once. Order is kept, except that a batch whose send failed is spooled after events that
overflowed the buffer during that send.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self

import redis.asyncio as aioredis
from pydantic import BaseModel, TypeAdapter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

# Real-time coordination (docs/COORDINATION.md): rate limits, broadcast subscriptions.
from contracts import (
    PAYLOAD_TYPES,
    SCHEMA_VERSION,
    Envelope,
    EscalationOutcomeRecorded,
    EventQuery,
    PatternDiscoveryEvent,
    Payload,
    RateLimitEvent,
    new_id,
)
from contracts import pattern_id as derive_pattern_id
from contracts.broadcast import BroadcastKind, RateLimitStatus, rate_limit_expiry
from contracts.streams import (
    DEFAULT_PREFIX,
    DISCOVERY_TTL_S,
    FIELD,
    RATE_LIMIT_EXPIRY_FACTOR,
    Keys,
    entry,
    stream_for,
)
from contracts.types import Identifier, UtcDatetime
from pheromone import ratelimits
from pheromone.errors import ClientClosedError, FlushTimeout
from pheromone.queries import QueryClient
from pheromone.spool import Spool, SpoolError
from pheromone.subscriptions import BroadcastHub, Filter, Subscription, acquire_hub, release_hub

log = logging.getLogger(__name__)

_BACKOFF_MAX_S = 2.0


class _Extras(BaseModel):
    correlation_id: Identifier | None = None
    occurred_at: UtcDatetime | None = None


_EXTRAS = TypeAdapter(_Extras)
_Pending = tuple[str, str, datetime, str | None, Payload]
"""(stream, event_id, occurred_at, correlation_id, record): an emitted event not yet sent."""


@dataclass
class ClientStats:
    emitted: int = 0
    sent: int = 0
    spooled: int = 0
    replayed: int = 0
    send_failures: int = 0
    spool_refusals: int = 0
    """Spills the spool refused (over `max_spool_bytes`, or disk full): those events stayed in memory."""
    lost: int = 0
    """Events dropped by `close()` because neither Redis nor the spool took them (each loss is logged)."""


class Pheromone:
    """A job's handle on pheromone. Use as `async with Pheromone(workspace=..., job=...) as ph:`.

    Arguments left unset come from the same `PHEROMONE_*` environment the CLI reads (`PHEROMONE_REDIS_URL`,
    `PHEROMONE_PREFIX`, `PHEROMONE_DATA_DIR`), so a job started beside `pheromone serve` finds it. With no URL
    at all, the client uses the embedded server of `data_dir` (started if none runs, and stopped when this
    client closes).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        workspace: str,
        job: str,
        prefix: str | None = None,
        data_dir: Path | None = None,
        spool_dir: Path | None = None,
        buffer_size: int = 10_000,
        batch_size: int = 500,
        max_spool_bytes: int = 256 * 1024 * 1024,
        close_timeout: float = 5.0,
    ) -> None:
        from services.connection import settings_url
        from services.settings import Settings

        # Fail fast on a bad workspace or job name, before any event is built.
        Envelope(workspace=workspace, job=job, payload=EscalationOutcomeRecorded(escalation_id="x", outcome="success"))
        if buffer_size < 1 or batch_size < 1:
            raise ValueError("buffer_size and batch_size must be at least 1")
        self.workspace, self.job = workspace, job
        env = Settings() if url is None or prefix is None or data_dir is None else None
        self.keys = Keys(prefix or (env.prefix if env else DEFAULT_PREFIX))
        env_url = settings_url(env) if env else None  # with PHEROMONE_REDIS_PASSWORD / _TLS_* merged in
        self._url = url or env_url
        self._data_dir = data_dir or (env.data_dir if env else Path("."))
        self._spool = Spool(spool_dir or self._data_dir / "spool", max_bytes=max_spool_bytes)
        self._buffer: deque[_Pending] = deque()
        self._prefix_json = f'{{"schema_version":{SCHEMA_VERSION},"event_id":"'
        self._scope_json = f',"workspace":{json.dumps(workspace)},"job":{json.dumps(job)},"correlation_id":'
        self._buffer_size, self._batch_size = buffer_size, batch_size
        self._close_timeout = close_timeout
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._redis: aioredis.Redis | None = None
        self._server: Any = None
        self._open = False
        self._spill_blocked_until = 0.0
        self._offline = False
        self.stats = ClientStats()
        self.queries: QueryClient | None = None
        self._hub: BroadcastHub | None = None
        self._subscriptions: list[Subscription] = []
        self._fast_paths: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._url is None:
            from services.embedded import ensure_server

            self._url, self._server = await asyncio.to_thread(ensure_server, self._data_dir)
        from services.connection import redis_client  # credentials and TLS from the URL (docs/SECURITY.md)

        assert self._url is not None, "ensure_server always returns a URL"

        # Our own loop retries with backoff and spools; redis-py's built-in retries would only delay that.
        self._redis = redis_client(
            self._url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=2, socket_timeout=5,
            health_check_interval=10,
        )
        self._spool.open()
        if self._server is None:
            self.queries = QueryClient(self._redis, self.keys)
        else:  # nothing can have been serving a server this client just started: say so if a query times out
            self.queries = QueryClient(self._redis, self.keys, unanswered=(
                f"no server was running for {self._data_dir}, so this client started one, and no services run on "
                "it; start `pheromone serve` first (in another terminal, with the same PHEROMONE_DATA_DIR)"))
        self._open = True
        # Events a previous client left in the spool count as not yet sent: flush() and close() wait for them.
        if self._spool.pending():
            self._idle.clear()
            self._wake.set()
        else:
            self._idle.set()
        self._task = asyncio.create_task(self._flusher(), name="pheromone-flusher")

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        with contextlib.suppress(FlushTimeout):
            await self.flush(timeout=self._close_timeout)
        if self._task is not None:
            # Python 3.11's asyncio.wait_for, which redis-py uses for socket timeouts, can swallow a
            # cancellation when a send completes in the same loop iteration (bpo-42130, fixed in 3.12): the
            # flusher then waits for work again and a plain `await` never returns. Cancel until it ends.
            while not self._task.done():
                self._task.cancel()
                await asyncio.wait([self._task], timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._spill(final=True)  # whatever is still buffered is kept for the next client
        self._spool.close()
        await self._close_subscriptions()
        if self._redis is not None:
            await self._redis.aclose()
        if self._server is not None:
            await asyncio.to_thread(self._server.stop)

    # -- emitting --------------------------------------------------------------------------------------

    def emit(
        self,
        record: Payload,
        *,
        correlation_id: str | None = None,
        occurred_at: datetime | None = None,
    ) -> str:
        """Queue one record for the store and return its event id at once. Never waits on the network."""
        if not self._open:
            raise ClientClosedError("emit() on a client that is not open; use `async with Pheromone(...)`")
        if not isinstance(record, PAYLOAD_TYPES):
            raise TypeError(f"emit() takes a pheromone record (one of contracts.PAYLOAD_TYPES), not {type(record)!r}")
        # The record validated itself when it was built and workspace/job were checked in __init__; only the
        # caller's extras need validating here. The envelope's JSON is written by the flusher, off this path.
        if correlation_id is not None or occurred_at is not None:
            extras = _EXTRAS.validate_python({"correlation_id": correlation_id, "occurred_at": occurred_at})
            correlation_id, when = extras.correlation_id, extras.occurred_at or datetime.now(UTC)
        else:
            when = datetime.now(UTC)
        event_id = new_id()
        self._buffer.append((self.keys.stream(stream_for(record.type)), event_id, when, correlation_id, record))
        self.stats.emitted += 1
        # While Redis is away, spill every batch_size events rather than at buffer_size: the spill serialises
        # what it writes on this path, so small spills keep each emit() short.
        if len(self._buffer) >= (self._batch_size if self._offline else self._buffer_size):
            self._spill()
        self._idle.clear()
        self._wake.set()
        return event_id

    async def flush(self, timeout: float | None = 10.0) -> None:
        """Wait until everything emitted so far is in Redis; FlushTimeout if that takes over `timeout` s."""
        self._wake.set()
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError as exc:
            raise FlushTimeout(
                f"{len(self._buffer)} buffered and {self._spool.backlog_bytes()} spooled bytes not yet sent"
            ) from exc

    @property
    def backlog(self) -> int:
        """Events buffered in memory (spooled ones are counted in `spool_bytes`)."""
        return len(self._buffer)

    @property
    def spool_bytes(self) -> int:
        return self._spool.backlog_bytes()

    # -- queries -------------------------------------------------------------------------------------

    async def events(self, query: EventQuery | None = None, *, timeout: float = 10.0) -> list[Envelope]:
        """Ledger events matching `query` (seed 003's EventQuery), oldest first."""
        if not self._open or self.queries is None:
            raise ClientClosedError("query on a client that is not open")
        return await self.queries.events(query or EventQuery(), timeout=timeout)

    # -- learning sessions (docs/SESSIONS.md) ----------------------------------------------------------

    async def playbook(self, workspace: str | None = None, *, timeout: float = 10.0) -> str:
        """The playbook markdown of `workspace` (default: this client's) to put in a prompt: the hand-written
        text, then the block learning sessions maintain."""
        if not self._open or self.queries is None:
            raise ClientClosedError("query on a client that is not open")
        result = await self.queries.call("playbook", {"workspace": workspace or self.workspace}, timeout=timeout)
        return str(result["markdown"])

    async def guidance(self, model: str | None = None, *, limit: int = 20, timeout: float = 10.0) -> dict[str, Any]:
        """What this workspace's jobs running `model` are served: patterns (best first, without those sessions
        keep from that model), wait policies and the playbook."""
        if not self._open or self.queries is None:
            raise ClientClosedError("query on a client that is not open")
        args = {"workspace": self.workspace, "model": model, "limit": limit}
        return dict(await self.queries.call("guidance", args, timeout=timeout))

    # -- real-time coordination (docs/COORDINATION.md) ------------------------------------------------

    def report_rate_limit(
        self, model: str, error_code: str, duration_seconds: float, *,
        expiry_factor: float = RATE_LIMIT_EXPIRY_FACTOR,
    ) -> str:
        """Tell every job that `model` is rate-limited for `duration_seconds`; returns the event id at once.

        Fire-and-forget like `emit()`. The limit expires `expiry_factor x duration` after now (1.0 by default:
        docs/COORDINATION.md says why). The event goes to the coordinator, which applies and announces it; this
        client also applies it to the live keys at once with the coordinator's own script (best effort and
        idempotent), so other jobs see it one round trip later.
        """
        if not 0 < expiry_factor <= 10:
            raise ValueError(f"expiry_factor must be in (0, 10], got {expiry_factor!r}")
        now = datetime.now(UTC)
        try:
            expires = rate_limit_expiry(now, duration_seconds, expiry_factor)
        except (OverflowError, ValueError):
            expires = now  # NaN or infinite: the record below refuses the duration with a precise error
        record = RateLimitEvent(
            error_code=error_code, model=model, recorded_at=now, source_job_hash=self.job,
            expires_at=expires, duration_seconds=duration_seconds,
        )
        event_id = self.emit(record, occurred_at=now)
        if self._redis is not None:
            env = Envelope(event_id=event_id, occurred_at=now, workspace=self.workspace, job=self.job,
                           payload=record)
            task = asyncio.ensure_future(ratelimits.apply_now(self._redis, self.keys, env))
            self._fast_paths.add(task)
            task.add_done_callback(self._fast_path_done)
        return event_id

    def _fast_path_done(self, task: asyncio.Task[None]) -> None:
        self._fast_paths.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Harmless: the coordinator applies the report from the stream (or from the spool, later).
            log.debug("rate-limit fast path failed, the coordinator will apply it: %s", exc)

    async def rate_limit(self, model: str, error_code: str | None = None) -> RateLimitStatus:
        """Is `model` rate-limited (for `error_code`, or any code if None), and for how long? One round trip."""
        return await ratelimits.status(self._live_redis(), self.keys, model, error_code)

    async def rate_limits(self) -> list[RateLimitStatus]:
        """Every active (model, error code) limit, soonest expiry first."""
        return await ratelimits.active(self._live_redis(), self.keys)

    async def wait_until_free(self, model: str, timeout: float, *, error_code: str | None = None) -> bool:
        """Wait until `model` is not rate-limited: True when free, False if still limited after `timeout` s."""
        return await ratelimits.wait_until_free(self._live_redis(), self.keys, model, timeout, error_code)

    def publish_discovery(
        self, pattern_type: str, pattern_name: str, effectiveness_score: float, *,
        context_tags: Sequence[str] = (), ttl_s: float = DISCOVERY_TTL_S, pattern_id: str | None = None,
    ) -> str:
        """Share a pattern discovery with every concurrent job for `ttl_s` seconds; returns its event id at once.

        The pattern id defaults to `contracts.pattern_id(pattern_type, pattern_name)`.
        """
        now = datetime.now(UTC)
        record = PatternDiscoveryEvent(
            pattern_id=pattern_id or derive_pattern_id(pattern_type, pattern_name), pattern_name=pattern_name,
            pattern_type=pattern_type, source_job_hash=self.job, recorded_at=now,
            expires_at=now + timedelta(seconds=ttl_s), effectiveness_score=effectiveness_score,
            context_tags=list(context_tags),
        )
        return self.emit(record, occurred_at=now)

    def subscribe(
        self, *, kinds: Iterable[BroadcastKind | str] | None = None, tags: Iterable[str] | None = None,
        min_effectiveness: float | None = None, include_own: bool = False, max_queue: int = 10_000,
    ) -> Subscription:
        """An async iterator of broadcasts (`contracts.broadcast.BroadcastMessage`) matching the filter.

        `kinds`: discovery, rate_limit, entropy_response, drift_alert (default all). `tags`: discoveries and
        drift alerts sharing at least one tag. `min_effectiveness`: discoveries scoring at least this. Own
        messages (this workspace and job) are left out unless `include_own`. Unexpired messages published
        before the call come first. Close it (or leave `async with`) when done; closing the client closes it.
        """
        if not self._open or self._url is None:
            raise ClientClosedError("subscribe() on a client that is not open")
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        flt = Filter(
            workspace=self.workspace, job=self.job,
            kinds=None if kinds is None else frozenset(BroadcastKind(k) for k in kinds),
            tags=None if tags is None else frozenset(tags),
            min_effectiveness=min_effectiveness, include_own=include_own,
        )
        if self._hub is None:
            self._hub = acquire_hub(self._url, self.keys)
        sub = self._hub.subscribe(flt, max_queue)
        self._subscriptions.append(sub)
        return sub

    def _live_redis(self) -> aioredis.Redis:
        if not self._open or self._redis is None:
            raise ClientClosedError("rate-limit check on a client that is not open")
        return self._redis

    async def _close_subscriptions(self) -> None:
        for task in list(self._fast_paths):
            task.cancel()
        if self._fast_paths:
            await asyncio.wait(self._fast_paths, timeout=1.0)
        for sub in self._subscriptions:
            sub.close()
        self._subscriptions.clear()
        if self._hub is not None:
            hub, self._hub = self._hub, None
            await release_hub(hub)

    # -- background ------------------------------------------------------------------------------------

    def _spill(self, *, final: bool = False) -> None:
        """Move the buffer to the spool. `final` (close): past `max_spool_bytes` if need be, since memory is
        about to go; only a disk that refuses the write loses events, and that is counted and logged."""
        if not self._buffer or (time.monotonic() < self._spill_blocked_until and not final):
            return
        records = [f"{p[0]}\t{self._json(p)}".encode() for p in self._buffer]
        try:
            self._spool.append(records, over_limit=final)
        except SpoolError as exc:
            self.stats.spool_refusals += 1
            if final:
                self.stats.lost += len(records)
                self._buffer.clear()
                log.error("closing: lost %d events that neither Redis nor the spool took: %s", len(records), exc)
                return
            # Spool full or disk full: keep them in memory (over the bound) rather than drop anything, and
            # do not retry (re-serialising the whole buffer) on every emit: once a second is enough.
            self._spill_blocked_until = time.monotonic() + 1.0
            log.error("cannot spool %d events, keeping them in memory: %s", len(records), exc)
            return
        self.stats.spooled += len(records)
        self._buffer.clear()

    async def _flusher(self) -> None:
        backoff = 0.05
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self._drain()
                self._offline = False
                backoff = 0.05
            except (RedisError, OSError) as exc:
                self.stats.send_failures += 1
                log.debug("send failed, spooling %d events: %s", len(self._buffer), exc)
                self._offline = True
                self._spill()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                self._wake.set()
            except Exception:
                # Never let the flusher die: emit() would go on accepting events nobody sends.
                self.stats.send_failures += 1
                log.exception("flusher error; retrying")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                self._wake.set()

    async def _drain(self) -> None:
        assert self._redis is not None
        while True:
            if self._spool.pending():
                records, cursor = self._spool.read_batch(self._batch_size)
                batch, corrupt = self._decode_spooled(records)
                await self._send(batch, corrupt)
                self._spool.commit(cursor)
                self.stats.replayed += len(batch)
            elif self._buffer:
                count = min(len(self._buffer), self._batch_size)
                inflight = [self._buffer.popleft() for _ in range(count)]
                try:
                    await self._send([(p[0], self._json(p), p[4].type) for p in inflight])
                except BaseException:
                    self._buffer.extendleft(reversed(inflight))
                    raise
                self.stats.sent += count
            else:
                self._idle.set()
                return

    def _decode_spooled(self, records: Sequence[bytes]) -> tuple[list[tuple[str, str, None]], list[bytes]]:
        """Spooled lines as (stream, json, no kind); lines that are not ours (disk corruption) are set apart.
        A spooled line holds no kind: its entry is parsed by every group (contracts.streams)."""
        batch: list[tuple[str, str, None]] = []
        corrupt: list[bytes] = []
        for record in records:
            stream, tab, body = record.partition(b"\t")
            try:
                if not tab or not stream.startswith(f"{self.keys.prefix}:".encode()):
                    raise ValueError("not a spool record")
                batch.append((stream.decode(), body.decode(), None))
            except (ValueError, UnicodeDecodeError):
                corrupt.append(record)
        return batch, corrupt

    def _json(self, pending: _Pending) -> str:
        """The envelope's JSON, byte-compatible with `Envelope.model_dump_json()` (tested)."""
        _, event_id, when, correlation_id, record = pending
        occurred = when.isoformat().replace("+00:00", "Z")
        return (
            f'{self._prefix_json}{event_id}","occurred_at":"{occurred}"{self._scope_json}'
            f'{json.dumps(correlation_id)},"payload":{record.model_dump_json()}}}'
        )

    async def _send(self, batch: Sequence[tuple[str, str, str | None]], corrupt: Sequence[bytes] = ()) -> None:
        """XADD each (stream, envelope JSON, payload type or None) in one pipeline."""
        assert self._redis is not None
        async with self._redis.pipeline(transaction=False) as pipe:
            for stream, body, kind in batch:
                pipe.xadd(stream, {FIELD: body} if kind is None else entry(body, kind))
            for record in corrupt:
                # Nothing is dropped silently: an unreadable spool line goes to the dead letters for a human.
                pipe.xadd(self.keys.dead, {"stream": "spool", "group": "client", "id": "0-0",
                                           "error": "unreadable spool record", "deliveries": "0",
                                           "at": str(int(time.time() * 1000)), "f:raw": record})
            await pipe.execute()
        if corrupt:
            log.error("sent %d unreadable spool records to the dead letters", len(corrupt))
