"""Which workspace owns each record a batch touches (`RecordOwners`), read once per batch.

Workspaces are a boundary (`projections.guard_owner`): an event may replace a record only when it comes from
the workspace that recorded it. Asking the store once per event costs a statement each, and on PostgreSQL a
round trip each, since the answer must come back before the projection writes. Instead the store reads the
owners of every record id in the batch in one statement per family when the batch begins (`load`), and the
projections keep the answers current as they write (`record`): within the batch, a record's owner is known
without asking.

Only a batch that was loaded uses the answers. Otherwise (an event re-applied after a rollback cleared them)
every question goes to the store, as before: the cache never holds a write that was rolled back. A rebuild
loads it per chunk of the ledger, after writing what the previous chunk held back, so it never outgrows one
chunk.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field

from pheromone.contracts import Envelope
from pheromone.services.store.sql import SqlConn

OWNED_TABLES = ("executions", "error_recoveries", "rate_limit_events", "escalation_decisions", "pattern_discoveries")
"""Record families keyed by the producer's record id whose rows belong to the workspace that recorded them."""

OWNED_BY_KIND: dict[str, tuple[str, str]] = {
    "execution": ("executions", "id"),
    "error_recovery": ("error_recoveries", "id"),
    "rate_limit": ("rate_limit_events", "id"),
    "escalation": ("escalation_decisions", "id"),
    "escalation_outcome": ("escalation_decisions", "escalation_id"),
    "pattern_discovery": ("pattern_discoveries", "id"),
}
"""An event kind whose projection checks an owner: the family's table and the payload field with the id."""

SELECT_OWNER = {table: f"SELECT workspace FROM {table} WHERE id = ?" for table in OWNED_TABLES}
SELECT_OWNERS_SQLITE = {
    table: f"SELECT id, workspace FROM {table} WHERE id IN (SELECT value FROM json_each(?))" for table in OWNED_TABLES
}
SELECT_OWNERS_PG = {table: f"SELECT id, workspace FROM {table} WHERE id = ANY(?)" for table in OWNED_TABLES}
"""One statement per family for a batch's ids: a JSON array on SQLite, an array parameter on PostgreSQL."""


@dataclass(slots=True)
class RecordOwners:
    """Owners of the records of the batch being applied (module docstring). `None`: no such record yet."""

    known: dict[tuple[str, str], str | None] = field(default_factory=dict)
    loaded: bool = False

    def clear(self) -> None:
        self.known.clear()
        self.loaded = False

    def load(self, conn: SqlConn, events: Iterable[Envelope], *, postgres: bool) -> None:
        """Read the owner of every record id in `events`, one statement per family, all sent before any
        answer is read (on PostgreSQL's pipeline, one round trip); what was known before is forgotten."""
        self.known.clear()
        ids: dict[str, set[str]] = {}
        for env in events:
            owned = OWNED_BY_KIND.get(env.kind)
            if owned is not None:
                ids.setdefault(owned[0], set()).add(getattr(env.payload, owned[1]))
        statements = SELECT_OWNERS_PG if postgres else SELECT_OWNERS_SQLITE
        cursors = [
            (table, wanted, conn.execute(statements[table], (ordered if postgres else json.dumps(ordered),)))
            for table, wanted in ids.items()
            for ordered in [sorted(wanted)]
        ]
        for table, wanted, cur in cursors:
            found = dict(cur.fetchall())
            for record_id in wanted:
                self.known[(table, record_id)] = found.get(record_id)
        self.loaded = True

    def owner(self, conn: SqlConn, table: str, record_id: str) -> str | None:
        """The workspace that owns `record_id` in `table`, None when there is no such record."""
        if self.loaded and (table, record_id) in self.known:
            return self.known[(table, record_id)]
        row = conn.execute(SELECT_OWNER[table], (record_id,)).fetchone()
        return None if row is None else str(row[0])

    def record(self, table: str, record_id: str, workspace: str) -> None:
        """`workspace` has just written `record_id` in `table` (it owns it now)."""
        if self.loaded:
            self.known[(table, record_id)] = workspace
