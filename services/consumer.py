"""One consumer group's worker: parse, hand to the service, dead-letter or ack, and retry what is stuck.

Every service that reads a stream through a group uses a `GroupWorker`:

- `on_batch(entries)` is called by the service's FastStream batch subscriber with the entries it read. Each
  entry is parsed, and the batch commits in the background while the next one is read. A worker given
  `kinds` acks entries whose kind field (`contracts.streams.FIELD_KIND`) names another kind without parsing
  them. Entries that are not a valid envelope are dead-lettered at once (by the store group, which
  keeps the record; other groups ack and skip them). Valid events go to the service's handler in one call.
  Entries the handler refuses (`rejected`) are dead-lettered with its reason; the rest are acked. If the
  handler raises, nothing is acked: the entries stay pending.
- `claim_pending()` is the retrier FastStream does not have: entries idle in the group's pending list longer
  than `claim_idle_ms` (a failed batch, a consumer that was killed) are claimed and handled one at a time, so
  one poison entry cannot take its batch with it. Each attempt counts as a delivery; after `max_deliveries`
  an entry that still fails is dead-lettered with the last error. A retryable store-wide failure
  (`StoreBusyError`, e.g. a locked database) is never held against an entry: it stays pending until the
  store is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pheromone.contracts import Envelope, parse_envelope
from pheromone.contracts.streams import FIELD, FIELD_KIND
from pheromone.plumbing.refusals import invalid, one_line
from pheromone.services import transport
from pheromone.services.errors import Refused, StoreBusyError
from pheromone.services.metrics import WorkerMetrics
from pheromone.services.transport import DeadLetter, Entry

log = logging.getLogger(__name__)

Handler = Callable[[Sequence[tuple[Envelope, bytes]]], Awaitable[Sequence[tuple[int, str] | Refused]]]
"""Applies valid events; returns the (index, reason[, retry]) of each event it refuses."""

_FIELD, _FIELD_KIND = FIELD.encode(), FIELD_KIND.encode()
MAX_INFLIGHT_BATCHES = 1
"""Batches handed on and not yet committed. One: the read of the next batch (I/O) overlaps the commit, but
its parsing does not, because pydantic holds the GIL while the writer thread's many short sqlite calls each
release and re-take it (a GIL convoy); bench/RESULTS.md measures two against one."""




def describe(exc: BaseException) -> str:
    """A one-line, precise reason for a dead letter."""
    if isinstance(exc, ValidationError):
        return invalid(exc, "envelope")
    return one_line(f"{type(exc).__name__}: {exc}")


def parse_entry(fields: dict[bytes, bytes]) -> tuple[Envelope, bytes]:
    raw = fields.get(_FIELD)
    if raw is None:
        names = sorted(k.decode(errors="replace") for k in fields)[:5]
        raise ValueError(f"entry has no '{FIELD}' field (fields: {names})")
    return parse_envelope(raw), raw


@dataclass
class WorkerStats:
    applied: int = 0
    dead: int = 0
    failures: int = 0
    claimed: int = 0


@dataclass
class GroupWorker:
    service: str
    stream: str
    group: str
    handler: Handler
    redis: aioredis.Redis
    dead_stream: str
    consumer: str
    records_poison: bool
    """True for the store group: it dead-letters unparsable entries; other groups ack and skip them."""
    claim_idle_ms: int = 5_000
    max_deliveries: int = 5
    batch_size: int = 1_000
    stats: WorkerStats = field(default_factory=WorkerStats)
    metrics: WorkerMetrics | None = None
    """Prometheus children, updated once per batch (services.metrics); None: no metrics."""
    kinds: frozenset[str] | None = None
    """The payload types the handler uses; entries whose kind field names another are acked unparsed (a
    group that counts applications need not validate every execution). None: every entry is parsed. Never
    for a group that records what it reads: an entry's kind field is the producer's word, not validated."""

    def __post_init__(self) -> None:
        if self.kinds is not None and self.records_poison:
            raise ValueError(f"{self.service}: a group that records poison must parse every entry (kinds=None)")
        self._wanted = None if self.kinds is None else frozenset(k.encode() for k in self.kinds)
        self._slots = asyncio.Semaphore(MAX_INFLIGHT_BATCHES)
        self._store_busy = False
        self._store_down = False  # logged once when the store becomes unavailable, once when it is back
        self._inflight: set[asyncio.Task[None]] = set()
        # Entry ids of the batches in flight: pending, and maybe idle past claim_idle_ms on a slow commit, but
        # this worker is still applying them, so its retrier must not take them a second time.
        self._holding: set[bytes] = set()

    @property
    def store_down(self) -> bool:
        """The last handled batch failed because the store was unavailable (`StoreBusyError`)."""
        return self._store_down

    async def on_batch(self, entries: Sequence[Entry]) -> None:
        """Parse a batch read by the subscriber and hand it on without waiting for its commit.

        Returning early lets FastStream read the next batch while this one commits on the store thread; at
        most MAX_INFLIGHT_BATCHES are in flight, they commit in order (one writer thread), and each is acked
        only after its own commit.
        """
        # Held from delivery, not from the slot: while this batch waits for the one in flight to commit, its
        # entries are pending and may pass claim_idle_ms, and the retrier must not apply them a second time.
        held = {entry_id for entry_id, _ in entries}
        self._holding |= held
        try:
            await self._slots.acquire()
        except BaseException:
            self._holding.difference_update(held)
            raise
        valid, letters, skipped = self._parse(entries, None)
        task = asyncio.ensure_future(self._finish(entries, valid, letters, skipped, None))
        self._inflight.add(task)
        task.add_done_callback(self._done)
        task.add_done_callback(lambda _: self._holding.difference_update(held))

    async def drain(self) -> None:
        """Wait for batches handed on by on_batch() to be committed and acked (graceful shutdown)."""
        while self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slots.release()
        if not task.cancelled() and (exc := task.exception()) is not None:
            # Acks or dead letters could not be written (Redis away): the entries stay pending and the
            # retrier takes them again; the store's event_id key makes the second application a no-op. Redis
            # being away is the runtime's one "redis lost" line, not a line per batch.
            lost = isinstance(exc, RedisConnectionError | RedisTimeoutError | ConnectionError | TimeoutError)
            log.log(logging.DEBUG if lost else logging.WARNING, "%s: batch left pending: %s", self.service,
                    describe(exc))

    async def handle_now(self, entries: Sequence[Entry], deliveries: Sequence[int] | None) -> None:
        """Parse, apply, dead-letter and ack one batch before returning (the retrier's path)."""
        valid, letters, skipped = self._parse(entries, deliveries)
        await self._finish(entries, valid, letters, skipped, deliveries)

    def _parse(
        self, entries: Sequence[Entry], deliveries: Sequence[int] | None
    ) -> tuple[list[tuple[bytes, Envelope, bytes]], list[DeadLetter], list[bytes]]:
        letters: list[DeadLetter] = []
        skipped: list[bytes] = []
        valid: list[tuple[bytes, Envelope, bytes]] = []
        wanted = self._wanted
        for index, (entry_id, fields) in enumerate(entries):
            if wanted is not None and (kind := fields.get(_FIELD_KIND)) is not None and kind not in wanted:
                skipped.append(entry_id)
                continue
            try:
                env, raw = parse_entry(fields)
            except (ValidationError, ValueError) as exc:
                if self.records_poison:
                    letters.append(self._letter(entry_id, fields, describe(exc), deliveries, index))
                else:
                    skipped.append(entry_id)
                continue
            valid.append((entry_id, env, raw))
        return valid, letters, skipped

    async def _finish(
        self,
        entries: Sequence[Entry],
        valid: list[tuple[bytes, Envelope, bytes]],
        letters: list[DeadLetter],
        skipped: list[bytes],
        deliveries: Sequence[int] | None,
    ) -> None:
        ok: list[bytes] = []
        m = self.metrics
        if m is not None:
            m.batch_size.observe(len(entries))
        if valid:
            started = time.perf_counter()
            try:
                rejected = await self.handler([(env, raw) for _, env, raw in valid])
            except StoreBusyError as exc:
                self.stats.failures += 1
                self._store_busy = True
                if m is not None:
                    m.failures.inc()
                if not self._store_down:
                    self._store_down = True
                    log.warning("%s: store unavailable, entries stay pending until it is back: %s", self.service, exc)
            except Exception as exc:
                self.stats.failures += 1
                if m is not None:
                    m.failures.inc()
                if deliveries is None:
                    log.warning("%s: batch of %d failed, will retry: %s", self.service, len(valid), describe(exc))
                else:
                    # One entry at a time here (the retrier): dead-letter once it has had its deliveries.
                    for entry_id, _, _ in valid:
                        index = self._index(entries, entry_id)
                        if deliveries[index] >= self.max_deliveries:
                            letters.append(self._letter(entry_id, entries[index][1], describe(exc), deliveries, index))
            else:
                if self._store_down:
                    self._store_down = False
                    log.info("%s: store available again", self.service)
                refused: set[int] = set()
                for item in rejected:
                    refusal = Refused(*item)
                    refused.add(refusal.index)
                    entry_id = valid[refusal.index][0]
                    index = self._index(entries, entry_id)
                    count = deliveries[index] if deliveries is not None else 1
                    if refusal.retry and count < self.max_deliveries:
                        continue  # left pending: the retrier tries it again after claim_idle_ms
                    # The entry's own fields (its kind too), so a replayed letter is the entry as it was sent.
                    letters.append(self._letter(entry_id, entries[index][1], refusal.reason, deliveries, index))
                ok = [entry_id for i, (entry_id, _, _) in enumerate(valid) if i not in refused]
            if m is not None:
                m.handler_seconds.observe(time.perf_counter() - started)
        await transport.dead_letter(self.redis, self.dead_stream, letters)
        await transport.ack(self.redis, self.stream, self.group, ok + skipped)
        self.stats.applied += len(ok)
        self.stats.dead += len(letters)
        if letters:
            log.warning("%s: dead-lettered %d of %d entries from %s (first: %s)", self.service, len(letters),
                        len(entries), self.stream, letters[0].error[:200])
        if m is not None:
            m.applied.inc(len(ok))
            m.skipped.inc(len(skipped))
            m.dead_letters.inc(len(letters))

    async def claim_pending(self) -> int:
        """Retry entries stuck in the pending list; returns how many were claimed."""
        stuck = [(entry_id, times) for entry_id, times in await transport.idle_pending(
            self.redis, self.stream, self.group, self.claim_idle_ms, self.batch_size
        ) if entry_id not in self._holding]
        if not stuck:
            return 0
        counts = {entry_id: times + 1 for entry_id, times in stuck}
        entries = await transport.claim(
            self.redis, self.stream, self.group, self.consumer, self.claim_idle_ms, list(counts)
        )
        self._store_busy = False
        for entry in entries:
            await self.handle_now([entry], [counts.get(entry[0], 1)])
            if self._store_busy:
                break  # the store is down for everyone: trying the rest would only wait out its timeout each
        self.stats.claimed += len(entries)
        return len(entries)

    def _letter(
        self, entry_id: bytes, fields: dict[bytes, bytes], error: str, deliveries: Sequence[int] | None,
        index: int,
    ) -> DeadLetter:
        count = deliveries[index] if deliveries is not None else 1
        return DeadLetter(self.stream, self.group, entry_id, fields, error, count)

    @staticmethod
    def _index(entries: Sequence[Entry], entry_id: bytes) -> int:
        for i, (eid, _) in enumerate(entries):
            if eid == entry_id:
                return i
        raise LookupError(entry_id)
