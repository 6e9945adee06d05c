"""What every projection receives besides the event (`ProjectionContext`), and a projection's signature.

Its own module so that the projection families (`projections`, `session_projections`) and the writer (`db`)
share it without importing one another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pheromone.contracts import Envelope
from pheromone.services.settings import LearningSettings
from pheromone.services.store import patterns
from pheromone.services.store.batch import PatternBatch
from pheromone.services.store.owners import RecordOwners
from pheromone.services.store.sql import SqlConn


@dataclass(frozen=True, slots=True)
class ProjectionContext:
    """What projections need besides the event: the learning rules' settings, and the per-batch work.

    The store calls `begin()` after it opens a batch transaction and `finish(conn)` just before it commits;
    `finish` writes back the pattern state the batch held in memory (`services.store.batch`), then settles
    each pattern the batch applied (see `patterns.settle`), in id order.
    """

    learning: LearningSettings = field(default_factory=LearningSettings)
    batch: PatternBatch = field(default_factory=PatternBatch)
    owners: RecordOwners = field(default_factory=RecordOwners)

    def begin(self) -> None:
        self.batch.clear()
        self.owners.clear()

    def next_chunk(self, conn: SqlConn, events: list[Envelope], *, postgres: bool) -> None:
        """A rebuild's next chunk of the ledger: the records held back so far are written, and the owners of
        the chunk's records read (so a rebuild's memory stays one chunk's, whatever the ledger's size)."""
        self.batch.write_records(conn)
        self.owners.load(conn, events, postgres=postgres)

    def finish(self, conn: SqlConn) -> None:
        self.batch.flush(conn)
        for pattern in sorted(self.batch.touched):
            patterns.settle(conn, pattern, self.learning)
        self.batch.clear()


Projection = Callable[[SqlConn, Envelope, int, ProjectionContext], None]
"""(the transaction's connection, the event, its ledger seq, the context): see `services.store.projections`."""
