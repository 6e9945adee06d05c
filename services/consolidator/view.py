"""What the consolidator (and the session CLI) read from the store, and the one table they write: the session
index. Synchronous sqlite3 on a worker thread (`asyncio.to_thread`): sessions are rare and read in bulk.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pheromone.contracts import Envelope, parse_envelope
from pheromone.contracts.sessions import EditStatus, LearningSession, SessionStatus
from pheromone.services.sessions import artifacts
from pheromone.services.sessions.guidance import Guidance
from pheromone.services.sessions.ledger import load_guidance
from pheromone.services.sessions.states import ACTIVE
from pheromone.services.store.schema import connect

HARVESTED = ("execution", "pattern_applied", "error_recovery")
LEDGER_SINCE = f"""
SELECT seq, body FROM ledger WHERE workspace = ? AND seq > ? AND kind IN ({",".join("?" * len(HARVESTED))})
ORDER BY seq LIMIT ?
"""
WATERMARK = """
SELECT COALESCE(MAX(watermark), 0) FROM session_state WHERE scope = ? AND status IN (?, ?, ?)
"""
ACTIVE_SESSIONS = (
    f"SELECT session_id, status FROM session_state WHERE scope = ? AND status IN ({','.join('?' * len(ACTIVE))})"
)
SESSION_STATUS = "SELECT status, scope FROM session_state WHERE session_id = ?"
EDITS = "SELECT edit_id, status FROM session_edits WHERE session_id = ?"
WORKSPACES_WITH_NEW_RUNS = """
SELECT l.workspace FROM ledger l WHERE l.kind = 'execution' GROUP BY l.workspace
HAVING MAX(l.seq) > (SELECT COALESCE(MAX(s.watermark), 0) FROM session_state s
                     WHERE s.scope = l.workspace AND s.status IN (?, ?, ?))
"""
WORKSPACE_OF = "SELECT workspace FROM ledger WHERE event_id = ? UNION ALL SELECT workspace FROM executions WHERE id = ?"
PLAYBOOK = "SELECT hand FROM playbooks WHERE workspace = ?"
SEQ_OF = """
SELECT seq FROM ledger WHERE event_id = ?
UNION ALL SELECT l.seq FROM executions x JOIN ledger l ON l.event_id = x.event_id WHERE x.id = ?
"""
DONE = (SessionStatus.COMPLETED.value, SessionStatus.AWAITING_REVIEW.value, SessionStatus.ROLLED_BACK.value)


class StoreView:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(str(self.path))
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def ledger(self, scope: str, since: int, limit: int) -> list[tuple[int, Envelope]]:
        rows = self.conn.execute(LEDGER_SINCE, (scope, since, *HARVESTED, limit)).fetchall()
        return [(seq, parse_envelope(body)) for seq, body in rows]

    def watermark(self, scope: str) -> int:
        return int(self.conn.execute(WATERMARK, (scope, *DONE)).fetchone()[0])

    def active_sessions(self, scope: str) -> list[tuple[str, SessionStatus]]:
        rows = self.conn.execute(ACTIVE_SESSIONS, (scope, *ACTIVE)).fetchall()
        return [(sid, SessionStatus(status)) for sid, status in rows]

    def session_status(self, session_id: str) -> tuple[SessionStatus, str] | None:
        row = self.conn.execute(SESSION_STATUS, (session_id,)).fetchone()
        return (SessionStatus(row[0]), row[1]) if row else None

    def edit_statuses(self, session_id: str) -> dict[str, EditStatus]:
        return {eid: EditStatus(st) for eid, st in self.conn.execute(EDITS, (session_id,))}

    def event_applied(self, event_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM ledger WHERE event_id = ?", (event_id,)).fetchone() is not None

    def guidance(self, scope: str) -> Guidance:
        return Guidance(load_guidance(self.conn, scope))

    def hand(self, scope: str) -> str:
        row = self.conn.execute(PLAYBOOK, (scope,)).fetchone()
        return str(row[0]) if row else ""

    def session_for_trigger(self, trigger_id: str) -> str | None:
        row = self.conn.execute("SELECT session_id FROM session_index WHERE trigger_id = ?", (trigger_id,)).fetchone()
        return str(row[0]) if row else None

    def workspaces_with_new_runs(self) -> list[str]:
        return [r[0] for r in self.conn.execute(WORKSPACES_WITH_NEW_RUNS, DONE)]

    def seq_of(self, record_id: str) -> int | None:
        """The ledger seq of an event id, or of the event that recorded an execution id."""
        row = self.conn.execute(SEQ_OF, (record_id, record_id)).fetchone()
        return int(row[0]) if row else None

    def workspace_of(self, record_id: str) -> str | None:
        row = self.conn.execute(WORKSPACE_OF, (record_id, record_id)).fetchone()
        return str(row[0]) if row else None

    def index(self, s: LearningSession, path: Path) -> None:
        artifacts.index(self.conn, s, path)

    def sessions(self, workspace: str | None, limit: int) -> list[dict[str, Any]]:
        where, args = ("WHERE workspace = ?", [workspace]) if workspace else ("", [])
        cur = self.conn.execute(f"SELECT * FROM session_index {where} ORDER BY started_us DESC, session_id DESC "
                                "LIMIT ?", (*args, limit))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def staged(self, workspace: str | None) -> Iterator[tuple[str, str, str]]:
        where, args = ("AND workspace = ?", (workspace,)) if workspace else ("", ())
        yield from self.conn.execute(
            f"SELECT session_id, edit_id, edit FROM session_edits WHERE status = 'staged' {where} "
            "ORDER BY updated_us, edit_id", args)
