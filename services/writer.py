"""One active writer for a service whose effect depends on stream order (the store); replicas wait as standbys.

Why: a store's projections follow its stream's order (a session's `harvesting` needs its `triggered`). Two
consumers of one group each read a different batch and commit them in whatever order their transactions
get the write lock, so a later event can be applied before an earlier one. And a restarted consumer reads
new entries (`>`) at once, while the entries a dead one had read stay pending until the retrier claims them
`claim_idle_ms` later. So:

- **Lease.** `{prefix}:writer:<service>` names the active consumer. Each replica runs `Writer.run`: it takes
  the lease if nobody holds it (`HOLD`: one script takes or renews), the holder renews it every `renew_s`, and
  it expires `ttl_ms` after its holder's last renewal (the heartbeat TTL, `Settings.heartbeat_ttl`). Only the
  holder reads its groups and runs their retriers; a standby only beats and tries the lease. A holder that
  finds the lease taken by another (it could not renew for a whole TTL) stops reading at once and finishes
  what it read (drain); a read still blocked on the server then may deliver one more batch to it, which it
  does not apply (a stopped FastStream subscriber drops it) and the next writer takes over. A clean stop
  gives the lease back, so a standby takes over within `renew_s`.
- **Takeover, before anything newer.** Once it holds the lease, and before it reads a single new entry, the
  writer claims every entry its group's other consumers left pending and applies them, oldest first, then its
  own pending (a restart with a fixed consumer name). A consumer is *gone* when its liveness key
  `{prefix}:alive:<service>:<name>` (its consumer name without the `<service>-` prefix) has expired or was
  withdrawn (`services.status`): its entries are claimed at once. A live consumer's entries are claimed once
  idle for `claim_idle_ms`; until then the takeover waits for it to ack them (a holder that has just lost the
  lease draining its last batch). Every pending entry precedes every unread one (XREADGROUP `>` reads past
  the group's last-delivered id), so applying them first keeps the stream's order across the crash.
- Entries the takeover cannot apply now (an early lifecycle event, `services.order`) stay pending for the
  retrier; a store that is unavailable (`StoreBusyError`) is waited for, so nothing newer overtakes them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

import redis.asyncio as aioredis

from pheromone.contracts.streams import Keys
from pheromone.services import transport
from pheromone.services.consumer import GroupWorker

log = logging.getLogger(__name__)

HOLD = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
"""Take the lease if it is free, renew it if it is ours (one atomic step): 1 if we hold it now, else 0.

    if lease is held by another:  return 0              -- someone else is the writer
    SET(lease, me, PX ttl)                              -- take, or renew (with SET, not PEXPIRE: the commands
    return 1                                               pheromone needs stay those of docs/SECURITY.md)
"""
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class WriterLease:
    """The lease `key`, held by `owner` for `ttl_ms` after each `hold()`."""

    def __init__(self, redis: aioredis.Redis, key: str, owner: str, ttl_ms: int) -> None:
        self.key, self.owner, self.ttl_ms = key, owner, ttl_ms
        self._redis = redis
        self._hold = redis.register_script(HOLD)
        self._release = redis.register_script(RELEASE)

    async def hold(self) -> bool:
        return bool(await self._hold(keys=[self.key], args=[self.owner, self.ttl_ms]))

    async def release(self) -> bool:
        return bool(await self._release(keys=[self.key], args=[self.owner]))

    async def holder(self) -> str | None:
        value = await self._redis.get(self.key)
        return None if value is None else value.decode(errors="replace") if isinstance(value, bytes) else str(value)


async def is_gone(redis: aioredis.Redis, keys: Keys, service: str, consumer: str) -> bool:
    """True when `consumer` of `service`'s groups has no liveness key: it stopped or died (its key expired)."""
    name = consumer.removeprefix(f"{service}-")
    return not await redis.exists(keys.heartbeat(f"{service}:{name}"))


async def left_pending(worker: GroupWorker, keys: Keys) -> tuple[list[tuple[bytes, int]], bool]:
    """The pending entries of `worker`'s group the worker may take over now (its own, those of gone consumers,
    those a live consumer left idle for `claim_idle_ms`), with their delivery counts; and whether a live
    consumer still holds entries it read recently (then the takeover waits for it)."""
    r, stream, group = worker.redis, worker.stream, worker.group
    mine: list[tuple[bytes, int]] = []
    busy = False
    summary = await r.xpending(stream, group)
    for info in summary["consumers"] or ():
        count = int(info["pending"])
        if not count:
            continue
        name = info["name"].decode() if isinstance(info["name"], bytes) else str(info["name"])
        owned = name == worker.consumer or await is_gone(r, keys, worker.service, name)
        rows = await r.xpending_range(stream, group, min="-", max="+", count=count, consumername=name)
        for row in rows:
            if owned or int(row["time_since_delivered"]) >= worker.claim_idle_ms:
                entry_id = row["message_id"]
                mine.append((entry_id if isinstance(entry_id, bytes) else str(entry_id).encode(),
                             int(row["times_delivered"])))
            else:
                busy = True
    mine.sort(key=lambda item: transport.id_key(item[0]))
    return mine, busy


