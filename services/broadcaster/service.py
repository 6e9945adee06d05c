"""The broadcaster: fans pattern discoveries out to every concurrent job on the broadcast stream.

Subscriber (FastStream batch subscriber, group `broadcaster`):
  - reads `{prefix}:discoveries`;
  - writes one `BroadcastMessage` (kind `discovery`) per unexpired discovery to `{prefix}:broadcast`, which
    jobs read from their own cursor (`pheromone.subscriptions`); an expired discovery is dropped;
  - ack policy: manual, after the batch is published;
  - idempotency key: the discovery's envelope `event_id` is the message id, published at most once
    (`Publisher`), so a redelivered entry is not broadcast twice;
  - failures: unparsable entries are acked and skipped (the store group dead-letters them); if publishing
    fails (Redis away) the batch stays pending and the retrier publishes it later, unless it has expired.
It also trims the broadcast stream by age (`broadcast_retention_s`); the stream has no groups.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pheromone.contracts import Envelope, PatternDiscoveryEvent
from pheromone.contracts.broadcast import BroadcastMessage
from pheromone.contracts.streams import GROUP_BROADCASTER
from pheromone.plumbing.publish import Publisher
from pheromone.services.context import ServiceContext, ServiceParts


def discovery_message(env: Envelope, now: datetime) -> BroadcastMessage | None:
    """The broadcast of one discovery event, or None if it is not a discovery or has expired."""
    p = env.payload
    if not isinstance(p, PatternDiscoveryEvent) or p.expires_at <= now:
        return None
    return BroadcastMessage(id=env.event_id, published_at=now, expires_at=p.expires_at,
                            workspace=env.workspace, job=env.job, body=p)


async def build(ctx: ServiceContext) -> ServiceParts:
    publisher = Publisher(ctx.redis, ctx.keys)

    async def handle(events: Sequence[tuple[Envelope, bytes]]) -> Sequence[tuple[int, str]]:
        now = datetime.now(UTC)
        messages = [m for env, _ in events if (m := discovery_message(env, now)) is not None]
        ctx.metrics.published("broadcaster", await publisher.publish(messages))
        return []

    return ServiceParts(
        name="broadcaster",
        workers=[
            ctx.worker("broadcaster", ctx.keys.discoveries, GROUP_BROADCASTER, handle, records_poison=False)
        ],
        trims=[(ctx.keys.broadcast, ctx.settings.broadcast_retention_s, False)],
    )
