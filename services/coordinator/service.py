"""The coordinator: live rate-limit state every job can read in one round trip, and announcements.

Subscriber (FastStream batch subscriber, group `coordinator`):
  - reads `{prefix}:ratelimits`;
  - writes the live keys `{prefix}:rl:<model>[:<code>]` (value: `RateLimitState` JSON, PEXPIREAT = the
    report's `expires_at`, latest expiry wins) and the index `{prefix}:rl-index`; when a report starts or
    extends a limit, publishes a `rate_limit` `BroadcastMessage` (a `RateLimitNotice`) on the broadcast
    stream, expiring with the limit. Both in one Lua call per report, one pipeline per batch (`LimitBook`);
  - ack policy: manual, after the batch's script calls returned;
  - idempotency key: the report's expiry (a report that does not extend a key changes nothing) and its
    envelope `event_id` (the notice's message id, published at most once);
  - failures: unparsable entries are acked and skipped (the store group dead-letters them and records every
    report in the ledger); if Redis fails the batch stays pending for the retrier.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from pheromone.contracts import Envelope, RateLimitEvent
from pheromone.contracts.streams import GROUP_COORDINATOR
from pheromone.plumbing.limits import LimitBook
from pheromone.services.context import ServiceContext, ServiceParts


async def build(ctx: ServiceContext) -> ServiceParts:
    book = LimitBook(ctx.redis, ctx.keys)

    async def handle(events: Sequence[tuple[Envelope, bytes]]) -> Sequence[tuple[int, str]]:
        reports = [(env, env.payload) for env, _ in events if isinstance(env.payload, RateLimitEvent)]
        announced = sum(1 for r in await book.record(reports, datetime.now(UTC)) if r.announced)
        ctx.metrics.published("coordinator", announced)
        ctx.metrics.announced.inc(announced)
        return []

    return ServiceParts(
        name="coordinator",
        workers=[
            ctx.worker("coordinator", ctx.keys.ratelimits, GROUP_COORDINATOR, handle, records_poison=False)
        ],
        trims=[(ctx.keys.broadcast, ctx.settings.broadcast_retention_s, False)],
    )
