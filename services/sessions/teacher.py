"""The teacher: turns failure clusters into proposed edits. A Protocol, with two kinds of implementation:
the deterministic `StatisticalTeacher` shipped here, and an LLM-backed one (any object with `name` and
`propose`; the tests drive the seam with a scripted fake). A teacher only proposes: the planner sets tiers
and the gate decides, so a teacher cannot push an edit through.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pheromone.contracts.sessions import Edit, EditOp, EditPillar, FailureCluster, edit_id
from pheromone.services.sessions.guidance import Guidance
from pheromone.services.sessions.harvest import Recovery, Run
from pheromone.services.settings import SessionsSettings


@dataclass(frozen=True)
class Lesson:
    """What a teacher is shown: the scope, its clusters, the train split (real and dream) and the guidance."""

    scope: str
    clusters: Sequence[FailureCluster]
    runs: Sequence[Run]
    recoveries: Sequence[Recovery]
    guidance: Guidance
    settings: SessionsSettings


class Teacher(Protocol):
    name: str

    def propose(self, lesson: Lesson) -> Sequence[Edit]: ...


class StatisticalTeacher:
    """Deterministic: a pattern cluster -> keep the pattern from that model (plus a playbook line saying so);
    a recovery cluster -> the shortest wait whose train success rate is within `wait_tolerance` of the best."""

    name = "statistical"

    def propose(self, lesson: Lesson) -> list[Edit]:
        out: list[Edit] = []
        for c in lesson.clusters:
            if c.pattern_id is not None and not lesson.guidance.blocks(c.pattern_id, c.model):
                out += self._block(lesson.scope, c)
            elif "recovery" in c.tags and c.error_code is not None:
                out += self._wait(lesson, c)
        return out

    def _block(self, scope: str, c: FailureCluster) -> list[Edit]:
        block = Edit(
            id=edit_id(EditOp.SET_PATTERN_STATUS, scope, c.pattern_id, c.model, "quarantined"),
            pillar=EditPillar.PATTERN, op=EditOp.SET_PATTERN_STATUS, workspace=scope, target=c.pattern_id,
            model=c.model, status="quarantined", rationale=c.hypothesis, references=[c.id],  # type: ignore[arg-type]
        )
        base = f"{c.baseline_rate:.0%}" if c.baseline_rate is not None else "n/a"
        line = (f"- Do not apply pattern `{c.pattern_id}` on {c.model or 'any model'}: {c.failures} of {c.runs} "
                f"runs with it failed, {base} without it (cluster {c.id}).")[:1000]
        note = Edit(
            id=edit_id(EditOp.PLAYBOOK_ADD, scope, line), pillar=EditPillar.PLAYBOOK, op=EditOp.PLAYBOOK_ADD,
            workspace=scope, content=line, rationale=f"documents {block.id}", references=[c.id], supports=block.id,
        )
        return [block, note]

    def _wait(self, lesson: Lesson, c: FailureCluster) -> list[Edit]:
        s = lesson.settings
        same = [r for r in lesson.recoveries if r.workspace == c.workspace and r.model == c.model
                and r.error_code == c.error_code]
        rates = {w: rate for w in sorted({r.wait for r in same}) if (rate := wait_rate(same, w, s)) is not None}
        if not rates:
            return []
        best = max(rates.values())
        wait = min(w for w, rate in rates.items() if rate >= best - s.wait_tolerance)
        if wait <= 0 or lesson.guidance.wait(c.error_code or "", c.model) == wait:
            return []
        return [Edit(
            id=edit_id(EditOp.SET_WAIT_POLICY, lesson.scope, c.error_code, c.model, wait),
            pillar=EditPillar.WAIT_POLICY, op=EditOp.SET_WAIT_POLICY, workspace=lesson.scope,
            target=c.error_code, model=c.model, seconds=min(wait, 86_400.0),
            rationale=f"{c.hypothesis}; waiting >= {wait:g}s succeeded {rates[wait]:.0%} in train",
            references=[c.id],
        )]


def wait_evidence(recoveries: Sequence[Recovery], wait: float, s: SessionsSettings) -> tuple[int, int] | None:
    """(successes, count) of recoveries that waited at least `wait` (None: fewer than `min_estimate_runs`)."""
    waited = [r.success for r in recoveries if r.wait >= wait]
    return (sum(waited), len(waited)) if len(waited) >= s.min_estimate_runs else None


def wait_rate(recoveries: Sequence[Recovery], wait: float, s: SessionsSettings) -> float | None:
    """Success rate of recoveries that waited at least `wait` (None: fewer than `min_estimate_runs`)."""
    counts = wait_evidence(recoveries, wait, s)
    return None if counts is None else counts[0] / counts[1]
