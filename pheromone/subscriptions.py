"""Broadcast subscriptions: any number of filtered async iterators fed by one reader per process.

    async with client.subscribe(kinds={"discovery"}, tags={"api"}, min_effectiveness=0.6) as sub:
        await sub.live(timeout=5)      # optional: the reader has caught up; what follows is live
        async for msg in sub:          # contracts.broadcast.BroadcastMessage
            ...

How it works:
- A `BroadcastHub` owns one task and one Redis connection that XREADs `{prefix}:broadcast` with BLOCK from its
  own cursor, so a message reaches the process as soon as it is published. Every client of the process with
  the same server and prefix shares it (`acquire_hub`): a process with 100 jobs holds one blocking
  connection, not 100 (redis-py's pool allows 100 connections, and a blocking read holds one).
- The reader starts `replay_window_s` back (default: the stream's retention) and keeps the unexpired messages
  it has read in a bounded cache, so a subscription made late first receives every unexpired message that
  matches it, then live ones.
- Each message is checked against each subscription's filter (kinds, tags, minimum effectiveness, own
  messages) on arrival and queued; expiry is checked again when the subscriber takes it, so an expired
  message is never delivered. A subscriber that falls `max_queue` behind loses its oldest messages
  (`Subscription.dropped` counts them); the reader never waits for a slow subscriber.
- If Redis goes away the reader retries with backoff from its cursor; nothing in the stream is skipped.

The registry of hubs is this module's one piece of process state: a process-wide reader is the point. Hubs are
per event loop and removed when their last client releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import RedisError

from pheromone.contracts.broadcast import BroadcastKind, BroadcastMessage
from pheromone.contracts.streams import BROADCAST_RETENTION_S, FIELD, FIELD_EXPIRES, Keys

log = logging.getLogger(__name__)

READ_COUNT = 1_000
BLOCK_MS = 5_000
"""How long one XREAD waits for news; new entries end the wait at once."""
CACHE_SIZE = 10_000
"""Unexpired messages kept for late subscriptions (the oldest go first)."""
_BACKOFF_MAX_S = 2.0
_FIELD, _FIELD_EXPIRES = FIELD.encode(), FIELD_EXPIRES.encode()


@dataclass(frozen=True, slots=True)
class Filter:
    """What one subscription wants. `tags` and `min_effectiveness` apply to the kinds that carry them
    (discoveries; drift alerts for tags); other kinds pass them."""

    workspace: str
    job: str
    kinds: frozenset[BroadcastKind] | None = None
    tags: frozenset[str] | None = None
    min_effectiveness: float | None = None
    include_own: bool = False

    def matches(self, msg: BroadcastMessage) -> bool:
        if self.kinds is not None and msg.kind not in self.kinds:
            return False
        if not self.include_own and msg.job == self.job and msg.workspace == self.workspace:
            return False
        if self.tags is not None and msg.kind in (BroadcastKind.DISCOVERY, BroadcastKind.DRIFT_ALERT):
            if self.tags.isdisjoint(msg.tags):
                return False
        if self.min_effectiveness is not None:
            score = msg.effectiveness
            if score is not None and score < self.min_effectiveness:
                return False
        return True


class Subscription:
    """An async iterator of `BroadcastMessage`s matching its filter; ends when closed."""

    def __init__(self, hub: BroadcastHub, flt: Filter, max_queue: int) -> None:
        self.filter = flt
        self.dropped = 0
        self.delivered = 0
        self._hub = hub
        self._queue: deque[BroadcastMessage] = deque()
        self._max = max_queue
        self._ready = asyncio.Event()
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> BroadcastMessage:
        while True:
            while self._queue:
                msg = self._queue.popleft()
                if not msg.expired(datetime.now(UTC)):
                    self.delivered += 1
                    return msg
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()

    async def get(self, timeout: float | None = None) -> BroadcastMessage:
        """The next message; TimeoutError after `timeout` seconds, StopAsyncIteration once closed."""
        async with asyncio.timeout(timeout):  # not wait_for: no task per call, cancellation kept (bpo-42130)
            return await self.__anext__()

    async def live(self, timeout: float | None = None) -> None:
        """Wait until the process's reader has caught up with the broadcast stream: every unexpired message it
        held is then queued here (`pending()`), and what comes next is delivered as it is published.
        TimeoutError after `timeout` seconds (Redis unreachable, for one)."""
        async with asyncio.timeout(timeout):
            await self._hub.caught_up.wait()

    @property
    def is_live(self) -> bool:
        return self._hub.caught_up.is_set()

    def pending(self) -> int:
        """Messages queued and not yet taken (some may expire before they are)."""
        return len(self._queue)

    def close(self) -> None:
        """Stop receiving; a consumer waiting in `async for` finishes after what is already queued."""
        if not self._closed:
            self._closed = True
            self._hub.remove(self)
            self._ready.set()

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def offer(self, msg: BroadcastMessage) -> None:
        if self._closed or not self.filter.matches(msg):
            return
        if len(self._queue) >= self._max:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(msg)
        self._ready.set()


class BroadcastHub:
    """One reader of the broadcast stream, fanning out to this process's subscriptions."""

    def __init__(self, url: str, keys: Keys, *, replay_window_s: float = BROADCAST_RETENTION_S,
                 cache_size: int = CACHE_SIZE) -> None:
        self.url, self.keys = url, keys
        self.replay_window_s = replay_window_s
        self.refs = 0
        self.invalid = 0
        self.loop = asyncio.get_running_loop()
        self._subs: list[Subscription] = []
        self._cache: deque[BroadcastMessage] = deque(maxlen=cache_size)
        self._redis: aioredis.Redis | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.cursor = f"{int((time.time() - replay_window_s) * 1000)}-0"
        self.caught_up = asyncio.Event()
        """Set once the reader has read everything that was in the stream when it started."""

    def start(self) -> None:
        if self._task is None:
            from pheromone.plumbing.connection import redis_client  # credentials and TLS from the URL

            # Socket timeout above the BLOCK time: a blocking read must not time out on its own.
            self._redis = redis_client(self.url, socket_connect_timeout=2, socket_timeout=BLOCK_MS / 1000 + 10)
            self._task = asyncio.create_task(self._run(), name="pheromone-broadcast-reader")

    async def close(self) -> None:
        for sub in list(self._subs):
            sub.close()
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            # redis-py can swallow a cancellation that lands while it sets up a connection (the class of bug
            # in redis/redis-py#2028): the read then blocks for its BLOCK time. The flag ends the loop after
            # that read; disconnecting makes that read fail now rather than in BLOCK_MS.
            done, _ = await asyncio.wait([self._task], timeout=0.2)
            if not done and self._redis is not None:
                await self._redis.connection_pool.disconnect()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._redis is not None:
            await self._redis.aclose()

    def subscribe(self, flt: Filter, max_queue: int = 10_000) -> Subscription:
        """A new subscription; it first receives every cached unexpired message that matches it."""
        sub = Subscription(self, flt, max_queue)
        now = datetime.now(UTC)
        for msg in self._cache:
            if not msg.expired(now):
                sub.offer(msg)
        self._subs.append(sub)
        return sub

    def remove(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subs.remove(sub)

    async def _run(self) -> None:
        assert self._redis is not None
        backoff = 0.05
        while not self._closing:
            try:
                reply = await self._redis.xread({self.keys.broadcast: self.cursor}, count=READ_COUNT,
                                                block=BLOCK_MS)
                backoff = 0.05
            except (RedisError, OSError) as exc:
                if self._closing:
                    return
                log.debug("broadcast reader: redis unavailable, retrying in %.2fs: %s", backoff, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            except Exception:  # the process's only reader must outlive any one failure
                log.exception("broadcast reader: unexpected failure, retrying in %.2fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            entries: list[tuple[bytes, dict[bytes, bytes]]] = reply[0][1] if reply else []  # type: ignore[index, assignment]
            if entries:
                self.cursor = entries[-1][0].decode()
                self._fan_out(entries)
            if len(entries) < READ_COUNT:
                self.caught_up.set()

    def _fan_out(self, entries: Iterable[tuple[bytes, dict[bytes, bytes]]]) -> None:
        now_ms = time.time() * 1000
        for _, fields in entries:
            try:
                if int(fields.get(_FIELD_EXPIRES, b"0")) <= now_ms:
                    continue  # expired: skipped without parsing
                msg = BroadcastMessage.model_validate_json(fields[_FIELD])
            except (ValidationError, ValueError, KeyError) as exc:
                self.invalid += 1
                log.debug("broadcast reader: skipped an invalid entry: %s", exc)
                continue
            self._cache.append(msg)
            for sub in self._subs:
                sub.offer(msg)


_HUBS: dict[tuple[str, str], BroadcastHub] = {}


def acquire_hub(url: str, keys: Keys, *, replay_window_s: float = BROADCAST_RETENTION_S) -> BroadcastHub:
    """The running loop's hub for (url, prefix), started and with one more reference.

    The first client's `replay_window_s` configures a hub; later clients share it as it is.
    """
    loop = asyncio.get_running_loop()
    hub = _HUBS.get((url, keys.prefix))
    if hub is None or hub.loop is not loop or hub.loop.is_closed():
        hub = BroadcastHub(url, keys, replay_window_s=replay_window_s)
        _HUBS[(url, keys.prefix)] = hub
    hub.refs += 1
    hub.start()
    return hub


async def release_hub(hub: BroadcastHub) -> None:
    """Drop one reference; the last one stops the reader and closes its connection."""
    hub.refs -= 1
    if hub.refs <= 0:
        if _HUBS.get((hub.url, hub.keys.prefix)) is hub:
            del _HUBS[(hub.url, hub.keys.prefix)]
        await hub.close()
