"""The entropy service: watches pattern applications and injects diversity when the fleet converges.

Subscriber (FastStream batch subscriber, group `entropy`):
  - reads `{prefix}:ingest`; counts `PatternApplied` events fleet-wide in `{prefix}:entropy:applications`
    (INCRBY, so replicas share one count) and wakes its evaluation loop each time the count passes a
    multiple of K (`entropy_check_every`); every other event is acked untouched;
  - ack policy: manual, after the count is written; a redelivered batch may count twice, which only moves
    the next evaluation earlier (the metric itself is computed from the store, exactly-once);
  - failures: unparsable entries are acked and skipped (the store group dead-letters them); if Redis fails
    the batch stays pending for the retrier.

Evaluation loop (every K applications, or every T seconds in one replica while applications arrive):
  1. diversity from the store's running entropy aggregate (`StoreReads.entropy`, learning's formula);
  2. below `LearningSettings.entropy_alert_threshold` with enough applications, it takes the response lock
     `{prefix}:entropy:cooldown` (SET NX PX cooldown): the replica that gets it responds (`plan_response`:
     metrics, budget boost and response record onto `{prefix}:ingest` in one MULTI/EXEC, then an
     `entropy_response` broadcast); no other evaluation in the cooldown, in any replica, responds.
     So there is exactly one response per crossing and per cooldown, however many replicas run;
  3. patterns whose drift exceeds its threshold (the store's `pattern_drift`, learning's formula) raise a
     `drift_alert` broadcast, once per pattern per `drift_alert_cooldown_s` (lock `{prefix}:drift-alert:…`).
A routine evaluation records nothing in the ledger (the store's aggregates already hold what it measured); its
metrics are left in `{prefix}:entropy:last` for operators and tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from pheromone.contracts import Envelope, EventKind, PatternApplied, PatternEntropyMetrics
from pheromone.contracts.streams import GROUP_ENTROPY, Keys
from pheromone.plumbing.append import append
from pheromone.plumbing.publish import Publisher
from pheromone.services.context import ServiceContext, ServiceParts
from pheromone.services.entropy.locks import Locks
from pheromone.services.entropy.response import drift_alert, plan_response
from pheromone.services.errors import StoreError
from pheromone.services.metrics import Metrics
from pheromone.services.settings import CoordinationSettings, LearningSettings
from pheromone.services.store.location import ensure_store, open_reader
from pheromone.services.store.reads import StoreReads

log = logging.getLogger(__name__)
APPLIED = frozenset({EventKind.PATTERN_APPLIED.value})
"""What the subscriber counts; other ingest entries that say their kind are acked without parsing."""


@dataclass
class EntropyStats:
    applications: int = 0
    evaluations: int = 0
    responses: int = 0
    cooldown_skips: int = 0
    """Low diversity seen while another response's cooldown (lock) was held."""
    drift_alerts: int = 0
    failures: int = 0


