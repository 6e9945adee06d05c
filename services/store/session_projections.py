"""How the store projects the session events (registered into `services.store.projections.PROJECTIONS`); the
session rules they enforce are `services.sessions` (states, guidance), pure.

Every refusal is an `EventRejected` raised before anything is written (the store's projection contract):
an event about another workspace than its envelope's (workspaces are a boundary), an illegal session or edit
transition, a second active session in a scope, an edit that does not apply to the current guidance (anchor
missing, no change), a rollback of an edit whose target has changed since. Some are retryable, because a
redelivery can bring them before their predecessor (`services.order`): an event sent from a status the
session or edit has not reached yet, a later move of a session or edit not recorded yet, a session's first
event while its scope's previous session has not ended yet, an edit whose session is not recorded yet.

Applying an edit stores the guidance row it replaced (`before`: value, session, edit and seq, or null);
rolling it back writes that row back as it was, or deletes the entry if there was none: the guidance
tables are then byte for byte what they were before the edit (`guidance_checksum`).
"""

from __future__ import annotations

import json

from pheromone.contracts import Envelope
from pheromone.contracts.sessions import (
    Edit,
    EditStatus,
    EditTransitioned,
    PlaybookWritten,
    SessionStatus,
    SessionTransitioned,
)
from pheromone.services.errors import EventRejected
from pheromone.services.order import check_predecessor
from pheromone.services.sessions.guidance import NotApplicable, apply_edit, key_of
from pheromone.services.sessions.states import (
    ACTIVE,
    EDIT_FIRST,
    EDIT_TRANSITIONS,
    SESSION_FIRST,
    SESSION_TRANSITIONS,
    IllegalTransition,
    check_edit,
    check_session,
)
from pheromone.services.store.codec import dumps, us
from pheromone.services.store.context import ProjectionContext
from pheromone.services.store.sql import SqlConn

SELECT_SESSION = "SELECT status, scope FROM session_state WHERE session_id = ?"
ACTIVE_IN_SCOPE = (
    f"SELECT session_id FROM session_state WHERE scope = ? AND status IN ({','.join('?' * len(ACTIVE))}) LIMIT 1"
)
INSERT_SESSION = "INSERT INTO session_state VALUES (?,?,?,?,?,?,?,?)"
UPDATE_SESSION = """
UPDATE session_state SET status = ?, watermark = COALESCE(?, watermark), updated_us = ?, seq = ?
WHERE session_id = ?
"""
INSERT_SESSION_TRANSITION = "INSERT INTO session_transitions VALUES (?,?,?,?,?,?,?,?)"
SELECT_EDIT = "SELECT status, edit, key, before, after FROM session_edits WHERE session_id = ? AND edit_id = ?"
INSERT_EDIT = "INSERT INTO session_edits VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
UPDATE_EDIT = """
UPDATE session_edits SET status = ?, before = ?, after = ?, reason = ?, actor = ?, updated_us = ?, seq = ?
WHERE session_id = ? AND edit_id = ?
"""
INSERT_EDIT_TRANSITION = "INSERT INTO edit_transitions VALUES (?,?,?,?,?,?,?,?,?)"
SELECT_GUIDANCE = "SELECT value, session_id, edit_id, seq FROM guidance WHERE workspace = ? AND pillar = ? AND key = ?"
WRITE_GUIDANCE = """
INSERT INTO guidance VALUES (?,?,?,?,?,?,?)
ON CONFLICT(workspace, pillar, key) DO UPDATE SET
    value = excluded.value, session_id = excluded.session_id, edit_id = excluded.edit_id, seq = excluded.seq
"""
DELETE_GUIDANCE = "DELETE FROM guidance WHERE workspace = ? AND pillar = ? AND key = ?"
WRITE_PLAYBOOK = """
INSERT INTO playbooks VALUES (?,?,?,?,?)
ON CONFLICT(workspace) DO UPDATE SET
    hand = excluded.hand, actor = excluded.actor, updated_us = excluded.updated_us, seq = excluded.seq
"""


def session_transition(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, SessionTransitioned)
    _own(env, p.scope, "session")
    row = conn.execute(SELECT_SESSION, (p.session_id,)).fetchone()
    current = SessionStatus(row[0]) if row else None
    check_predecessor(f"session {p.session_id}", current, p.from_status, SESSION_TRANSITIONS,
                      frozenset({SESSION_FIRST}))
    try:
        check_session(current, p.to_status)
    except IllegalTransition as exc:
        # A later move of a session not recorded yet is ahead of its first event, which may be on its way.
        raise EventRejected(f"session {p.session_id}: {exc}", retryable=current is None) from exc
    at = us(env.occurred_at)
    if row is None:
        if p.trigger is None:
            raise EventRejected(f"session {p.session_id}: its first event must say what triggered it")
        busy = conn.execute(ACTIVE_IN_SCOPE, (p.scope, *ACTIVE)).fetchone()
        if busy:
            # Retryable: the active session's last event (failed by the consolidator that abandons it, or its
            # own end) can still be on its way; if it never comes, the bound dead-letters this one.
            raise EventRejected(f"scope {p.scope} already has an active session ({busy[0]})", retryable=True)
        conn.execute(INSERT_SESSION, (p.session_id, p.scope, p.to_status.value, p.trigger.value, p.watermark,
                                      at, at, seq))
    else:
        if row[1] != p.scope:
            raise EventRejected(f"session {p.session_id} belongs to scope {row[1]}, not {p.scope}")
        conn.execute(UPDATE_SESSION, (p.to_status.value, p.watermark, at, seq, p.session_id))
    conn.execute(INSERT_SESSION_TRANSITION, (env.event_id, seq, p.session_id, current.value if current else None,
                                             p.to_status.value, p.reason, p.actor, at))


