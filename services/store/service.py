"""The store service: every event from every stream into the ledger and projections, exactly once.

Subscribers (one FastStream batch subscriber each, group `store`):
  - reads `{prefix}:ingest`, `{prefix}:ratelimits`, `{prefix}:discoveries`;
  - writes the SQLite store: one `BEGIN IMMEDIATE … COMMIT` per batch (`Store.apply`), on the writer thread,
    or on the loop's thread when the store is alone in its process (`serve --only store`, `Store(on_loop=)`);
  - ack policy: manual; entries are acked only after the commit that contains them;
  - idempotency key: the envelope's `event_id` (the ledger's primary key);
  - failures: unparsable entries, events a projection refuses, and events whose projection fails (the store
    then applies the batch event by event, `Store._project_isolated`) go to `{prefix}:dead` at once with the
    reason, while the rest of their batch commits; an event refused as early (`services.order`) and a batch
    that fails otherwise stay pending and are retried one entry at a time by the retrier, dead-lettered after
    `max_deliveries`; a locked or unwritable database leaves entries pending until it is back;
  - order: one store process reads, the holder of the writer lease `{prefix}:writer:store`; replicas are hot
    standbys. On taking the lease it applies what dead consumers of the group left pending, oldest first,
    before it reads anything newer (`services.writer`), so a crash or a second replica never reorders a stream.
It also trims the dead-letter stream to `dead_retention_s`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pheromone.contracts import Envelope
from pheromone.contracts.streams import GROUP_STORE
from pheromone.services import collector
from pheromone.services.context import ServiceContext, ServiceParts
from pheromone.services.errors import Refused
from pheromone.services.store.backend import StoreBackend
from pheromone.services.store.location import open_backend


async def build(ctx: ServiceContext, store: StoreBackend | None = None) -> ServiceParts:
    """`store`: the backend to write to; the one `settings.store` names when None (services.store.location)."""
    collector.tune()  # the batch hot path allocates many short-lived objects (services/collector.py)
    if store is None:
        # Alone in its process, the store applies each batch on the loop's thread (see services.store.db).
        alone = ctx.hosted == ("store",)
        store = open_backend(ctx.settings.store, learning=ctx.settings.learning, on_loop=alone)
    await store.open()

    async def handle(events: Sequence[tuple[Envelope, bytes]]) -> Sequence[Refused]:
        return (await store.apply(events)).rejected

    keys, s = ctx.keys, ctx.settings
    streams = (keys.ingest, keys.ratelimits, keys.discoveries)
    return ServiceParts(
        name="store",
        workers=[ctx.worker("store", stream, GROUP_STORE, handle, records_poison=True) for stream in streams],
        trims=[
            (keys.ingest, s.ingest_retention_s, True),
            (keys.ratelimits, s.ttl_stream_retention_s, True),
            (keys.discoveries, s.ttl_stream_retention_s, True),
            (keys.dead, s.dead_retention_s, False),
        ],
        close=store.close,
        single_writer=True,  # one active store writer, replicas are standbys (services.writer)
    )