@dataclass
class EntropyService:
    redis: aioredis.Redis
    keys: Keys
    reader: StoreReads
    learning: LearningSettings
    settings: CoordinationSettings
    stats: EntropyStats = field(default_factory=EntropyStats)
    metrics: Metrics | None = None
    """Where responses and broadcasts are counted for Prometheus (the runtime's); None: nowhere."""

    def __post_init__(self) -> None:
        self._due = asyncio.Event()
        self._locks = Locks(self.redis)
        self._publisher = Publisher(self.redis, self.keys)

    # -- subscriber ----------------------------------------------------------------------------------------

    async def handle(self, events: Sequence[tuple[Envelope, bytes]]) -> Sequence[tuple[int, str]]:
        n = sum(1 for env, _ in events if isinstance(env.payload, PatternApplied))
        if n:
            total = int(await self.redis.incrby(self.keys.entropy("applications"), n))
            self.stats.applications += n
            k = self.settings.entropy_check_every
            if (total - n) // k != total // k:
                self._due.set()
        return []

    # -- evaluation ----------------------------------------------------------------------------------------

    async def run(self) -> None:
        """The evaluation loop: on the K-th application, else every T seconds."""
        while True:
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow the runtime's cancellation
            # (bpo-42130) and this loop would never stop.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.entropy_check_interval_s):
                    await self._due.wait()
            periodic = not self._due.is_set()
            self._due.clear()
            try:
                await self.evaluate(periodic=periodic)
            except (RedisError, StoreError, OSError) as exc:
                self.stats.failures += 1
                log.warning("entropy evaluation failed, will retry: %s", exc)
            except Exception:  # the loop must outlive any one evaluation
                self.stats.failures += 1
                log.exception("entropy evaluation failed unexpectedly, will retry")

    async def evaluate(self, *, periodic: bool = False) -> PatternEntropyMetrics | None:
        """Measure diversity, respond or alert as needed; None when a periodic evaluation had nothing new.

        A periodic evaluation runs in one replica per interval (the tick lock), and only if the store holds
        applications the last evaluation did not see: it is what catches up with the store after a burst
        whose K-th application was counted before the store had committed it.
        """
        if periodic:
            ttl = self.settings.tick_lock_ttl_s or 0.9 * self.settings.entropy_check_interval_s
            if await self._locks.take(self.keys.entropy("tick"), ttl) is None:
                return None
        now = datetime.now(UTC)
        threshold = self.learning.entropy_alert_threshold
        metrics = await self.reader.entropy(calculated_at=now, alert_threshold=threshold)
        previous = await self.redis.set(self.keys.entropy("last"), metrics.model_dump_json(), get=True)
        if periodic and isinstance(previous, bytes) and _total(previous) == metrics.total_applications:
            return None
        self.stats.evaluations += 1
        enough = metrics.total_applications >= self.learning.entropy_min_applications
        if metrics.threshold_exceeded and enough:
            await self._respond(metrics, now)
        await self._drift_alerts(now)
        return metrics

    async def _respond(self, metrics: PatternEntropyMetrics, now: datetime) -> bool:
        lock = self.keys.entropy("cooldown")
        token = await self._locks.take(lock, self.settings.entropy_cooldown_s)
        if token is None:
            self.stats.cooldown_skips += 1
            return False
        try:
            budget = await self.reader.latest_budget()
            revisit = await self.reader.quarantined(self.settings.max_quarantine_revisits)
            planned = plan_response(metrics, budget, revisit, self.learning, now, self.settings.alert_ttl_s)
            await self._emit(planned.events)
        except BaseException:
            # Nothing was recorded: give the lock back so the next evaluation responds instead.
            with contextlib.suppress(RedisError):
                await self._locks.release(lock, token)
            raise
        self.stats.responses += 1
        log.info("entropy response: diversity %.3f < %.3f, budget -> %s, %d revisit(s)",
                 metrics.diversity_index, self.learning.entropy_alert_threshold,
                 planned.events[1].payload.budget_value,  # type: ignore[union-attr]
                 len(planned.events[2].payload.patterns_revisited))  # type: ignore[union-attr]
        published = await self._publisher.publish([planned.broadcast])
        if self.metrics is not None:
            self.metrics.entropy_responses.inc()
            self.metrics.published("entropy", published)
        return True

    async def _drift_alerts(self, now: datetime) -> None:
        drifting = await self.reader.drifting()
        if not drifting:
            return
        ttl_ms = int(self.settings.drift_alert_cooldown_s * 1000)
        async with self.redis.pipeline(transaction=False) as pipe:
            for d in drifting:
                pipe.set(self.keys.drift_alert(d.drift.pattern_id), "1", nx=True, px=ttl_ms)
            taken = await pipe.execute()
        alerts = [drift_alert(d.drift, d.tags, now, self.settings.alert_ttl_s)
                  for d, ok in zip(drifting, taken, strict=True) if ok]
        try:
            published = await self._publisher.publish(alerts)
        except BaseException:
            # Not broadcast: let the next evaluation alert instead.
            with contextlib.suppress(RedisError):
                await self.redis.delete(*(self.keys.drift_alert(a.body.drift.pattern_id)  # type: ignore[union-attr]
                                          for a in alerts))
            raise
        self.stats.drift_alerts += len(alerts)
        if self.metrics is not None:
            self.metrics.published("entropy", published)

    async def _emit(self, events: Sequence[Envelope]) -> None:
        """Append events to the ingest stream (the store records them) in one MULTI/EXEC: all or none."""
        await append(self.redis, self.keys.ingest, events)


async def build(ctx: ServiceContext) -> ServiceParts:
    await ensure_store(ctx.settings.store)  # the entropy service may start before the store service
    reader = open_reader(ctx.settings.store)
    await reader.open()
    service = EntropyService(ctx.redis, ctx.keys, reader, ctx.settings.learning, ctx.settings.coordination,
                             metrics=ctx.metrics)
    return ServiceParts(
        name="entropy",
        workers=[ctx.worker("entropy", ctx.keys.ingest, GROUP_ENTROPY, service.handle, records_poison=False,
                            kinds=APPLIED)],
        loops=[service.run],
        trims=[(ctx.keys.broadcast, ctx.settings.broadcast_retention_s, False)],
        close=reader.close,
    )


def _total(metrics_json: bytes | str) -> int:
    return PatternEntropyMetrics.model_validate_json(metrics_json).total_applications
