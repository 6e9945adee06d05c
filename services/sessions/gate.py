"""The gate: replay a split against a guidance state, and accept edits one at a time on held-out evidence.

**Replay** (docs/SESSIONS.md, "The score"). Each val/test record gets an expected success under a guidance
state, estimated from the real train records only:
  - a run whose applied patterns are all served under the state keeps its observed outcome (1 or 0);
  - a run that applied a pattern the state keeps from its model gets the success rate of train runs of the
    same workspace and model that applied none of the blocked patterns (if there are `min_estimate_runs`);
  - a recovery with a wait policy for its (error code, model) gets the train success rate of recoveries that
    waited at least that long; without a policy, its observed outcome.
A task's ReplayResult is the mean over its records; the **score** of a split is the mean over its tasks (each
recurring situation weighs the same); a cluster's score is the mean over the split's records in the cluster.

**Gate**: measurable edits in plan order, each against the state after the previously accepted edit: accepted
only when the val score rises by more than `min_improvement` and no cluster's score falls by more than
`max_cluster_regression`. An edit that `supports` another follows its verdict. The test split is replayed
before and after, for the report only: no decision reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import fmean

from contracts.sessions import BenchmarkSnapshot, Edit, EditStatus, FailureCluster, LearningPlan, ReplayResult
from services.sessions.diagnose import matches
from services.sessions.guidance import Guidance, NotApplicable
from services.sessions.harvest import Mined, Recovery, Run, Split, check_splits, stable_hash
from services.sessions.plan import MEASURABLE
from services.sessions.teacher import wait_rate
from services.settings import SessionsSettings


@dataclass
class Replayer:
    """Replays records of one mined benchmark; estimates come from its real train records."""

    mined: Mined
    settings: SessionsSettings
    clusters: Sequence[FailureCluster] = ()

    def __post_init__(self) -> None:
        self._train = self.mined.runs_of("train", real_only=True)
        self._train_recoveries = self.mined.recoveries_of("train", real_only=True)

    def run(self, r: Run, g: Guidance) -> float:
        blocked = {p for p in r.patterns if g.blocks(p, r.model)}
        if not blocked:
            return float(r.success)
        alike = [t.success for t in self._train
                 if t.workspace == r.workspace and t.model == r.model and not blocked & set(t.patterns)]
        return sum(alike) / len(alike) if len(alike) >= self.settings.min_estimate_runs else float(r.success)

    def recovery(self, c: Recovery, g: Guidance) -> float:
        wait = g.wait(c.error_code, c.model)
        if wait is None:
            return float(c.success)
        same = [t for t in self._train_recoveries
                if t.workspace == c.workspace and t.model == c.model and t.error_code == c.error_code]
        rate = wait_rate(same, wait, self.settings)
        return float(c.success) if rate is None else rate

    def task(self, tid: str, g: Guidance) -> ReplayResult:
        scores = [self.run(r, g) for r in self.mined.runs.get(tid, [])]
        scores += [self.recovery(c, g) for c in self.mined.recoveries.get(tid, [])]
        hard = fmean(scores) if scores else 0.0
        return ReplayResult(id=tid, hard=hard, soft=hard, fail_reason="" if hard >= 0.5 else "mostly fails")

    def snapshot(self, label: str, split: Split, g: Guidance) -> BenchmarkSnapshot:
        tasks = [t for t in self.mined.split(split) if self.mined.runs.get(t.id) or self.mined.recoveries.get(t.id)]
        results = [self.task(t.id, g) for t in tasks]
        runs = self.mined.runs_of(split)
        recs = self.mined.recoveries_of(split)
        per_cluster: dict[str, float] = {}
        for c in self.clusters:
            scores = [self.run(r, g) for r in runs if matches(c, r)]
            scores += [self.recovery(x, g) for x in recs if matches(c, x)]
            if scores:
                per_cluster[c.id] = fmean(scores)
        version = "b_" + stable_hash(split, *sorted(t.id for t in tasks))[:20]
        return BenchmarkSnapshot(label=label[:256], split=split, benchmark_version=version,  # type: ignore[arg-type]
                                 score=fmean(r.hard for r in results) if results else 0.0, tasks=len(results),
                                 runs=len(runs) + len(recs), per_cluster=per_cluster)


@dataclass
class Verdict:
    edit: Edit
    accepted: bool
    reason: str
    before: float | None = None
    after: float | None = None


@dataclass
class GateResult:
    verdicts: list[Verdict] = field(default_factory=list)
    snapshots: list[BenchmarkSnapshot] = field(default_factory=list)
    state: Guidance = field(default_factory=Guidance)

    def status(self, edit_id: str) -> EditStatus | None:
        return next((EditStatus.STAGED if v.accepted else EditStatus.GATE_REJECTED
                     for v in self.verdicts if v.edit.id == edit_id), None)


def gate(plan: LearningPlan, mined: Mined, start: Guidance, s: SessionsSettings) -> GateResult:
    check_splits(mined)  # raises GateRefused: no gate on an unsound benchmark
    rp = Replayer(mined, s, plan.clusters)
    out = GateResult(state=start)
    first = rp.snapshot("before", "val", start)
    out.snapshots.append(first)
    out.snapshots.append(rp.snapshot("before", "test", start))
    current = first
    verdicts: dict[str, Verdict] = {}
    for e in plan.edits:
        if e.op not in MEASURABLE:
            v = _follow(e, verdicts, out)
        else:
            v = _judge(e, out, current, rp, s)
            if v.accepted:
                current = rp.snapshot(f"after {e.id}", "val", out.state)
                out.snapshots.append(current)
        verdicts[e.id] = v
        out.verdicts.append(v)
    out.snapshots.append(rp.snapshot("after", "val", out.state))
    out.snapshots.append(rp.snapshot("after", "test", out.state))
    return out


def _judge(e: Edit, out: GateResult, current: BenchmarkSnapshot, rp: Replayer, s: SessionsSettings) -> Verdict:
    try:
        candidate = out.state.with_edit(e)
    except NotApplicable as exc:
        return Verdict(e, False, f"not applicable: {exc}")
    after = rp.snapshot(f"candidate {e.id}", "val", candidate)
    if after.score <= current.score + s.min_improvement:
        return Verdict(e, False, f"val score {current.score:.4f} -> {after.score:.4f}: not strictly better",
                       current.score, after.score)
    for cid, before in current.per_cluster.items():
        drop = before - after.per_cluster.get(cid, before)
        if drop > s.max_cluster_regression:
            return Verdict(e, False, f"cluster {cid} regresses by {drop:.4f} (> {s.max_cluster_regression:g})",
                           current.score, after.score)
    out.state = candidate
    return Verdict(e, True, f"val score {current.score:.4f} -> {after.score:.4f}", current.score, after.score)


def _follow(e: Edit, verdicts: dict[str, Verdict], out: GateResult) -> Verdict:
    parent = verdicts.get(e.supports or "")
    if parent is None or not parent.accepted:
        return Verdict(e, False, f"supports {e.supports}, which the gate rejected")
    try:
        out.state = out.state.with_edit(e)
    except NotApplicable as exc:
        return Verdict(e, False, f"not applicable: {exc}")
    return Verdict(e, True, f"documents accepted edit {e.supports}", parent.before, parent.after)
