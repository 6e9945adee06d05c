"""What a service's `build` receives and returns: the one module both the runtime and every service import.

`services.runtime` hosts services and imports each service's `build` (`ServiceFactory`); a service imports
only this module, never the runtime, so the two point one way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from pheromone.contracts.streams import Keys
from pheromone.services.consumer import GroupWorker, Handler
from pheromone.services.metrics import Metrics
from pheromone.services.settings import Settings

__all__ = ["ServiceContext", "ServiceFactory", "ServiceParts"]


@dataclass
class ServiceContext:
    """What a service factory gets: settings, the shared Redis client, key names and the worker maker."""

    settings: Settings
    redis: aioredis.Redis
    keys: Keys
    redis_url: str
    metrics: Metrics = field(default_factory=Metrics)
    """The runtime's metrics: services count what they publish (`metrics.published`, …)."""
    hosted: tuple[str, ...] = ()
    """The services this process hosts (`serve --only store` hosts one): a service alone in its process may
    use the event loop's thread for work that would otherwise delay its neighbours (services.store.service)."""

    def worker(
        self, service: str, stream: str, group: str, handler: Handler, *, records_poison: bool,
        kinds: frozenset[str] | None = None,
    ) -> GroupWorker:
        s = self.settings
        return GroupWorker(
            service=service, stream=stream, group=group, handler=handler, redis=self.redis,
            dead_stream=self.keys.dead, consumer=f"{service}-{s.consumer_name}", records_poison=records_poison,
            claim_idle_ms=s.claim_idle_ms, max_deliveries=s.max_deliveries, batch_size=s.batch_size,
            metrics=self.metrics.worker(service, self.keys.short(stream)), kinds=kinds,
        )


@dataclass
class ServiceParts:
    """A built service: its group workers, extra loops, streams to trim, and how to close it."""

    name: str
    workers: list[GroupWorker] = field(default_factory=list)
    loops: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    subscriptions: list[tuple[Any, Callable[[bytes], Awaitable[None]]]] = field(default_factory=list)
    """(ListSub or channel, handler taking the raw body) for plain, non-group subscribers."""
    trims: list[tuple[str, float, bool]] = field(default_factory=list)
    """(stream, retention_s, respect_groups) for the trimmer."""
    close: Callable[[], Awaitable[None]] | None = None
    single_writer: bool = False
    """Its workers read only while this process holds the service's writer lease (`services.writer`): their
    effect follows stream order, so replicas are hot standbys rather than more readers."""


ServiceFactory = Callable[[ServiceContext], Awaitable[ServiceParts]]
