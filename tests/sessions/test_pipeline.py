"""The pure pipeline on the simulated fleet: the planted cause is found, the right edit proposed and accepted;
harmful, redundant and cluster-regressing edits from a scripted teacher are rejected by the gate."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pheromone.contracts.sessions import (
    AutonomyMode,
    Edit,
    EditOp,
    EditPillar,
    EditRiskTier,
    EditStatus,
    FailureCluster,
    edit_id,
)
from pheromone.services.sessions.diagnose import cluster_id, fisher_greater
from pheromone.services.sessions.guidance import Guidance
from pheromone.services.sessions.harvest import harvest
from pheromone.services.sessions.pipeline import Consolidation, diagnose_step, gate_step, plan_step
from pheromone.services.sessions.plan import RISK_TABLE, applies_without_review
from pheromone.services.sessions.teacher import Lesson, StatisticalTeacher
from pheromone.services.settings import SessionsSettings
from tests.sessions.fleet import HARMLESS, ODDS, PLANTED, WORKSPACE, fleet

S = SessionsSettings()
NOW = datetime(2025, 3, 2, tzinfo=UTC)


class ScriptedTeacher:
    """The LLM-teacher seam, driven by a script: proposes exactly the edits it is given."""

    name = "scripted"

    def __init__(self, edits: Sequence[Edit]) -> None:
        self.edits = list(edits)
        self.lessons: list[Lesson] = []

    def propose(self, lesson: Lesson) -> list[Edit]:
        self.lessons.append(lesson)
        return self.edits


def block(model: str | None, pattern: str = PLANTED, status: str = "quarantined", **kw: object) -> Edit:
    return Edit(id=edit_id(EditOp.SET_PATTERN_STATUS, WORKSPACE, pattern, model, status), pillar=EditPillar.PATTERN,
                op=EditOp.SET_PATTERN_STATUS, workspace=WORKSPACE, target=pattern, model=model,
                status=status, **kw)  # type: ignore[arg-type]


def session(teacher: object, mode: AutonomyMode = AutonomyMode.TIERED, *, recoveries: bool = False,
            extra_clusters: Sequence[FailureCluster] = ()) -> Consolidation:
    c = diagnose_step(harvest(list(enumerate(fleet(recoveries=recoveries), 1))), WORKSPACE, "s-1", S)
    c.clusters += list(extra_clusters)
    plan_step(c, teacher, Guidance(), WORKSPACE, "s-1", S, NOW)  # type: ignore[arg-type]
    gate_step(c, Guidance(), mode, S, NOW, WORKSPACE)
    return c


def outcome(c: Consolidation, eid: str) -> tuple[EditStatus, str]:
    o = next(o for o in c.outcomes if o.edit.id == eid)
    return o.status, o.reason


def test_the_planted_cause_is_found_with_rates_from_records() -> None:
    c = diagnose_step(harvest(list(enumerate(fleet(), 1))), WORKSPACE, "s-1", S)
    planted = [x for x in c.clusters if x.pattern_id == PLANTED]
    assert [(x.model, x.workspace) for x in planted] == [("model-b", WORKSPACE)]
    x = planted[0]
    runs = c.mined.runs_of("train", real_only=True)
    hit = [r for r in runs if r.model == "model-b" and PLANTED in r.patterns]
    assert (x.runs, x.failures) == (len(hit), sum(not r.success for r in hit))
    assert x.failure_rate == pytest.approx(x.failures / x.runs)
    assert x.failure_rate > 0.7 and x.baseline_rate is not None and x.baseline_rate < 0.35
    assert all(cl.failures > 0 for cl in c.clusters)  # no cluster without evidence


def test_a_fleet_where_nothing_differs_yields_no_cluster() -> None:
    """Only failed runs carry an error code and every wait is as good as any other: the old rule reported the
    error code of each model at a 100 % failure rate in every session."""
    null = {key: 0.7 for key in ODDS}
    found = []
    for seed in range(10):
        events = fleet(jobs=12, seed=seed, odds=null, recoveries=True, recovery_odds=(0.6, 0.6))
        found += diagnose_step(harvest(list(enumerate(events, 1))), WORKSPACE, "s-1", S).clusters
    assert found == []


def test_an_error_cluster_is_a_model_failing_with_a_code_more_than_the_others() -> None:
    odds = {("model-a", True): 0.8, ("model-a", False): 0.8, ("model-b", True): 0.4, ("model-b", False): 0.4}
    c = diagnose_step(harvest(list(enumerate(fleet(odds=odds), 1))), WORKSPACE, "s-1", S)
    assert [(x.tags, x.model, x.error_code) for x in c.clusters] == [(["error"], "model-b", "validation")]
    x = c.clusters[0]
    assert x.failure_rate > 0.5 and x.baseline_rate is not None and x.baseline_rate < 0.3


@given(st.integers(0, 12), st.integers(0, 12), st.integers(0, 12), st.integers(0, 12))
def test_the_fisher_tail_is_the_exact_hypergeometric_tail(a: int, b: int, c: int, d: int) -> None:
    from math import comb

    hit, rest, fails = a + b, c + d, a + c
    total = hit + rest
    exact = sum(comb(fails, k) * comb(total - fails, hit - k) for k in range(a, min(hit, fails) + 1)) / comb(total, hit)
    assert fisher_greater(a, hit, c, rest) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def test_the_statistical_teacher_proposes_the_right_edit_and_the_gate_accepts_it() -> None:
    c = session(StatisticalTeacher(), recoveries=True)
    assert c.plan is not None and c.gated is not None
    right = block("model-b").id
    status, reason = outcome(c, right)
    assert status is EditStatus.STAGED, reason  # review tier under tiered autonomy
    assert not any(e.op is EditOp.SET_PATTERN_STATUS and e.target == PLANTED and e.model != "model-b"
                   for e in c.plan.edits)
    note = next(e for e in c.plan.edits if e.supports == right)
    # auto tier, but it documents a staged edit: staged with it, never applied before a reviewer saw the reason
    assert outcome(c, note.id)[0] is EditStatus.STAGED
    wait = next(e for e in c.plan.edits if e.op is EditOp.SET_WAIT_POLICY)
    assert wait.seconds == 20.0 and wait.model == "model-b" and outcome(c, wait.id)[0] is EditStatus.APPLIED
    snaps = {(x.label, x.split): x for x in c.gated.snapshots}
    assert snaps[("after", "val")].score > snaps[("before", "val")].score
    versions = {x.benchmark_version for x in c.gated.snapshots if x.split == "val"}
    assert versions == {snaps[("before", "val")].benchmark_version}  # one locked benchmark per session
    assert c.report is not None and c.report.test_after is not None  # reported, never used to decide
    assert c.gated.test_effect is not None and c.gated.test_effect.gain > 0
    assert any(n.startswith("held-out test split: accepted edits change the score by +") for n in c.report.notes)


def test_an_edit_supporting_a_staged_edit_is_staged_whatever_its_tier() -> None:
    parent = block("model-b")  # review tier
    line = Edit(id="e_line", pillar=EditPillar.PLAYBOOK, op=EditOp.PLAYBOOK_ADD, workspace=WORKSPACE,
                content="- keep it from model-b", supports=parent.id)  # auto tier
    priority = Edit(id="e_pri", pillar=EditPillar.PATTERN, op=EditOp.SET_PATTERN_PRIORITY, workspace=WORKSPACE,
                    target=PLANTED, priority=1.0, supports=line.id)  # auto tier, supports the supporter
    tiered = session(ScriptedTeacher([parent, line, priority]), AutonomyMode.TIERED)
    assert [outcome(tiered, e.id)[0] for e in (parent, line, priority)] == [EditStatus.STAGED] * 3
    auto = session(ScriptedTeacher([parent, line, priority]), AutonomyMode.AUTO)  # parent applies: so do they
    assert [outcome(auto, e.id)[0] for e in (parent, line, priority)] == [EditStatus.APPLIED] * 3


def test_the_gain_is_paired_and_its_noise_counts_both_sides() -> None:
    from pheromone.services.sessions.gate import Replayer

    c = diagnose_step(harvest(list(enumerate(fleet(), 1))), WORKSPACE, "s-1", S)
    rp = Replayer(c.mined, S)
    start, edited = Guidance(), Guidance().with_edit(block("model-b"))
    effect = rp.effect("val", start, edited)
    assert effect.gain == pytest.approx(rp.snapshot("a", "val", edited).score - rp.snapshot("b", "val", start).score)
    assert effect.gain > 0.1 and 0.005 < effect.se < effect.gain / 3  # a planted 65-point harm is far above noise
    assert rp.effect("val", edited, edited) == type(effect)(0.0, 0.0)
    # reversing the edit flips the gain, not the noise
    back = rp.effect("val", edited, start)
    assert back.gain == pytest.approx(-effect.gain) and back.se == pytest.approx(effect.se)


def test_useless_edits_rarely_pass_the_gate() -> None:
    """A pattern with no effect on either model: the old rule (any rise of the val score) accepted about half of
    the blocks; the bound accepts about `gate_alpha` of them."""
    null = {key: 0.7 for key in ODDS}
    accepted = 0
    for seed in range(30):
        events = fleet(jobs=8, seed=seed, odds=null)
        c = diagnose_step(harvest(list(enumerate(events, 1))), WORKSPACE, "s-1", S)
        plan_step(c, ScriptedTeacher([block("model-a"), block("model-b")]), Guidance(), WORKSPACE, "s-1", S, NOW)
        gate_step(c, Guidance(), AutonomyMode.AUTO, S, NOW, WORKSPACE)
        accepted += sum(o.status is EditStatus.APPLIED for o in c.outcomes)
    assert accepted <= 6  # of 60 (a one-sided 5% test: 3 expected)


def test_a_harmful_edit_from_the_teacher_is_rejected() -> None:
    harmful = block("model-a")  # the pattern helps on model-a
    c = session(ScriptedTeacher([harmful]), AutonomyMode.AUTO)
    status, reason = outcome(c, harmful.id)
    assert status is EditStatus.GATE_REJECTED and "not above the split's noise" in reason


def test_each_edit_is_gated_against_the_state_after_the_previous_accepted_one() -> None:
    first, again = block("model-b"), block("model-b", status="retired")  # both keep it from model-b
    c = session(ScriptedTeacher([first, again]), AutonomyMode.AUTO)
    assert outcome(c, first.id)[0] is EditStatus.APPLIED
    status, reason = outcome(c, again.id)
    # Against the stale baseline `again` would look as good as `first`; against the state after it, it adds nothing.
    assert status is EditStatus.GATE_REJECTED and "not above the split's noise" in reason


def test_a_cluster_that_regresses_beyond_the_bound_rejects_an_edit_that_helps_overall() -> None:
    everywhere = block(None)  # better on the whole (model-b gains more than model-a loses) ...
    guard = FailureCluster(id=cluster_id("pattern", WORKSPACE, "model-a", None, PLANTED), workspace=WORKSPACE,
                           model="model-a", pattern_id=PLANTED, tags=["pattern"], runs=1, failures=1,
                           failure_rate=1.0)
    c = session(ScriptedTeacher([everywhere]), AutonomyMode.AUTO, extra_clusters=[guard])
    status, reason = outcome(c, everywhere.id)
    assert status is EditStatus.GATE_REJECTED and f"cluster {guard.id} regresses" in reason  # ... not on model-a


def test_the_teacher_cannot_choose_its_tier_or_push_unmeasurable_edits() -> None:
    sneaky = block("model-b", risk_tier=EditRiskTier.AUTO)
    line = Edit(id="e_line", pillar=EditPillar.PLAYBOOK, op=EditOp.PLAYBOOK_ADD, workspace=WORKSPACE, content="- hi")
    other = block("model-b", pattern=HARMLESS).model_copy(update={"workspace": "elsewhere"})
    teacher = ScriptedTeacher([sneaky, line, other])
    c = session(teacher, AutonomyMode.TIERED)
    assert c.plan is not None
    assert [e.id for e in c.plan.edits] == [sneaky.id]
    assert c.plan.edits[0].risk_tier is EditRiskTier.REVIEW
    assert outcome(c, sneaky.id)[0] is EditStatus.STAGED
    assert any("no measurable effect" in d for d in c.plan.dropped)
    assert any("outside the session's scope" in d for d in c.plan.dropped)
    lesson = teacher.lessons[0]
    assert {r.id for r in lesson.runs}.isdisjoint({r.id for r in c.mined.runs_of("val")})  # val stays held out


def test_the_risk_table_covers_every_op_and_autonomy_decides_per_tier() -> None:
    assert {op for _, op in RISK_TABLE} == set(EditOp)
    decide = {(t, m): applies_without_review(t, m) for t in EditRiskTier for m in AutonomyMode}
    assert [k for k, v in decide.items() if v] == [
        (EditRiskTier.AUTO, AutonomyMode.AUTO), (EditRiskTier.AUTO, AutonomyMode.TIERED),
        (EditRiskTier.REVIEW, AutonomyMode.AUTO),
    ]


def test_a_full_session_record_round_trips_through_its_json() -> None:
    from pheromone.contracts.sessions import LearningSession, SessionStatus, TriggerKind

    c = session(StatisticalTeacher(), recoveries=True)
    assert c.gated is not None
    record = LearningSession(
        id="s-1", workspace=WORKSPACE, trigger=TriggerKind.CLUSTER, trigger_id="t-1", autonomy=AutonomyMode.TIERED,
        status=SessionStatus.AWAITING_REVIEW, started_at=NOW, clusters=c.clusters, outcomes=c.outcomes,
        snapshots=c.gated.snapshots, report=c.report,
    )
    assert LearningSession.model_validate_json(record.model_dump_json()) == record
    assert c.plan is not None and type(c.plan).model_validate_json(c.plan.model_dump_json()) == c.plan
