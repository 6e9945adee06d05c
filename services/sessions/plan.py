"""Plan: the fixed risk table, the frozen LearningPlan, and what applies without review.

The risk tier of an edit is a function of its (pillar, op) only, looked up here; whatever tier a teacher
writes on an edit is overwritten. AutonomyMode then decides, per tier, whether a gated edit applies at once
or is staged for `pheromone review`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from pheromone.contracts.sessions import (
    AutonomyMode,
    Edit,
    EditOp,
    EditPillar,
    EditRiskTier,
    FailureCluster,
    LearningPlan,
)

P, W, B = EditPillar.PATTERN, EditPillar.WAIT_POLICY, EditPillar.PLAYBOOK
RISK_TABLE: dict[tuple[EditPillar, EditOp], EditRiskTier] = {
    (P, EditOp.SET_PATTERN_STATUS): EditRiskTier.REVIEW,  # hides a pattern from jobs: a person should see it
    (P, EditOp.SET_PATTERN_PRIORITY): EditRiskTier.AUTO,  # re-ranks, hides nothing
    (P, EditOp.SET_SUGGESTED_ACTION): EditRiskTier.REVIEW,  # free text jobs act on
    (W, EditOp.SET_WAIT_POLICY): EditRiskTier.AUTO,  # a bounded number, gated on recoveries
    (B, EditOp.PLAYBOOK_ADD): EditRiskTier.AUTO,  # adds a line inside the learned block
    (B, EditOp.PLAYBOOK_REPLACE): EditRiskTier.REVIEW,  # changes a line someone may rely on
    (B, EditOp.PLAYBOOK_DELETE): EditRiskTier.MANUAL,  # removes guidance: only ever by a person
}
"""(pillar, op) -> tier, for every op (a test checks it is total). Teachers cannot override it."""

MEASURABLE: frozenset[EditOp] = frozenset({EditOp.SET_PATTERN_STATUS, EditOp.SET_WAIT_POLICY})
"""Ops whose effect replay can measure on the val split; the others are gated through `Edit.supports`."""


def applies_without_review(tier: EditRiskTier, mode: AutonomyMode) -> bool:
    if tier is EditRiskTier.MANUAL or mode is AutonomyMode.MANUAL:
        return False
    return mode is AutonomyMode.AUTO or tier is EditRiskTier.AUTO


def make_plan(session_id: str, teacher: str, scope: str, clusters: Sequence[FailureCluster],
              proposals: Sequence[Edit], created_at: datetime, max_edits: int,
              pending: Mapping[str, str] | None = None) -> LearningPlan:
    """Freeze the teacher's proposals: tiers from the table; edits outside the scope, duplicates, edits still
    staged by an earlier session (`pending`: edit id -> session), edits supporting nothing in the plan, and
    edits beyond `max_edits` are dropped with a reason."""
    pending = pending or {}
    edits: list[Edit] = []
    dropped: list[str] = []
    seen: set[str] = set()
    for e in proposals:
        if e.workspace != scope:
            dropped.append(f"{e.id}: workspace {e.workspace} is outside the session's scope {scope}")
        elif e.id in seen:
            dropped.append(f"{e.id}: duplicate")
        elif e.id in pending:
            dropped.append(f"{e.id}: already staged by session {pending[e.id]}, waiting for review")
        elif e.supports is not None and e.supports not in seen:
            dropped.append(f"{e.id}: supports {e.supports}, which is not an earlier edit of the plan")
        elif e.op not in MEASURABLE and e.supports is None:
            dropped.append(f"{e.id}: {e.op.value} has no measurable effect and supports no edit")
        elif len(edits) >= max_edits:
            dropped.append(f"{e.id}: over the plan's limit of {max_edits} edits")
        else:
            edits.append(e.model_copy(update={"risk_tier": RISK_TABLE[(e.pillar, e.op)]}))
            seen.add(e.id)
    kept = [c for c in clusters if c.failures > 0]
    return LearningPlan(session_id=session_id, teacher=teacher, created_at=created_at, clusters=kept,
                        edits=edits, dropped=dropped[:256])
