"""The client library jobs use: fire-and-forget emit, durable when Redis is away, and queries.

`emit(record)` writes the event's stream entry at once (the envelope's JSON inside the XADD command that will
carry it) and appends it to an in-memory buffer, then returns: no network, no await. A sender thread with a
Redis connection of its own takes the buffer in batches and writes each batch as one pipeline of XADD, so the
job's event loop never serialises a batch nor waits on a socket (docs/ARCHITECTURE.md, "One event"). While
Redis is unreachable, or when the buffer is full, buffered events move to a local spool file
(`pheromone.spool`) and are replayed, oldest first, before anything newer once Redis answers again, by this
process or, after a restart, by the next client that opens the same spool directory. `flush()` and leaving the
`async with` block drain both; on close, whatever could not be sent stays in the spool.

Delivery is at-least-once (a batch sent just before a connection drop may be sent again); the store applies
each `event_id` once. Order is kept, except that a batch whose send failed is spooled after events that
overflowed the buffer during that send.

Threads: `emit()`, `flush()` and everything else run on the job's event loop; the sender thread only pops
batches, sends them and reads the replies, so it holds the GIL only briefly per event. The buffer is a
deque (appends on the right by `emit()`, pops on the left by the sender); the spool and every move between
buffer and spool happen under one lock, so a spill and a batch never interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self, cast

import hiredis
import redis.asyncio as aioredis
from pydantic import BaseModel, TypeAdapter
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.retry import Retry as BlockingRetry

from pheromone import ratelimits

# Real-time coordination (docs/COORDINATION.md): rate limits, broadcast subscriptions.
from pheromone.contracts import (
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
from pheromone.contracts import pattern_id as derive_pattern_id
from pheromone.contracts.broadcast import BroadcastKind, RateLimitStatus, rate_limit_expiry
from pheromone.contracts.streams import (
    DEFAULT_PREFIX,
    DISCOVERY_TTL_S,
    RATE_LIMIT_EXPIRY_FACTOR,
    Keys,
    dead_letter,
    stream_for,
)
from pheromone.contracts.types import Identifier, UtcDatetime
from pheromone.errors import ClientClosedError, FlushTimeout
from pheromone.plumbing.append import envelope_frame, letter_frame, spool_line, spooled_frame
from pheromone.plumbing.cluster import follow_moved
from pheromone.queries import QueryClient
from pheromone.spool import Spool, SpoolError
from pheromone.subscriptions import BroadcastHub, Filter, Subscription, acquire_hub, release_hub

log = logging.getLogger(__name__)

_BACKOFF_MIN_S = 0.05
_BACKOFF_MAX_S = 2.0
_READ_SIZE = 65_536


class _Extras(BaseModel):
    correlation_id: Identifier | None = None
    occurred_at: UtcDatetime | None = None


_EXTRAS = TypeAdapter(_Extras)
_Route = tuple[bytes, bytes, Callable[[Any], bytes]]
"""Per payload class: the XADD command's head up to the envelope (stream included), its tail after it (the
kind field), and the class's JSON serialiser."""