async def take_over(worker: GroupWorker, keys: Keys, pause_s: float, still_held: Callable[[], bool]) -> int:
    """Apply, oldest first, every entry of `worker`'s group left pending by a consumer that is gone (and the
    worker's own), before the worker reads anything newer; returns how many entries it handled."""
    handled = 0
    while still_held():
        pending, busy = await left_pending(worker, keys)
        if busy:
            await asyncio.sleep(pause_s)  # a live consumer is finishing a batch: its acks come, or its idleness
            continue
        for start in range(0, len(pending), worker.batch_size):
            if not still_held():
                return handled
            chunk = pending[start : start + worker.batch_size]
            handled += await _apply(worker, chunk, pause_s, still_held)
        return handled
    return handled


async def _apply(
    worker: GroupWorker, chunk: Sequence[tuple[bytes, int]], pause_s: float, still_held: Callable[[], bool]
) -> int:
    counts = {entry_id: times + 1 for entry_id, times in chunk}
    entries = await transport.claim(worker.redis, worker.stream, worker.group, worker.consumer, 0, list(counts))
    if not entries:
        return 0
    deliveries = [counts.get(entry_id, 1) for entry_id, _ in entries]
    if not await _as_batch(worker, entries, deliveries, pause_s, still_held):
        for entry, count in zip(entries, deliveries, strict=True):
            while still_held():
                await worker.handle_now([entry], [count])
                if not worker.store_down:
                    break
                await asyncio.sleep(pause_s)  # the store is unavailable: nothing newer may overtake these
    worker.stats.claimed += len(entries)
    return len(entries)


async def _as_batch(
    worker: GroupWorker, entries: Sequence[transport.Entry], deliveries: Sequence[int], pause_s: float,
    still_held: Callable[[], bool],
) -> bool:
    """Handle `entries` in one transaction, waiting out an unavailable store; False if the batch failed (one
    entry made it fail: the caller goes one entry at a time). As a batch, no entry is on its last delivery, so
    a failed batch dead-letters none (one poison entry would take those that were with it)."""
    trial = [min(count, worker.max_deliveries - 1) for count in deliveries]
    if min(trial) < 1:
        return False
    while still_held():
        failures = worker.stats.failures
        await worker.handle_now(entries, trial)
        if worker.stats.failures == failures:
            return True
        if not worker.store_down:
            return False
        await asyncio.sleep(pause_s)  # the store is unavailable: nothing newer may overtake these, so wait
    return True


class Writer:
    """Runs one service's workers only while it holds the service's writer lease (see the module docstring).

    `start_reading(worker)` starts a worker's subscriber, `stop_reading(worker)` stops it and waits for what it
    read to be committed and acked.
    """

    def __init__(
        self,
        lease: WriterLease,
        keys: Keys,
        workers: Sequence[GroupWorker],
        start_reading: Callable[[GroupWorker], Awaitable[None]],
        stop_reading: Callable[[GroupWorker], Awaitable[None]],
        renew_s: float,
        pause_s: float,
    ) -> None:
        self.lease, self.keys, self.workers = lease, keys, list(workers)
        self._start, self._stop = start_reading, stop_reading
        self.renew_s, self.pause_s = renew_s, pause_s
        self.held = False
        """The lease is ours (as of the last renewal)."""
        self.active = False
        """Taken over and reading (until its subscribers have stopped)."""

    async def run(self) -> None:
        """Take, renew and act on the lease until cancelled. Redis errors propagate (the runtime's loop logs
        them and calls again); the lease's TTL rides out a short outage."""
        while True:
            was = self.held
            self.held = await self.lease.hold()
            if self.held and not self.active:
                if not was:
                    log.info("%s: writer lease taken; taking over what dead consumers left pending", self.lease.owner)
                await self._activate()
            elif not self.held and self.active:
                log.warning("%s: writer lease now held by %s; stopping to read", self.lease.owner,
                            await self.lease.holder())
                await self.deactivate()
            await asyncio.sleep(self.renew_s)

    async def _activate(self) -> None:
        renewing = asyncio.ensure_future(self._renew())
        try:
            for worker in self.workers:
                handled = await take_over(worker, self.keys, self.pause_s, lambda: self.held)
                if handled:
                    log.info("%s: took over %d pending entries of %s", worker.consumer, handled, worker.stream)
            if not self.held:
                return
            for worker in self.workers:
                await self._start(worker)
            self.active = True
        finally:
            renewing.cancel()
            await asyncio.gather(renewing, return_exceptions=True)

    async def _renew(self) -> None:
        """Keep the lease while a long takeover runs (the main loop is busy in it)."""
        while self.held:
            await asyncio.sleep(self.renew_s)
            self.held = await self.lease.hold()

    @property
    def writing(self) -> bool:
        """The workers may claim and apply entries: active, and the lease still ours."""
        return self.active and self.held

    async def deactivate(self) -> None:
        for worker in self.workers:
            await self._stop(worker)
        self.active = False