def edit_transition(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, EditTransitioned)
    row = conn.execute(SELECT_EDIT, (p.session_id, p.edit_id)).fetchone()
    current = EditStatus(row[0]) if row else None
    check_predecessor(f"edit {p.edit_id} of session {p.session_id}", current, p.from_status, EDIT_TRANSITIONS,
                      EDIT_FIRST)
    try:
        check_edit(current, p.to_status)
    except IllegalTransition as exc:
        raise EventRejected(f"edit {p.edit_id} of session {p.session_id}: {exc}", retryable=current is None) from exc
    if row is None:
        if p.edit is None or p.edit.id != p.edit_id:
            raise EventRejected(f"edit {p.edit_id}: its first event must carry the edit, with that id")
        if conn.execute(SELECT_SESSION, (p.session_id,)).fetchone() is None:
            # Retryable: after a crash, redelivery can bring an edit before its session's first event.
            raise EventRejected(f"session {p.session_id} is not in the store", retryable=True)
        edit, key, before, after = p.edit, key_of(p.edit), None, None
    else:
        edit, key, before, after = Edit.model_validate_json(row[1]), row[2], row[3], row[4]
    ws, pillar = edit.workspace, edit.pillar.value
    _own(env, ws, "edit")
    if p.to_status is EditStatus.APPLIED:
        found = conn.execute(SELECT_GUIDANCE, (ws, pillar, key)).fetchone()
        try:
            value = apply_edit(json.loads(found[0]) if found else None, edit)
        except NotApplicable as exc:
            raise EventRejected(f"edit {p.edit_id} does not apply: {exc}") from exc
        before = dumps(list(found)) if found else None
        after = dumps(value)
        conn.execute(WRITE_GUIDANCE, (ws, pillar, key, after, p.session_id, p.edit_id, seq))
    elif p.to_status is EditStatus.ROLLED_BACK:
        found = conn.execute(SELECT_GUIDANCE, (ws, pillar, key)).fetchone()
        if found is None or found[0] != after or found[2] != p.edit_id:
            by = f" by edit {found[2]} of session {found[1]}" if found else " (removed)"
            raise EventRejected(f"edit {p.edit_id} cannot be rolled back: {key} has changed since{by}; "
                                "roll that back first")
        if before is None:
            conn.execute(DELETE_GUIDANCE, (ws, pillar, key))
        else:
            value, session_id, edit_id, old_seq = json.loads(before)
            conn.execute(WRITE_GUIDANCE, (ws, pillar, key, value, session_id, edit_id, old_seq))
    at = us(env.occurred_at)
    if row is None:
        conn.execute(INSERT_EDIT, (p.session_id, p.edit_id, ws, pillar, edit.op.value, key, p.to_status.value,
                                   edit.risk_tier.value, edit.model_dump_json(), before, after, p.reason,
                                   p.actor, at, seq))
    else:
        conn.execute(UPDATE_EDIT, (p.to_status.value, before, after, p.reason, p.actor, at, seq,
                                   p.session_id, p.edit_id))
    conn.execute(INSERT_EDIT_TRANSITION, (env.event_id, seq, p.session_id, p.edit_id,
                                          current.value if current else None, p.to_status.value, p.reason,
                                          p.actor, at))


def playbook_written(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, PlaybookWritten)
    _own(env, p.workspace, "playbook")
    conn.execute(WRITE_PLAYBOOK, (p.workspace, p.text, p.actor, us(env.occurred_at), seq))


def _own(env: Envelope, workspace: str, what: str) -> None:
    """Workspaces are a boundary: only events from a workspace change its sessions, guidance or playbook."""
    if env.workspace != workspace:
        raise EventRejected(f"{what} events of workspace {workspace} must come from it, not from {env.workspace}")


def session_trigger(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    raise EventRejected("session triggers belong on the triggers stream, where the consolidator reads them; "
                        "the store does not record them")


SESSION_PROJECTIONS = {
    "session_trigger": session_trigger,
    "session_transition": session_transition,
    "edit_transition": edit_transition,
    "playbook_written": playbook_written,
}

