"""Hosts services in one process on one FastStream broker, plus the upkeep FastStream does not do.

For each `GroupWorker` a service declares, the runtime registers a FastStream batch subscriber (the group's
reader) and runs loops of its own:

- **retrier**: `GroupWorker.claim_pending()` every quarter of `claim_idle_ms` (FastStream's `min_idle_time`
  claimer reads one entry at a time and knows nothing of delivery counts or dead letters);
- **group watchdog**: every `group_check_s`, recreates a missing group (fresh or flushed server) and restarts
  a subscriber FastStream stopped on NOGROUP, so the service keeps running; it also refreshes the liveness key
  `{prefix}:alive:{service}:{consumer}` (a `services.status.Beat`, expiring after `heartbeat_ttl_s`), and
  logs losing and regaining Redis once each (the subscribers' failed reads count as losing it, and are not
  logged themselves: `_broker_logger`);
- **trimmer**: every `trim_interval_s` (and once at start), deletes the dead consumers of the groups it reads
  (`services.reaper`), then XTRIM MINID by age on the streams the services own, never past an entry some
  group still needs (`transport.trim`);
- **writer** (only for a service that declares `single_writer`, the store): takes and renews the service's
  writer lease; while this process holds it, takes over what dead consumers left pending and only then starts
  the service's subscribers and lets its retriers run (`services.writer`); without it, the service waits;
- **gauges**: every `metrics_interval_s`, the lag, pending, length and spool gauges of the runtime's
  `services.metrics.Metrics`, which `/metrics` serves (docs/OPERATIONS.md), and `groups`, which `problems()`
  (the HTTP side's `/readyz`) holds against the health bounds.

Services are built by factories in `SERVICES`; `pheromone serve --only NAME` hosts one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import redis.asyncio as aioredis
from faststream import AckPolicy
from faststream.redis import RedisBroker, StreamSub
from faststream.redis.annotations import RedisBatchStreamMessage
from faststream.redis.exceptions import StreamGroupNotFoundError
from faststream.redis.message import FAKE_CONSUMER, RedisListMessage
from faststream.redis.message import RedisBatchStreamMessage as BatchMessage
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pheromone.contracts.streams import Keys
from pheromone.plumbing import connection
from pheromone.services import asyncapi, reaper, transport
from pheromone.services.consumer import GroupWorker
from pheromone.services.context import ServiceContext, ServiceFactory, ServiceParts
from pheromone.services.metrics import Metrics, MetricsServer
from pheromone.services.settings import Settings
from pheromone.services.status import Beat, GroupStatus, client_name, groups, spool
from pheromone.services.writer import Writer, WriterLease

log = logging.getLogger(__name__)


def _factories() -> dict[str, ServiceFactory]:
    from pheromone.services.broadcaster.service import build as build_broadcaster
    from pheromone.services.consolidator.service import build as build_consolidator
    from pheromone.services.coordinator.service import build as build_coordinator
    from pheromone.services.entropy.service import build as build_entropy
    from pheromone.services.query.service import build as build_query
    from pheromone.services.store.service import build as build_store

    return {"store": build_store, "query": build_query, "coordinator": build_coordinator,
            "broadcaster": build_broadcaster, "entropy": build_entropy, "consolidator": build_consolidator}


def service_names() -> tuple[str, ...]:
    return tuple(_factories())


async def _raw_batch_parser(message: Mapping[str, Any], original: object = None) -> BatchMessage:
    # FastStream's default parser JSON-decodes every entry and fails the whole batch on one bad entry; our
    # entries are parsed (and dead-lettered one by one) by GroupWorker, so hand them over untouched.
    return BatchMessage(raw_message=message, body=b"", consumer=FAKE_CONSUMER, group=None)


async def _raw_list_parser(message: Mapping[str, Any], original: object = None) -> RedisListMessage:
    # FastStream's list parser unwraps FastStream-shaped bodies and honours their headers.reply_to, which
    # would let a request make the service publish to any channel it names: take the bytes as they are.
    return RedisListMessage(raw_message=message, body=message["data"])  # type: ignore[arg-type]


async def _raw_body(message: Any, original: object = None) -> bytes:
    return message.body  # type: ignore[no-any-return]


async def _no_decoder(message: object, original: object = None) -> None:
    return None


class Runtime:
    """Starts the named services, their subscribers and upkeep loops; `stop()` shuts all down cleanly."""

    def __init__(self, settings: Settings, redis_url: str, services: Sequence[str] | None = None) -> None:
        unknown = set(services or ()) - set(service_names())
        if unknown:
            raise ValueError(f"unknown service(s) {sorted(unknown)}; known: {', '.join(service_names())}")
        self.settings = settings
        self.redis_url = redis_url
        self.names = tuple(services or service_names())
        self.keys = Keys(settings.prefix)
        # Named, so `pheromone health` can see this process's connection vanish the moment it dies.
        self.redis: aioredis.Redis = connection.redis_client(
            redis_url, client_name=client_name(os.uname().nodename, os.getpid()))
        self.broker = RedisBroker(**connection.broker_options(redis_url), logger=self._broker_logger(),
                                  log_level=logging.DEBUG)
        self.parts: list[ServiceParts] = []
        self._subscribers: list[tuple[GroupWorker, Any]] = []
        self._idle: dict[int, Any] = {}  # a single-writer worker's subscriber while it does not read (by id)
        self._writers: list[Writer] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False
        self.metrics = Metrics()
        self.metrics_server: MetricsServer | None = None
        self._redis_ok = True  # the last Redis call of an upkeep loop worked: "lost" and "regained" log once
        self._stopping = False  # a stop closes the broker's connections under its readers: not an outage
        self._beat_at: float | None = None  # monotonic time of the watchdog's last written heartbeat
        self.groups: list[GroupStatus] = []
        """The groups on the streams this runtime reads, as the gauge loop last read them."""
        self._started_ms = int(time.time() * 1000)

    async def start(self) -> None:
        """Open every service and start consuming; on failure, close what was opened and re-raise (a store
        writer thread or a broker connection left open would keep the process from exiting)."""
        self._stopping = False
        try:
            await self._start()
        except BaseException:
            with contextlib.suppress(Exception):
                await self.stop()
            raise

    async def _start(self) -> None:
        if self.settings.metrics_port:  # first: a port in use fails the start before anything is opened
            self.metrics_server = MetricsServer(self.metrics, self.settings.metrics_addr, self.settings.metrics_port)
        ctx = ServiceContext(self.settings, self.redis, self.keys, self.redis_url, self.metrics, self.names)
        factories = _factories()
        for name in self.names:
            self.parts.append(await factories[name](ctx))
        for part in self.parts:
            for worker in part.workers:
                await self._ensure_group(worker)
                if not part.single_writer:
                    self._subscribers.append((worker, self._subscribe(worker)))
            for source, handler in part.subscriptions:
                timed = _timed(handler, self.metrics.handler_seconds.labels(part.name, _source_name(source, self.keys)))
                doc = asyncapi.LIST_READERS[_source_name(source, self.keys)]
                self.broker.subscriber(list=source, parser=_raw_list_parser, decoder=_raw_body,
                                       title=doc.title, description=doc.description)(timed)
        await self.broker.start()
        self._spawn(self._gauges(), "gauges")
        for part in self.parts:
            writer = self._writer(part) if part.single_writer else None
            if writer is not None:
                self._writers.append(writer)
                self._spawn(self._lease(writer), f"writer:{part.name}")
            for worker in part.workers:
                self._spawn(self._retrier(worker, writer), f"retrier:{worker.service}:{worker.stream}")
            for loop in part.loops:
                self._spawn(loop(), f"loop:{part.name}")
        self._spawn(self._watchdog(), "watchdog")
        self._spawn(self._trimmer(), "trimmer")
        self._started = True
        log.info("services started: %s (redis %s, prefix %s%s)", ", ".join(self.names),
                 _redact(self.redis_url), self.settings.prefix,
                 f", metrics on {self.settings.metrics_addr}:{self.metrics_server.port}" if self.metrics_server else "")

    async def stop(self) -> None:
        was_started, self._started = self._started, False  # not ready from the first moment of a stop
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            # Python 3.11's asyncio.wait_for, which redis-py uses for socket timeouts, can swallow a
            # cancellation when the awaited call completes in the same loop iteration (bpo-42130, fixed in
            # 3.12); the loop then carries on and a plain `await task` never returns. Cancel until it ends.
            while not task.done():
                await asyncio.wait([task], timeout=0.1)
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        # broker.stop() waits for in-flight handlers; drain() then waits for the batches they handed on, so
        # everything read is committed and acked before the store closes.
        await self.broker.stop()
        for part in self.parts:
            for worker in part.workers:
                await worker.drain()
        for part in reversed(self.parts):
            if part.close is not None:
                await part.close()
        # Withdraw the heartbeats and the consumers that hold nothing, so `pheromone health` and `status` see
        # a clean stop at once rather than at their expiry, and give writer leases back, so a standby takes
        # over now rather than when they expire.
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(1.0):
                for writer in self._writers:
                    if writer.held:
                        await writer.lease.release()
                await self.redis.delete(*self._beat_keys())
                for worker, _ in self._subscribers:
                    await reaper.retire(self.redis, worker.stream, worker.group, worker.consumer)
        self._writers.clear()
        await self.redis.aclose()
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        if was_started:
            log.info("services stopped: %s", ", ".join(self.names))

    def _subscribe(self, worker: GroupWorker) -> Any:
        s = self.settings
        doc = asyncapi.reader(self.keys.short(worker.stream), worker.group)
        sub = self.broker.subscriber(
            stream=StreamSub(
                worker.stream, group=worker.group, consumer=worker.consumer, batch=True,
                max_records=s.batch_size, polling_interval=s.poll_ms,
            ),
            parser=_raw_batch_parser,
            decoder=_no_decoder,
            ack_policy=AckPolicy.MANUAL,
            title=doc.title, description=doc.description,
        )

        @sub
        async def handle(msg: RedisBatchStreamMessage) -> None:
            """Reads `worker.stream` as `worker.group`; acks are the worker's (after commit)."""
            raw = msg.raw_message
            await worker.on_batch(list(zip(raw["message_ids"], raw["data"], strict=True)))

        return sub

    def _writer(self, part: ServiceParts) -> Writer:
        s = self.settings
        ttl_ms = int(s.heartbeat_ttl * 1000)
        owner = f"{part.name}-{s.consumer_name}"
        return Writer(
            WriterLease(self.redis, self.keys.writer(part.name), owner, ttl_ms), self.keys, part.workers,
            self._start_reading, self._stop_reading, renew_s=min(s.group_check_s, s.heartbeat_ttl / 3),
            pause_s=max(s.poll_ms / 1000, 0.01),
        )

    async def _lease(self, writer: Writer) -> None:
        while True:
            try:
                await writer.run()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._lost(exc)
                log.debug("writer %s: redis unavailable: %s", writer.lease.owner, exc)
            except RedisError as exc:
                log.warning("writer %s: %s", writer.lease.owner, exc)
            except Exception:
                log.exception("writer %s failed; continuing", writer.lease.owner)
            await asyncio.sleep(writer.renew_s)

    async def _start_reading(self, worker: GroupWorker) -> None:
        sub = self._idle.pop(id(worker), None) or self._subscribe(worker)
        await sub.start()
        self._subscribers.append((worker, sub))

    async def _stop_reading(self, worker: GroupWorker) -> None:
        for i, (w, sub) in enumerate(self._subscribers):
            if w is worker:
                del self._subscribers[i]
                self._idle[id(worker)] = sub
                await sub.stop()
                break
        await worker.drain()

    async def _ensure_group(self, worker: GroupWorker) -> None:
        if await transport.ensure_group(self.redis, worker.stream, worker.group):
            log.info("created group %s on %s", worker.group, worker.stream)

    def _spawn(self, coro: Awaitable[None], name: str) -> None:
        self._tasks.append(asyncio.ensure_future(coro))
        self._tasks[-1].set_name(name)

    async def _retrier(self, worker: GroupWorker, writer: Writer | None) -> None:
        pause = max(self.settings.claim_idle_ms / 4000, self.settings.poll_ms / 1000)
        while True:
            try:
                # A standby claims nothing: only the active writer applies its service's streams.
                if (writer is None or writer.writing) and await worker.claim_pending():
                    continue
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._lost(exc)
                log.debug("retrier %s: redis unavailable: %s", worker.stream, exc)
            except RedisError as exc:
                log.warning("retrier %s: %s", worker.stream, self._sentence(exc))
            except Exception:  # an upkeep loop must never end: log it and go on
                log.exception("retrier %s failed; continuing", worker.stream)
            await asyncio.sleep(pause)

    async def _watchdog(self) -> None:
        ttl_ms = int(self.settings.heartbeat_ttl * 1000)
        beats = {
            part.name: Beat(part.name, self.settings.consumer_name, os.uname().nodename, os.getpid(),
                            self._started_ms, ttl_ms).encode()
            for part in self.parts
        }
        while True:
            try:
                for worker in (w for part in self.parts for w in part.workers):
                    if await transport.ensure_group(self.redis, worker.stream, worker.group):
                        log.warning("group %s on %s was missing (server flushed?); recreated",
                                    worker.group, worker.stream)
                for worker, sub in list(self._subscribers):
                    if not sub.running:
                        log.warning("restarting subscriber %s on %s", worker.group, worker.stream)
                        await sub.start()
                async with self.redis.pipeline(transaction=False) as pipe:
                    for key, part in zip(self._beat_keys(), self.parts, strict=True):
                        pipe.set(key, beats[part.name], px=ttl_ms)
                    await pipe.execute()
                self._beat_at = time.monotonic()
                self._regained()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._lost(exc)
                log.debug("watchdog: redis unavailable: %s", exc)
            except RedisError as exc:
                log.warning("watchdog: %s", self._sentence(exc))
            except Exception:
                log.exception("watchdog failed; continuing")
            await asyncio.sleep(self.settings.group_check_s)

    async def _trimmer(self) -> None:
        while True:
            # Two steps, each failing alone: a server that refuses one (an ACL without the reaper's commands)
            # must not stop the other.
            for step, run in (("reaper", self._reap), ("trimmer", self._trim)):
                try:
                    await run()
                except (RedisConnectionError, RedisTimeoutError) as exc:
                    self._lost(exc)
                    log.debug("%s: redis unavailable: %s", step, exc)
                except RedisError as exc:
                    log.warning("%s: %s", step, self._sentence(exc))
                except Exception:
                    log.exception("%s failed; continuing", step)
            await asyncio.sleep(self.settings.trim_interval_s)

    async def _trim(self) -> None:
        trimmed = []
        for part in self.parts:
            for stream, retention, respect in part.trims:
                removed = await transport.trim(self.redis, stream, retention, respect_groups=respect)
                if removed:
                    trimmed.append(f"{removed} from {stream}")
        if trimmed:
            log.debug("trimmed %s", ", ".join(trimmed))

    async def _gauges(self) -> None:
        """Refresh the lag, pending and stream-length gauges every `metrics_interval_s` (services.metrics)."""
        m, names = self.metrics, tuple(dict.fromkeys(w.stream for w, _ in self._subscribers))
        short = tuple(self.keys.short(name) for name in names)
        while True:
            try:
                # Read everything first, then set every gauge with no await in between: a scrape (another
                # thread) then sees one refresh's lag and stream lengths together, never half of each.
                found = await groups(self.redis, self.keys, short)
                lengths = [await self.redis.xlen(key) for key in names]
                spooled = await asyncio.to_thread(spool, self.settings.data_dir / "spool")
                self.groups = found
                for g in found:
                    m.lag.labels(g.stream, g.group).set(-1 if g.lag is None else g.lag)
                    m.pending.labels(g.stream, g.group).set(g.pending)
                for name, length in zip(short, lengths, strict=True):
                    m.stream_length.labels(name).set(length)
                m.spool_events.set(spooled["events"])
                m.spool_bytes.set(spooled["bytes"])
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self._lost(exc)
            except RedisError as exc:
                log.warning("metrics gauges: %s", self._sentence(exc))
            except Exception:
                log.exception("metrics gauges failed; continuing")
            await asyncio.sleep(self.settings.metrics_interval_s)

    async def _reap(self) -> None:
        """Delete the dead consumers of every group this runtime reads (services.reaper)."""
        idle_ms = int(self.settings.consumer_expiry_s * 1000)
        for worker, _ in self._subscribers:
            gone = await reaper.reap(self.redis, worker.stream, worker.group, idle_ms=idle_ms,
                                     keep=worker.consumer, heartbeat_of=self._heartbeat_of)
            if gone:
                log.info("deleted %d dead consumer(s) from group %s on %s: %s", len(gone), worker.group,
                         worker.stream, ", ".join(gone))

    def _heartbeat_of(self, consumer: str) -> str | None:
        """The liveness key of a consumer named by a runtime (`<service>-<consumer_name>`), else None."""
        for service in service_names():
            if consumer.startswith(f"{service}-"):
                return self.keys.heartbeat(f"{service}:{consumer.removeprefix(f'{service}-')}")
        return None

    @property
    def writing(self) -> bool:
        """Each single-writer service of this runtime holds its lease and reads (False on a standby)."""
        return all(w.writing for w in self._writers)

    def problems(self) -> list[str]:
        """Why this process is not ready ([] when it is): not started, Redis lost, no heartbeat written within
        its TTL, a reader stopped, or one of its groups past `health_max_lag` / `health_max_pending` (as the
        gauge loop last read them). In memory only: `/readyz` costs no Redis call."""
        s = self.settings
        if not self._started:
            return ["not started (or stopping)"]
        out = []
        if not self._redis_ok:
            out.append("redis unreachable")
        age = None if self._beat_at is None else time.monotonic() - self._beat_at
        if age is None or age > s.heartbeat_ttl:
            out.append("no heartbeat written yet" if age is None else f"last heartbeat written {age:.1f}s ago")
        for worker, sub in self._subscribers:
            if not sub.running:
                out.append(f"reader of group {worker.group} on {worker.stream} is stopped")
        own = {(self.keys.short(w.stream), w.group) for w, _ in self._subscribers}
        for g in self.groups:
            if (g.stream, g.group) not in own:
                continue
            if g.lag is not None and g.lag > s.health_max_lag:
                out.append(f"group {g.group} on {g.stream}: lag {g.lag} > {s.health_max_lag}")
            if g.pending > s.health_max_pending:
                out.append(f"group {g.group} on {g.stream}: {g.pending} pending > {s.health_max_pending}")
        return out

    def _beat_keys(self) -> list[str]:
        return [self.keys.heartbeat(f"{part.name}:{self.settings.consumer_name}") for part in self.parts]

    def _broker_logger(self) -> logging.Logger:
        """FastStream's logger for this runtime's broker: `pheromone.faststream`, filtered.

        FastStream logs every message (and every task callback) at INFO; our loops log lifecycle events
        themselves, so it only passes warnings and errors. And while Redis is away each subscriber logs every
        failed read ("Message fetch error") with its traceback, about once a second: those records are dropped
        and count as this runtime losing Redis (`_lost`), so an outage is the runtime's one "redis lost" line
        and one "redis regained" line. A logger of this runtime's own (a child of the named one, which
        handlers and levels configured for `pheromone.faststream` still reach), so two runtimes in one process
        never mark each other lost.
        """
        named = logging.getLogger("pheromone.faststream")
        own = logging.Logger(named.name, logging.WARNING)
        own.parent = named
        own.addFilter(self._connection_errors)
        return own

    def _connection_errors(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | ConnectionError | TimeoutError):
            self._lost(exc)
            return False
        if isinstance(exc, StreamGroupNotFoundError):
            # Its message says it all; the watchdog recreates the group and restarts the subscriber.
            record.exc_info, record.exc_text = None, None
        return True

    def _sentence(self, exc: BaseException) -> str:
        """A Redis error as one line naming the server and what to change, never the password (e.g. an ACL
        user missing a command: `connection.describe`)."""
        return connection.describe(exc, self.redis_url)

    def _lost(self, exc: Exception) -> None:
        if self._redis_ok and not self._stopping:
            self._redis_ok = False
            self.metrics.redis_up.set(0)
            log.warning("redis lost (%s); services wait for it", self._sentence(exc))

    def _regained(self) -> None:
        if not self._redis_ok:
            self._redis_ok = True
            self.metrics.redis_up.set(1)
            log.info("redis regained")


def _timed(handler: Callable[[bytes], Awaitable[None]], histogram: Any) -> Callable[[bytes], Awaitable[None]]:
    """`handler`, observing each call's latency; FastStream reads the wrapped signature (`__wrapped__`)."""

    @functools.wraps(handler)
    async def timed(body: bytes) -> None:
        started = time.perf_counter()
        try:
            await handler(body)
        finally:
            histogram.observe(time.perf_counter() - started)

    return timed


def _source_name(source: Any, keys: Keys) -> str:
    name = str(getattr(source, "name", source))
    return keys.short(name)


def _redact(url: str) -> str:
    """A URL without its password, for logs (`pheromone.plumbing.connection.redact`)."""
    return connection.redact(url)
