"""The session and edit lifecycles: each a table of legal moves, enforced twice (by the consolidator and the
CLI before they emit, and by the store's projection, which refuses an illegal event before writing).

Session:
    triggered ─▶ harvesting ─▶ diagnosing ─▶ planning ─▶ gating ─▶ executing ─▶ completed
                                                │                      └──────▶ awaiting_review ─▶ completed
                                                └─▶ completed (nothing to change)
    completed / awaiting_review ─▶ rolled_back;  every state before completed ─▶ failed
Edit:
    (new) ─▶ gate_rejected | staged | applied;  staged ─▶ applied (approved) | rejected;  applied ─▶ rolled_back
"""

from __future__ import annotations

from pheromone.contracts.sessions import EditStatus, SessionStatus

S = SessionStatus
E = EditStatus

SESSION_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    S.TRIGGERED: frozenset({S.HARVESTING, S.FAILED}),
    S.HARVESTING: frozenset({S.DIAGNOSING, S.FAILED}),
    S.DIAGNOSING: frozenset({S.PLANNING, S.FAILED}),
    S.PLANNING: frozenset({S.GATING, S.COMPLETED, S.FAILED}),
    S.GATING: frozenset({S.EXECUTING, S.FAILED}),
    S.EXECUTING: frozenset({S.COMPLETED, S.AWAITING_REVIEW, S.FAILED}),
    S.AWAITING_REVIEW: frozenset({S.COMPLETED, S.ROLLED_BACK}),
    S.COMPLETED: frozenset({S.ROLLED_BACK}),
    S.FAILED: frozenset(),
    S.ROLLED_BACK: frozenset(),
}
SESSION_FIRST = S.TRIGGERED
ACTIVE: frozenset[SessionStatus] = frozenset(
    {S.TRIGGERED, S.HARVESTING, S.DIAGNOSING, S.PLANNING, S.GATING, S.EXECUTING}
)
"""A session in one of these holds its scope: no other may start there."""

EDIT_FIRST: frozenset[EditStatus] = frozenset({E.GATE_REJECTED, E.STAGED, E.APPLIED})
EDIT_TRANSITIONS: dict[EditStatus, frozenset[EditStatus]] = {
    E.GATE_REJECTED: frozenset(),
    E.STAGED: frozenset({E.APPLIED, E.REJECTED}),
    E.APPLIED: frozenset({E.ROLLED_BACK}),
    E.REJECTED: frozenset(),
    E.ROLLED_BACK: frozenset(),
}


class IllegalTransition(ValueError):
    """A move the lifecycle does not allow."""


def _check(kind: str, current: str | None, to: str, allowed: frozenset[str], first: frozenset[str]) -> None:
    if current is None:
        if to not in first:
            raise IllegalTransition(f"a new {kind} must start as {' or '.join(sorted(first))}, not {to}")
        return
    if to not in allowed:
        options = ", ".join(sorted(allowed)) or "none: it is final"
        raise IllegalTransition(f"illegal {kind} transition {current} -> {to} (from {current}: {options})")


def check_session(current: SessionStatus | None, to: SessionStatus) -> None:
    """Raise IllegalTransition unless a session in `current` (None: not started) may move to `to`."""
    allowed = SESSION_TRANSITIONS[current] if current is not None else frozenset()
    _check("session", current, to, allowed, frozenset({SESSION_FIRST}))


def check_edit(current: EditStatus | None, to: EditStatus) -> None:
    """Raise IllegalTransition unless an edit in `current` (None: not recorded) may move to `to`."""
    allowed = EDIT_TRANSITIONS[current] if current is not None else frozenset()
    _check("edit", current, to, allowed, EDIT_FIRST)
