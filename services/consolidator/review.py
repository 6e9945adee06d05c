"""Review, approval and rollback of a session's edits: what `pheromone review` and `pheromone sessions
rollback` do, as plain functions over the store (`SessionStore`), an event emitter and the artifacts.

Every action is checked against the store before anything is sent (an illegal move, an edit that no longer
applies, a rollback blocked by a later edit of the same target is a `ReviewError` naming the problem); the
events then go through the ingest stream like every other, and the action returns once the store has
applied them. session.json is updated with the outcome and re-indexed.

Rollback emits, in one batch: `rolled_back` for each applied edit, newest first (each restores the exact value
its edit replaced), `rejected` for each still-staged edit, then the session's move to `rolled_back`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from pheromone.contracts import Envelope
from pheromone.contracts.sessions import (
    Edit,
    EditOutcome,
    EditStatus,
    EditTransitioned,
    LearningSession,
    SessionStatus,
    SessionTransitioned,
)
from pheromone.services.sessions import artifacts
from pheromone.services.sessions.guidance import NotApplicable, apply_edit, key_of
from pheromone.services.sessions.states import IllegalTransition, check_edit, check_session
from pheromone.services.store.session_store import SessionStore

Emit = Callable[[Sequence[Envelope]], Awaitable[None]]


class ReviewError(ValueError):
    """A review action that cannot be done, with the reason."""


async def approve(store: SessionStore, emit: Emit, root: Path, session_id: str, edit_id: str, actor: str,
                  timeout_s: float = 10.0) -> LearningSession:
    s, edit = _staged(store, root, session_id, edit_id, EditStatus.APPLIED)
    parent = store.edit_statuses(session_id).get(edit.supports) if edit.supports else None
    if edit.supports and parent is not EditStatus.APPLIED:
        state = parent.value if parent else "not in the store"
        raise ReviewError(f"edit {edit_id} supports edit {edit.supports}, which is {state}: "
                          "it can only apply once that edit is applied")
    current = store.guidance_entry(edit.workspace, edit.pillar.value, key_of(edit))
    try:
        apply_edit(json.loads(current[0]) if current else None, edit)
    except NotApplicable as exc:
        raise ReviewError(f"edit {edit_id} no longer applies: {exc}") from exc
    return await _decide(store, emit, root, s, edit, EditStatus.APPLIED, "approved", actor, timeout_s)


async def reject(store: SessionStore, emit: Emit, root: Path, session_id: str, edit_id: str, reason: str, actor: str,
                 timeout_s: float = 10.0) -> LearningSession:
    if not reason.strip():
        raise ReviewError("a rejection needs a reason (--reason)")
    s, edit = _staged(store, root, session_id, edit_id, EditStatus.REJECTED)
    # The staged edits that support it (and theirs) go with it: none of them may apply without it.
    statuses = store.edit_statuses(session_id)
    gone = {edit.id}
    for o in s.outcomes:  # plan order: an edit comes after the one it supports
        if o.edit.supports in gone and statuses.get(o.edit.id) is EditStatus.STAGED:
            gone.add(o.edit.id)
    followers = [o.edit for o in s.outcomes if o.edit.id in gone - {edit.id}]
    return await _decide(store, emit, root, s, edit, EditStatus.REJECTED, reason, actor, timeout_s, followers)


async def rollback(store: SessionStore, emit: Emit, root: Path, session_id: str, reason: str, actor: str,
                   timeout_s: float = 10.0) -> LearningSession:
    s = artifacts.read_session(root, session_id)
    state = store.session_status(session_id)
    if state is None:
        raise ReviewError(f"session {session_id} is not in the store (yet)")
    try:
        check_session(state[0], SessionStatus.ROLLED_BACK)
    except IllegalTransition as exc:
        raise ReviewError(f"session {session_id}: {exc}") from exc
    rows = store.edits_newest_first(session_id)
    events: list[Envelope] = []
    why = f"session rolled back: {reason}"[:8000]
    for edit_id, status, body, key, after in rows:
        edit = Edit.model_validate_json(body)
        if status == EditStatus.APPLIED.value:
            now = store.guidance_entry(edit.workspace, edit.pillar.value, key)
            if now is None or now[0] != after or now[2] != edit_id:
                by = f"edit {now[2]} of session {now[1]}" if now else "a removal"
                raise ReviewError(f"cannot roll back {session_id}: {key} was changed since by {by}; "
                                  "roll that back first")
            events.append(_edit_event(s, edit_id, EditStatus.ROLLED_BACK, why, actor, EditStatus.APPLIED))
        elif status == EditStatus.STAGED.value:
            events.append(_edit_event(s, edit_id, EditStatus.REJECTED, why, actor, EditStatus.STAGED))
    events.append(_session_event(s, SessionStatus.ROLLED_BACK, why, actor, state[0]))
    await emit(events)
    await wait_applied(store, events[-1].event_id, timeout_s)
    now_ = datetime.now(UTC)
    outcomes = [o.model_copy(update={"status": _after_rollback(o.status), "reason": why, "decided_by": actor,
                                     "decided_at": now_}) if o.status in _UNDONE else o for o in s.outcomes]
    return _save(store, root, s.model_copy(update={"outcomes": outcomes, "status": SessionStatus.ROLLED_BACK}))


_UNDONE = frozenset({EditStatus.APPLIED, EditStatus.STAGED})


def _after_rollback(status: EditStatus) -> EditStatus:
    return EditStatus.ROLLED_BACK if status is EditStatus.APPLIED else EditStatus.REJECTED


def _staged(store: SessionStore, root: Path, session_id: str, edit_id: str,
            to: EditStatus) -> tuple[LearningSession, Edit]:
    s = artifacts.read_session(root, session_id)
    status = store.edit_statuses(session_id).get(edit_id)
    if status is None:
        raise ReviewError(f"session {session_id} has no edit {edit_id} in the store")
    try:
        check_edit(status, to)
    except IllegalTransition as exc:
        raise ReviewError(f"edit {edit_id}: {exc}") from exc
    edit = next((o.edit for o in s.outcomes if o.edit.id == edit_id), None)
    if edit is None:
        raise ReviewError(f"session {session_id}'s artifact has no edit {edit_id}")
    return s, edit


async def _decide(store: SessionStore, emit: Emit, root: Path, s: LearningSession, edit: Edit, to: EditStatus,
                  reason: str, actor: str, timeout_s: float, followers: Sequence[Edit] = ()) -> LearningSession:
    events = [_edit_event(s, edit.id, to, reason, actor, EditStatus.STAGED)]
    events += [_edit_event(s, f.id, to, f"supports {edit.id}, rejected: {reason}", actor, EditStatus.STAGED)
               for f in followers]
    decided = {edit.id} | {f.id for f in followers}
    statuses = store.edit_statuses(s.id)
    left = [e for e, st in statuses.items() if st is EditStatus.STAGED and e not in decided]
    state = store.session_status(s.id)
    done = not left and state is not None and state[0] is SessionStatus.AWAITING_REVIEW
    if done:
        events.append(_session_event(s, SessionStatus.COMPLETED, "every staged edit was reviewed", actor,
                                     SessionStatus.AWAITING_REVIEW))
    await emit(events)
    await wait_applied(store, events[-1].event_id, timeout_s)
    now = datetime.now(UTC)
    outcomes = [EditOutcome.model_validate({**o.model_dump(), "status": to, "reason": (
                    reason if o.edit.id == edit.id else f"supports {edit.id}, rejected: {reason}")[:8192],
                                            "decided_by": actor, "decided_at": now})
                if o.edit.id in decided else o for o in s.outcomes]
    update: dict[str, object] = {"outcomes": outcomes}
    if done:
        update.update(status=SessionStatus.COMPLETED)
    return _save(store, root, s.model_copy(update=update))


def _save(store: SessionStore, root: Path, s: LearningSession) -> LearningSession:
    store.index(s, artifacts.write_session(root, s))
    return s


async def wait_applied(store: SessionStore, event_id: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(store.event_applied, event_id):
        if time.monotonic() >= deadline:
            raise ReviewError(f"sent event {event_id}, but the store did not apply it within {timeout_s:g}s "
                              "(is the store service running? see `pheromone dead list`)")
        await asyncio.sleep(0.05)


def _edit_event(s: LearningSession, edit_id: str, to: EditStatus, reason: str, actor: str,
                from_status: EditStatus) -> Envelope:
    return Envelope(workspace=s.workspace, job="review", correlation_id=s.id, payload=EditTransitioned(
        session_id=s.id, edit_id=edit_id, to_status=to, reason=reason[:8000], actor=actor[:256],
        from_status=from_status))


def _session_event(s: LearningSession, to: SessionStatus, reason: str, actor: str,
                   from_status: SessionStatus) -> Envelope:
    return Envelope(workspace=s.workspace, job="review", correlation_id=s.id, payload=SessionTransitioned(
        session_id=s.id, scope=s.workspace, to_status=to, reason=reason[:8000], actor=actor[:256],
        from_status=from_status))
