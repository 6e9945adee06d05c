"""What learning sessions left in the store, read: guidance jobs are served, playbooks, the session index.

The session projections (`services.store.session_projections`) write these tables; the consolidator reads
the same statements through `services.store.session_store`; the query service's `playbook` and
`guidance` operations and the session CLI read them here.
"""

from __future__ import annotations

import json
from typing import Any

from pheromone.services.store.read_conn import ReadConn

GUIDANCE = "SELECT pillar, key, value FROM guidance WHERE workspace = ?"
HAND = "SELECT hand FROM playbooks WHERE workspace = ?"
PLAYBOOK_WORKSPACES = """
SELECT workspace FROM playbooks UNION SELECT workspace FROM guidance WHERE pillar = 'playbook' ORDER BY workspace
"""
SESSION_OF_TRIGGER = "SELECT * FROM session_index WHERE trigger_id = ?"


class SessionReads:
    """The session reads of the store's readers (`services.store.reader.Reader`, `pg.reader.PgReader`)."""

    @property
    def db(self) -> ReadConn:
        raise NotImplementedError

    async def guidance(self, workspace: str) -> dict[tuple[str, str], Any]:
        """A workspace's guidance entries: (pillar, key) -> value."""
        async with self.db.execute(GUIDANCE, (workspace,)) as cur:
            return {(p, k): json.loads(v) for p, k, v in await cur.fetchall()}

    async def hand(self, workspace: str) -> str:
        """The hand-written part of a workspace's playbook ("" when none was set)."""
        async with self.db.execute(HAND, (workspace,)) as cur:
            row = await cur.fetchone()
        return str(row[0]) if row else ""

    async def playbook_workspaces(self) -> list[str]:
        """Every workspace with a playbook: hand-written text, or a learned playbook entry."""
        async with self.db.execute(PLAYBOOK_WORKSPACES) as cur:
            return [str(r[0]) for r in await cur.fetchall()]

    async def session_of_trigger(self, trigger_id: str) -> dict[str, Any] | None:
        """The session index row of the session a trigger started (column -> value); None before one has."""
        async with self.db.execute(SESSION_OF_TRIGGER, (trigger_id,)) as cur:
            names = [d[0] for d in cur.description]
            row = await cur.fetchone()
        return None if row is None else dict(zip(names, row, strict=True))
