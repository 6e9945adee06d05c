"""The store as the consolidator (and the session commands) use it: the ledger to harvest, the sessions' and
edits' state, the guidance served, and the one table they write, the session index (`session_index`, a list
of the session.json artifacts, rebuilt from them by `reindex`).

Synchronous sqlite3, called on a worker thread (`asyncio.to_thread`): sessions are rare and read in bulk.
`services.store.pg.session_store.PgSessionStore` runs the same statements on PostgreSQL (`SessionConn`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from pheromone.contracts import Envelope, parse_envelope
from pheromone.contracts.sessions import EditStatus, LearningSession, SessionStatus
from pheromone.services.sessions import artifacts
from pheromone.services.sessions.guidance import Guidance
from pheromone.services.sessions.states import ACTIVE
from pheromone.services.store.codec import us
from pheromone.services.store.schema import connect
from pheromone.services.store.session_projections import SELECT_GUIDANCE, SELECT_SESSION
from pheromone.services.store.session_reads import GUIDANCE, HAND

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
EDITS = "SELECT edit_id, status FROM session_edits WHERE session_id = ?"
EDITS_NEWEST_FIRST = """
SELECT edit_id, status, edit, key, after FROM session_edits WHERE session_id = ? ORDER BY seq DESC
"""
STAGED = """
SELECT session_id, edit_id, edit FROM session_edits WHERE status = 'staged' {where} ORDER BY updated_us, edit_id
"""
EVENT_APPLIED = "SELECT 1 FROM ledger WHERE event_id = ?"
WORKSPACES_WITH_NEW_RUNS = """
SELECT l.workspace FROM ledger l WHERE l.kind = 'execution' GROUP BY l.workspace
HAVING MAX(l.seq) > (SELECT COALESCE(MAX(s.watermark), 0) FROM session_state s
                     WHERE s.scope = l.workspace AND s.status IN (?, ?, ?))
ORDER BY l.workspace
"""
WORKSPACE_OF = "SELECT workspace FROM ledger WHERE event_id = ? UNION ALL SELECT workspace FROM executions WHERE id = ?"
SEQ_OF = """
SELECT seq FROM ledger WHERE event_id = ?
UNION ALL SELECT l.seq FROM executions x JOIN ledger l ON l.event_id = x.event_id WHERE x.id = ?
"""
SESSION_FOR_TRIGGER = "SELECT session_id FROM session_index WHERE trigger_id = ?"
SESSIONS = "SELECT * FROM session_index {where} ORDER BY started_us DESC, session_id DESC LIMIT ?"
UPSERT_INDEX = "INSERT OR REPLACE INTO session_index VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
GUIDANCE_TABLES = ("guidance", "playbooks")
DONE = (SessionStatus.COMPLETED.value, SessionStatus.AWAITING_REVIEW.value, SessionStatus.ROLLED_BACK.value)

EditRow = tuple[str, str, str, str, "str | None"]
"""(edit id, status, the edit as JSON, guidance key, the value it wrote as JSON or None)."""


class SessionCursor(Protocol):
    @property
    def description(self) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...
    def __iter__(self) -> Iterator[Any]: ...


class SessionConn(Protocol):
    """What `SessionStore` asks of its connection: `sqlite3.Connection`, or the PostgreSQL session store's."""

    def execute(self, sql: str, parameters: Any = ..., /) -> SessionCursor: ...
    def executemany(self, sql: str, parameters: Iterable[Any], /) -> SessionCursor: ...
    def close(self) -> None: ...


