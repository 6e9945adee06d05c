"""One session's reasoning, from harvested records to edit outcomes, with no I/O: mine, diagnose, plan, gate,
decide. The consolidator (`services.consolidator`) wraps it with the lifecycle events and the artifacts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from pheromone.contracts.sessions import (
    AutonomyMode,
    EditOutcome,
    EditRecord,
    EditStatus,
    FailureCluster,
    LearningPlan,
    SleepReport,
)
from pheromone.services.sessions.diagnose import diagnose
from pheromone.services.sessions.gate import GateResult, gate
from pheromone.services.sessions.guidance import Guidance
from pheromone.services.sessions.harvest import Harvest, Mined, mine
from pheromone.services.sessions.plan import applies_without_review, make_plan
from pheromone.services.sessions.teacher import Lesson, Teacher
from pheromone.services.settings import SessionsSettings


@dataclass
class Consolidation:
    mined: Mined
    clusters: list[FailureCluster]
    plan: LearningPlan | None = None
    gated: GateResult | None = None
    outcomes: list[EditOutcome] = field(default_factory=list)
    report: SleepReport | None = None


def diagnose_step(h: Harvest, scope: str, session_id: str, s: SessionsSettings) -> Consolidation:
    m = mine(h, val_fraction=s.val_fraction, test_fraction=s.test_fraction, dreams_per_task=s.dreams_per_task,
             session_id=session_id)
    clusters = [c for c in diagnose(m.runs_of("train", real_only=True), m.recoveries_of("train", real_only=True), s)
                if c.workspace == scope]
    return Consolidation(m, clusters)


def plan_step(c: Consolidation, teacher: Teacher, g: Guidance, scope: str, session_id: str,
              s: SessionsSettings, now: datetime, pending: Mapping[str, str] | None = None) -> LearningPlan:
    lesson = Lesson(scope, c.clusters, c.mined.runs_of("train"), c.mined.recoveries_of("train"), g, s)
    c.plan = make_plan(session_id, teacher.name, scope, c.clusters, list(teacher.propose(lesson)), now,
                       s.max_edits, pending)
    return c.plan


def gate_step(c: Consolidation, g: Guidance, mode: AutonomyMode, s: SessionsSettings, now: datetime,
              scope: str) -> None:
    """Gate the plan and decide each edit: gate_rejected, applied (its tier needs no review under `mode`) or
    staged for review. An edit that supports a staged edit is staged with it, whatever its own tier: applying
    it would put in front of jobs what a reviewer has not seen the reason for (plan order puts parents first)."""
    assert c.plan is not None
    c.gated = gate(c.plan, c.mined, g, s)
    decided: dict[str, EditStatus] = {}
    for v in c.gated.verdicts:
        if not v.accepted:
            status = EditStatus.GATE_REJECTED
        elif v.edit.supports is not None and decided.get(v.edit.supports) is EditStatus.STAGED:
            status = EditStatus.STAGED
        elif applies_without_review(v.edit.risk_tier, mode):
            status = EditStatus.APPLIED
        else:
            status = EditStatus.STAGED
        decided[v.edit.id] = status
        final = status is not EditStatus.STAGED
        c.outcomes.append(EditOutcome(edit=v.edit, status=status, reason=v.reason[:8192], score_before=v.before,
                                      score_after=v.after, decided_by="gate" if final else None,
                                      decided_at=now if final else None))
    c.report = report(c, scope=scope, started=now, ended=now)


def report(c: Consolidation, *, scope: str, started: datetime, ended: datetime, note: str = "") -> SleepReport:
    snaps = {(x.label, x.split): x.score for x in (c.gated.snapshots if c.gated else [])}
    kept = [o for o in c.outcomes if o.status is not EditStatus.GATE_REJECTED]
    rejected = [o for o in c.outcomes if o.status is EditStatus.GATE_REJECTED]
    return SleepReport(
        project=scope or "none", started_at=started, ended_at=ended,
        n_sessions=len({r.job for r in c.mined.runs_of("train")}),
        n_tasks=len(c.mined.tasks), n_replayed=sum(x.tasks for x in (c.gated.snapshots if c.gated else [])),
        baseline_score=snaps.get(("before", "val"), 0.0), candidate_score=snaps.get(("after", "val"), 0.0),
        test_before=snaps.get(("before", "test")), test_after=snaps.get(("after", "test")),
        accepted=bool(kept), gate_action="accepted" if kept else "rejected" if rejected else "none",
        no_edits_reason=note if not c.outcomes else "",
        edits=[_record(o) for o in kept], rejected_edits=[_record(o) for o in rejected],
        notes=([note] if note else []) + _test_note(c),
    )


def _test_note(c: Consolidation) -> list[str]:
    e = c.gated.test_effect if c.gated else None
    if e is None or not any(o.status is not EditStatus.GATE_REJECTED for o in c.outcomes):
        return []
    return [f"held-out test split: accepted edits change the score by {e.gain:+.4f} +- {1.96 * e.se:.4f} (95%)"]


def _record(o: EditOutcome) -> EditRecord:
    e = o.edit
    return EditRecord(target=(e.target or e.pillar.value)[:256], op=e.op.value, content=e.content or "",
                      anchor=e.anchor or "", rationale=f"{e.rationale} [{o.reason}]"[:8192])