def utc_text(ns: int) -> bytes:
    """`ns` since the epoch as pydantic writes a UTC datetime: microseconds, a zero fraction left out, `Z`."""
    seconds, micros = divmod(ns // 1000, 1_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S").encode()
    return b"%s.%06dZ" % (text, micros) if micros else text + b"Z"


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
        from pheromone.plumbing.connection import settings_url
        from pheromone.plumbing.settings import ConnectionSettings

        # Fail fast on a bad workspace or job name, before any event is built.
        Envelope(workspace=workspace, job=job, payload=EscalationOutcomeRecorded(escalation_id="x", outcome="success"))
        if buffer_size < 1 or batch_size < 1:
            raise ValueError("buffer_size and batch_size must be at least 1")
        self.workspace, self.job = workspace, job
        env = ConnectionSettings() if url is None or prefix is None or data_dir is None else None
        self.keys = Keys(prefix or (env.prefix if env else DEFAULT_PREFIX))
        env_url = settings_url(env) if env else None  # with PHEROMONE_REDIS_PASSWORD / _TLS_* merged in
        self._url = url or env_url
        self._data_dir = data_dir or (env.data_dir if env else Path("."))
        self._spool = Spool(spool_dir or self._data_dir / "spool", max_bytes=max_spool_bytes)
        self._buffer_size, self._batch_size = buffer_size, batch_size
        self._close_timeout = close_timeout
        # The envelope's JSON around its event id, time, correlation id and payload (`emit()`).
        self._envelope_head = f'{{"schema_version":{SCHEMA_VERSION},"event_id":"'.encode()
        self._envelope_scope = (
            f',"workspace":{json.dumps(workspace)},"job":{json.dumps(job)},"correlation_id":'.encode()
        )
        self._envelope_fixed = (len(self._envelope_head) + 26 + len(b'","occurred_at":"') + 1
                                + len(self._envelope_scope) + len(b',"payload":') + 1)
        self._routes: dict[type[BaseModel], _Route] = {}
        self._second, self._second_text = -1, b""  # the current second's text, for `occurred_at`
        # Shared with the sender thread (see the module docstring).
        self._buffer: deque[bytes] = deque()
        self._lock = threading.Lock()
        self._inflight: list[bytes] = []
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._parked = True
        """The sender waits for a wake-up: the next emit() schedules one (`_kick`)."""
        self._kick_scheduled = False
        self._offline = False
        self._spill_blocked_until = 0.0
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # The sender thread's own.
        self._conn: AbstractConnection | None = None
        self._sock: socket.socket | None = None
        # The job's loop.
        self._redis: aioredis.Redis | None = None
        self._server: Any = None
        self._open = False
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
            from pheromone.plumbing.embedded import ensure_server

            self._url, self._server = await asyncio.to_thread(ensure_server, self._data_dir)
        from pheromone.plumbing.connection import redis_client  # credentials and TLS from the URL (docs/SECURITY.md)

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
        self._loop = asyncio.get_running_loop()
        self._stop.clear()
        self._parked = True
        self._open = True
        # Events a previous client left in the spool count as not yet sent: flush() and close() wait for them.
        if self._spool.pending():
            self._wake.set()
        self._thread = threading.Thread(target=self._sender, name="pheromone-sender", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if not self._open:
            return
        self._open = False
        sent = True
        try:
            await self.flush(timeout=self._close_timeout)
        except FlushTimeout:
            sent = False
        await self._stop_sender(interrupt=not sent)
        with self._lock:
            self._buffer.extendleft(reversed(self._inflight))  # only if the sender died mid-batch
            self._inflight = []
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
        route = self._routes.get(type(record)) or self._route(record)
        # The record validated itself when it was built and workspace/job were checked in __init__; only the
        # caller's extras need validating here.
        event_id = new_id()
        if correlation_id is None and occurred_at is None:
            occurred, correlation = self._stamp(time.time_ns()), b"null"
        else:
            extras = _EXTRAS.validate_python({"correlation_id": correlation_id, "occurred_at": occurred_at})
            when = extras.occurred_at or datetime.now(UTC)
            occurred = when.isoformat().replace("+00:00", "Z").encode()
            correlation = b"null" if extras.correlation_id is None else b'"%s"' % extras.correlation_id.encode()
        # The event's XADD command; its envelope JSON is byte for byte `Envelope.model_dump_json()` (tested).
        # Bytes only: the buffer holds nothing the garbage collector tracks, and the record is not kept.
        head, tail, to_json = route
        payload = to_json(record)
        self._buffer.append(b'%s$%d\r\n%s%s","occurred_at":"%s"%s%s,"payload":%s}%s' % (
            head, self._envelope_fixed + len(occurred) + len(correlation) + len(payload), self._envelope_head,
            event_id.encode(), occurred, self._envelope_scope, correlation, payload, tail))
        self.stats.emitted += 1
        # While Redis is away, spill every batch_size events rather than at buffer_size: small spills keep each
        # emit() short.
        if len(self._buffer) >= (self._batch_size if self._offline else self._buffer_size):
            with self._lock:
                self._spill()
        if self._parked and not self._kick_scheduled:
            # Woken from the loop, not from here: a job's burst of emits between two awaits costs one wake-up.
            self._kick_scheduled = True
            assert self._loop is not None
            self._loop.call_soon(self._kick)
        return event_id

    def _route(self, record: object) -> _Route:
        if not isinstance(record, PAYLOAD_TYPES):
            raise TypeError(f"emit() takes a pheromone record (one of contracts.PAYLOAD_TYPES), not {type(record)!r}")
        payload_type: str = cast(Payload, record).type
        stream, kind = self.keys.stream(stream_for(payload_type)).encode(), payload_type.encode()
        head, tail = envelope_frame(stream, kind)
        route = self._routes[type(record)] = (head, tail, type(record).__pydantic_serializer__.to_json)
        return route

    def _stamp(self, ns: int) -> bytes:
        """`utc_text(ns)`, the second's text computed once per second."""
        seconds, micros = divmod(ns // 1000, 1_000_000)
        if seconds != self._second:
            self._second, self._second_text = seconds, utc_text(seconds * 1_000_000_000)[:-1]
        return b"%s.%06dZ" % (self._second_text, micros) if micros else self._second_text + b"Z"

    def _kick(self) -> None:
        self._kick_scheduled = False
        self._wake.set()

    async def flush(self, timeout: float | None = 10.0) -> None:
        """Wait until everything emitted so far is in Redis; FlushTimeout if that takes over `timeout` s."""
        if self._thread is None or not self._thread.is_alive() or self._loop is None:
            return  # never opened, or closed: nothing more will be sent
        done = self._loop.create_future()
        self._waiters.append(done)
        self._wake.set()
        try:
            await asyncio.wait_for(done, timeout)
        except TimeoutError as exc:
            raise FlushTimeout(f"{self.backlog} buffered and {self.spool_bytes} spooled bytes not yet sent") from exc

    @property
    def backlog(self) -> int:
        """Events in memory not yet sent (spooled ones are counted in `spool_bytes`).

        Read under the lock the sender holds while it moves events between the buffer, the batch in flight and
        the spool: a failed batch is in none of them while it is being written to the spool, and a job that
        takes 0 to mean "sent or on disk" must not see it then."""
        with self._lock:
            return len(self._buffer) + len(self._inflight)

    @property
    def spool_bytes(self) -> int:
        with self._lock:
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
        result = await self.queries.ask("playbook", {"workspace": workspace or self.workspace}, timeout=timeout)
        return str(result["markdown"])

    async def guidance(self, model: str | None = None, *, limit: int = 20, timeout: float = 10.0) -> dict[str, Any]:
        """What this workspace's jobs running `model` are served: patterns (best first, without those sessions
        keep from that model), wait policies and the playbook."""
        if not self._open or self.queries is None:
            raise ClientClosedError("query on a client that is not open")
        args = {"workspace": self.workspace, "model": model, "limit": limit}
        return dict(await self.queries.ask("guidance", args, timeout=timeout))

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

    # -- the sender thread -----------------------------------------------------------------------------

    def _spill(self, *, final: bool = False) -> None:
        """Move the buffer to the spool; the caller holds `_lock`. `final` (close): past `max_spool_bytes` if
        need be, since memory is about to go; only a disk that refuses the write loses events, and that is
        counted and logged."""
        if not self._buffer or (time.monotonic() < self._spill_blocked_until and not final):
            return
        # Popped, not iterated: emit() may append meanwhile (on the right), which iteration would not allow.
        frames = [self._buffer.popleft() for _ in range(len(self._buffer))]
        try:
            self._spool.append([spool_line(f) for f in frames], over_limit=final)
        except SpoolError as exc:
            self.stats.spool_refusals += 1
            if final:
                self.stats.lost += len(frames)
                log.error("closing: lost %d events that neither Redis nor the spool took: %s", len(frames), exc)
                return
            # Spool full or disk full: keep them in memory (over the bound) rather than drop anything, and
            # do not retry (re-reading the whole buffer) on every emit: once a second is enough.
            self._buffer.extendleft(reversed(frames))
            self._spill_blocked_until = time.monotonic() + 1.0
            log.error("cannot spool %d events, keeping them in memory: %s", len(frames), exc)
            return
        self.stats.spooled += len(frames)

    def _sender(self) -> None:
        """The sender thread: wait to be woken, send until nothing is left, retry with backoff on failure."""
        backoff = _BACKOFF_MIN_S
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stop.is_set():
                    return
                try:
                    self._drain()
                    self._offline = False
                    backoff = _BACKOFF_MIN_S
                except Exception as exc:
                    # Never let the sender die: emit() would go on accepting events nobody sends.
                    self.stats.send_failures += 1
                    if isinstance(exc, RedisError | OSError):
                        log.debug("send failed, spooling %d events: %s", self.backlog, exc)
                    else:
                        log.exception("sender error; retrying")
                    self._disconnect()
                    self._offline = True
                    with self._lock:
                        self._buffer.extendleft(reversed(self._inflight))
                        self._inflight = []
                        self._spill()
                    if self._stop.wait(backoff):
                        return
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
                    self._wake.set()
        finally:
            self._disconnect()

    def _drain(self) -> None:
        """Send the spool, then the buffer, a batch at a time, until both are empty; then release the flush()
        calls made before that was seen."""
        while not self._stop.is_set():
            waiting = len(self._waiters)  # counted before looking: these calls' events are all behind us then
            cursor = None
            with self._lock:
                self._parked = True  # first, so that an emit() racing the checks below schedules a wake-up
                if self._spool.pending():
                    records, cursor = self._spool.read_batch(self._batch_size)
                elif self._buffer:
                    self._inflight = [self._buffer.popleft() for _ in range(min(len(self._buffer),
                                                                                self._batch_size))]
                else:
                    self._release([self._waiters.popleft() for _ in range(waiting)])
                    return
                self._parked = False
            if cursor is not None:
                frames, corrupt = self._decode_spooled(records)
                self._roundtrip(b"".join(frames + corrupt), len(frames) + len(corrupt))
                with self._lock:
                    self._spool.commit(cursor)
                self.stats.replayed += len(frames)
                if corrupt:
                    log.error("sent %d unreadable spool records to the dead letters", len(corrupt))
            else:
                self._roundtrip(b"".join(self._inflight), len(self._inflight))
                self.stats.sent += len(self._inflight)
                self._inflight = []

    def _release(self, waiters: list[asyncio.Future[None]]) -> None:
        if waiters and self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the job's loop is closed: nobody waits any more
                self._loop.call_soon_threadsafe(_resolve, waiters)

    def _decode_spooled(self, records: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
        """Spooled lines as XADD commands (`spooled_frame`); lines that are not ours (disk corruption) become
        commands adding a dead letter."""
        frames: list[bytes] = []
        corrupt: list[bytes] = []
        for record in records:
            stream, tab, body = record.partition(b"\t")
            text = stream.decode(errors="replace")
            name = self.keys.current(text)  # a spool older than the hash tag names the stream without it
            if tab and self.keys.owns(name):
                frames.append(spooled_frame(stream if name == text else name.encode(), body))
            else:
                # Nothing is dropped silently: an unreadable spool line goes to the dead letters for a human.
                letter = dead_letter(stream="spool", group="client", entry_id="0-0", error="unreadable spool record",
                                     deliveries=0, at_ms=int(time.time() * 1000), original={b"raw": record})
                corrupt.append(letter_frame(self.keys.dead.encode(), letter))
        return frames, corrupt

    def _roundtrip(self, data: bytes, replies: int) -> None:
        """Send commands and read their `replies`; ResponseError after reading them all if one failed.

        A connection that has been idle may have been closed by the server meanwhile: a send on a reused
        connection that fails is tried once more on a new one (at-least-once allows the duplicate)."""
        fresh = self._sock is None
        try:
            self._exchange(self._connect(), data, replies)
        except ResponseError as exc:
            # On a cluster, a node that does not serve our slot refused every command of the batch (all of them
            # name keys of that one slot): follow the redirection once (pheromone.plumbing.cluster).
            if not follow_moved(self._conn, str(exc)):
                raise
            self._disconnect()
            self._exchange(self._connect(), data, replies)
        except (OSError, RedisConnectionError):
            self._disconnect()
            if fresh or self._stop.is_set():
                raise
            self._exchange(self._connect(), data, replies)

    def _exchange(self, sock: socket.socket, data: bytes, replies: int) -> None:
        """Send `data` and read `replies` replies to XADD.

        Each successful reply is a bulk string (the entry id), two CRLFs; so while no error reply shows up (one
        starts with `-` or `!`, right after a CRLF, which no entry id holds), counting CRLFs is enough and the
        thread holds the GIL for a few byte scans per batch instead of a Python call per reply. Anything else
        is parsed reply by reply with hiredis."""
        sock.sendall(data)
        need, got = 2 * replies, b""
        while True:
            if got[:1] in (b"-", b"!") or b"\r\n-" in got or b"\r\n!" in got:
                break  # an error reply: parse them all
            count = got.count(b"\r\n")
            if count == need:
                return
            if count > need:
                break  # not what XADD answers: parse them all
            chunk = sock.recv(_READ_SIZE)
            if not chunk:
                raise RedisConnectionError("Redis closed the connection")
            got += chunk
        reader = hiredis.Reader()
        reader.feed(got)
        failed: object = None
        while replies:
            reply = reader.gets()
            if reply is False:
                chunk = sock.recv(_READ_SIZE)
                if not chunk:
                    raise RedisConnectionError("Redis closed the connection")
                reader.feed(chunk)
            else:
                replies -= 1
                if failed is None and isinstance(reply, hiredis.ReplyError):
                    failed = reply
        if failed is not None:
            raise ResponseError(str(failed))

    def _connect(self) -> socket.socket:
        if self._sock is None:
            from pheromone.plumbing.connection import blocking_connection

            assert self._url is not None
            if self._conn is None:
                self._conn = blocking_connection(self._url, retry=BlockingRetry(NoBackoff(), 0),
                                                 socket_connect_timeout=2, socket_timeout=5)
            connect: Callable[[], None] = self._conn.connect  # untyped in redis-py
            connect()  # AUTH, TLS and the rest of the handshake, as every other client does
            # From here on, this thread speaks RESP on the socket itself: redis-py's per-reply parsing holds the
            # GIL the job's loop needs for a Python call per reply (`_exchange` counts bytes instead).
            sock = self._conn._sock
            if sock is None:
                raise RedisConnectionError("connected without a socket")
            self._sock = sock
        return self._sock

    def _disconnect(self) -> None:
        self._sock = None
        if self._conn is not None:
            disconnect: Callable[[], None] = self._conn.disconnect  # untyped in redis-py
            with contextlib.suppress(Exception):
                disconnect()

    async def _stop_sender(self, *, interrupt: bool) -> None:
        """End the sender thread. `interrupt`: it may be blocked on a slow or dead server; shutting its socket
        down ends the wait at once (its batch goes back to the buffer, then to the spool)."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if interrupt and (sock := self._sock) is not None:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(sock, socket.SHUT_RDWR)  # the plain socket's: no TLS state touched
        await asyncio.to_thread(thread.join)  # bounded by the connect and socket timeouts


def _resolve(waiters: list[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():  # a flush() that timed out cancelled its own
            waiter.set_result(None)