class SessionStore:
    """One connection to the store file, opened on first use. `close()` when done."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: SessionConn | None = None

    def _connect(self) -> SessionConn:
        return connect(str(self.path))

    @property
    def conn(self) -> SessionConn:
        if self._conn is None:
            self._conn = self._connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- the ledger ------------------------------------------------------------------------------------------

    def ledger(self, scope: str, since: int, limit: int) -> list[tuple[int, Envelope]]:
        """The harvested kinds of events in `scope` after ledger seq `since`, oldest first."""
        rows = self.conn.execute(LEDGER_SINCE, (scope, since, *HARVESTED, limit)).fetchall()
        return [(seq, parse_envelope(body)) for seq, body in rows]

    def event_applied(self, event_id: str) -> bool:
        return self.conn.execute(EVENT_APPLIED, (event_id,)).fetchone() is not None

    def seq_of(self, record_id: str) -> int | None:
        """The ledger seq of an event id, or of the event that recorded an execution id."""
        row = self.conn.execute(SEQ_OF, (record_id, record_id)).fetchone()
        return int(row[0]) if row else None

    def workspace_of(self, record_id: str) -> str | None:
        row = self.conn.execute(WORKSPACE_OF, (record_id, record_id)).fetchone()
        return str(row[0]) if row else None

    def workspaces_with_new_runs(self) -> list[str]:
        return [r[0] for r in self.conn.execute(WORKSPACES_WITH_NEW_RUNS, DONE)]

    # -- sessions and edits ----------------------------------------------------------------------------------

    def watermark(self, scope: str) -> int:
        return int(self.conn.execute(WATERMARK, (scope, *DONE)).fetchone()[0])

    def active_sessions(self, scope: str) -> list[tuple[str, SessionStatus]]:
        rows = self.conn.execute(ACTIVE_SESSIONS, (scope, *ACTIVE)).fetchall()
        return [(sid, SessionStatus(status)) for sid, status in rows]

    def session_status(self, session_id: str) -> tuple[SessionStatus, str] | None:
        row = self.conn.execute(SELECT_SESSION, (session_id,)).fetchone()
        return (SessionStatus(row[0]), row[1]) if row else None

    def edit_statuses(self, session_id: str) -> dict[str, EditStatus]:
        return {eid: EditStatus(st) for eid, st in self.conn.execute(EDITS, (session_id,))}

    def edits_newest_first(self, session_id: str) -> list[EditRow]:
        return self.conn.execute(EDITS_NEWEST_FIRST, (session_id,)).fetchall()

    def staged(self, workspace: str | None) -> Iterator[tuple[str, str, str]]:
        """(session id, edit id, the edit as JSON) of each staged edit, oldest first."""
        where, args = ("AND workspace = ?", (workspace,)) if workspace else ("", ())
        yield from self.conn.execute(STAGED.format(where=where), args)

    # -- guidance --------------------------------------------------------------------------------------------

    def guidance(self, scope: str) -> Guidance:
        rows = self.conn.execute(GUIDANCE, (scope,))
        return Guidance({(pillar, key): json.loads(value) for pillar, key, value in rows})

    def guidance_entry(self, workspace: str, pillar: str, key: str) -> tuple[str, str, str, int] | None:
        """The guidance row served for a key: (value as JSON, session id, edit id, seq), or None."""
        row: tuple[str, str, str, int] | None = self.conn.execute(SELECT_GUIDANCE, (workspace, pillar, key)).fetchone()
        return row

    def hand(self, scope: str) -> str:
        row = self.conn.execute(HAND, (scope,)).fetchone()
        return str(row[0]) if row else ""

    # -- the session index -----------------------------------------------------------------------------------

    def session_for_trigger(self, trigger_id: str) -> str | None:
        row = self.conn.execute(SESSION_FOR_TRIGGER, (trigger_id,)).fetchone()
        return str(row[0]) if row else None

    def sessions(self, workspace: str | None, limit: int) -> list[dict[str, Any]]:
        where, args = ("WHERE workspace = ?", [workspace]) if workspace else ("", [])
        cur = self.conn.execute(SESSIONS.format(where=where), (*args, limit))
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur]

    def index(self, s: LearningSession, path: Path) -> None:
        """List (or update) one session's artifact in the index."""
        index(self.conn, s, path)

    def reindex(self, root: Path) -> tuple[int, list[str]]:
        """Rebuild the index from every session.json under `root`; returns (indexed, unreadable files)."""
        found, bad = artifacts.read_sessions(root)
        rows = [index_row(s, path) for s, path in found]
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute("DELETE FROM session_index")
            conn.executemany(UPSERT_INDEX, rows)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(rows), bad


def index_row(s: LearningSession, path: Path) -> tuple[object, ...]:
    count = {st: sum(1 for o in s.outcomes if o.status is st) for st in EditStatus}
    snaps = {(x.label, x.split): x.score for x in s.snapshots}
    return (s.id, s.workspace, s.status.value, s.trigger.value, s.trigger_id, s.autonomy.value, us(s.started_at),
            us(s.ended_at) if s.ended_at else None, count[EditStatus.APPLIED], count[EditStatus.STAGED],
            count[EditStatus.GATE_REJECTED] + count[EditStatus.REJECTED], snaps.get(("before", "val")),
            snaps.get(("after", "val")), str(path))


def index(conn: SessionConn, s: LearningSession, path: Path) -> None:
    conn.execute(UPSERT_INDEX, index_row(s, path))


def guidance_checksum(conn: SessionConn, workspace: str | None = None) -> str:
    """A digest of the guidance served (entries and playbooks), of one workspace or all."""
    digest = hashlib.sha256()
    where, args = ("WHERE workspace = ?", (workspace,)) if workspace else ("", ())
    for table in GUIDANCE_TABLES:
        for r in conn.execute(f"SELECT * FROM {table} {where} ORDER BY 1, 2", args):
            digest.update(repr(r).encode())
    return digest.hexdigest()
