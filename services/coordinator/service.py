"""The coordinator: live rate-limit state every job can read in one round trip, and announcements.

Subscriber (FastStream batch subscriber, group `coordinator`):
  - reads `{prefix}:ratelimits`;
  - writes the live keys `{prefix}:rl:<model>[:<code>]` (value: `RateLimitState` JSON, PEXPIREAT = the
    report's `expires_at`, latest expiry wins; `limits.LimitBook`) and the index `{prefix}:rl-index`; when a
    report starts or extends a limit, publishes a `rate_limit` `BroadcastMessage` (a `RateLimitNotice`) on
    `{prefix}:broadcast`, expiring with the limit;
  - ack policy: manual, after the keys are written and the notices published;
  - idempotency key: the report's expiry (a report that does not extend a key changes nothing) and its
    envelope `event_id` (the notice's message id, published at most once);
  - failures: unparsable entries are acked and skipped (the store group dead-letters them and records every
    report in the ledger); if Redis fails the batch stays pending for the retrier.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from contracts import Envelope, RateLimitEvent
from contracts.broadcast import BroadcastMessage, RateLimitNotice
from contracts.streams import GROUP_COORDINATOR
from services.broadcaster.publish import Publisher
from services.coordinator.limits import LimitBook, Recorded
from services.runtime import ServiceContext, ServiceParts


def notice(rec: Recorded, now: datetime) -> BroadcastMessage:
    r = rec.report
    body = RateLimitNotice(model=r.model, error_code=r.error_code, expires_at=r.expires_at,
                           duration_seconds=r.duration_seconds, reported_by=r.source_job_hash, report_id=r.id)
    return BroadcastMessage(id=rec.env.event_id, published_at=now, expires_at=r.expires_at,
                            workspace=rec.env.workspace, job=rec.env.job, body=body)


async def build(ctx: ServiceContext) -> ServiceParts:
    book = LimitBook(ctx.redis, ctx.keys)
    publisher = Publisher(ctx.redis, ctx.keys)

    async def handle(events: Sequence[tuple[Envelope, bytes]]) -> Sequence[tuple[int, str]]:
        reports = [(env, env.payload) for env, _ in events if isinstance(env.payload, RateLimitEvent)]
        recorded = await book.record(reports)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        await publisher.publish([notice(rec, now) for rec in recorded if rec.code_changed])
        return []

    return ServiceParts(
        name="coordinator",
        workers=[ctx.worker("coordinator", ctx.keys.ratelimits, GROUP_COORDINATOR, handle, records_poison=False)],
        trims=[(ctx.keys.broadcast, ctx.settings.broadcast_retention_s, False)],
    )
