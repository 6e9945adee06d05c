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

**Gate**: measurable edits in plan order, each against the state after the previously accepted edit. The
gain of an edit is the paired difference of the val score (same records, two states), and its noise has two
independent parts: each observed outcome an estimate replaces (a Bernoulli draw, variance p(1 - p) with p the
smoothed success rate of those records), and each train estimate it uses or stops using (a rate over n
records, variance p(1 - p)/n). The edit is accepted only when the one-sided lower confidence bound
`gain - z(1 - gate_alpha) x se` exceeds `min_improvement` (a useless edit passes with probability about
`gate_alpha`), and no failure cluster's val score falls by more than `max_cluster_regression`. An edit that
`supports` another follows its verdict. The test split is replayed before and after, and the accepted edits'
effect on it reported with the same interval: no decision reads it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from math import sqrt
from statistics import NormalDist, fmean

from pheromone.contracts.sessions import BenchmarkSnapshot, Edit, EditStatus, FailureCluster, LearningPlan, ReplayResult
from pheromone.services.sessions.diagnose import matches
from pheromone.services.sessions.guidance import Guidance, NotApplicable
from pheromone.services.sessions.harvest import Mined, Recovery, Run, Split, check_splits, stable_hash
from pheromone.services.sessions.plan import MEASURABLE
from pheromone.services.sessions.teacher import wait_evidence
from pheromone.services.settings import SessionsSettings

Estimate = tuple[tuple[object, ...], int, int]
"""A train estimate: (what it is the rate of, successes, records)."""


@dataclass(frozen=True)
class Effect:
    """The paired change of a split's score between two guidance states, with its standard error."""

    gain: float
    se: float

    def bound(self, alpha: float) -> float:
        """The one-sided lower confidence bound at level 1 - alpha."""
        return self.gain - NormalDist().inv_cdf(1 - alpha) * self.se


def _variance(successes: float, n: float) -> float:
    # Smoothed (one success and one failure added), so that an all-success sample still has noise.
    p = (successes + 1) / (n + 2)
    return p * (1 - p)


@dataclass
class Replayer:
    """Replays records of one mined benchmark; estimates come from its real train records."""

    mined: Mined
    settings: SessionsSettings
    clusters: Sequence[FailureCluster] = ()

    def __post_init__(self) -> None:
        self._train = self.mined.runs_of("train", real_only=True)
        self._train_recoveries = self.mined.recoveries_of("train", real_only=True)
        self._runs: dict[tuple[object, ...], tuple[int, int]] = {}
        self._recs: dict[tuple[object, ...], tuple[int, int] | None] = {}

    def run_term(self, r: Run, g: Guidance) -> tuple[float, Estimate | None]:
        """The run's replayed score, and the train estimate it comes from (None: its observed outcome)."""
        blocked = frozenset(p for p in r.patterns if g.blocks(p, r.model))
        if not blocked:
            return float(r.success), None
        key: tuple[object, ...] = ("run", r.workspace, r.model, blocked)
        counts = self._runs.get(key)
        if counts is None:
            alike = [t.success for t in self._train
                     if t.workspace == r.workspace and t.model == r.model and not blocked & set(t.patterns)]
            counts = self._runs[key] = (sum(alike), len(alike))
        if counts[1] < self.settings.min_estimate_runs:
            return float(r.success), None
        return counts[0] / counts[1], (key, *counts)

    def recovery_term(self, c: Recovery, g: Guidance) -> tuple[float, Estimate | None]:
        wait = g.wait(c.error_code, c.model)
        if wait is None:
            return float(c.success), None
        key: tuple[object, ...] = ("recovery", c.workspace, c.model, c.error_code, wait)
        if key not in self._recs:
            same = [t for t in self._train_recoveries
                    if t.workspace == c.workspace and t.model == c.model and t.error_code == c.error_code]
            self._recs[key] = wait_evidence(same, wait, self.settings)
        counts = self._recs[key]
        return (float(c.success), None) if counts is None else (counts[0] / counts[1], (key, *counts))

    def run(self, r: Run, g: Guidance) -> float:
        return self.run_term(r, g)[0]

    def recovery(self, c: Recovery, g: Guidance) -> float:
        return self.recovery_term(c, g)[0]

    def task(self, tid: str, g: Guidance) -> ReplayResult:
        scores = [self.run(r, g) for r in self.mined.runs.get(tid, [])]
        scores += [self.recovery(c, g) for c in self.mined.recoveries.get(tid, [])]
        hard = fmean(scores) if scores else 0.0
        return ReplayResult(id=tid, hard=hard, soft=hard, fail_reason="" if hard >= 0.5 else "mostly fails")

    def _tasks(self, split: Split) -> list[str]:
        return [t.id for t in self.mined.split(split) if self.mined.runs.get(t.id) or self.mined.recoveries.get(t.id)]

    def snapshot(self, label: str, split: Split, g: Guidance) -> BenchmarkSnapshot:
        tasks = self._tasks(split)
        results = [self.task(t, g) for t in tasks]
        runs = self.mined.runs_of(split)
        recs = self.mined.recoveries_of(split)
        per_cluster: dict[str, float] = {}
        for c in self.clusters:
            scores = [self.run(r, g) for r in runs if matches(c, r)]
            scores += [self.recovery(x, g) for x in recs if matches(c, x)]
            if scores:
                per_cluster[c.id] = fmean(scores)
        version = "b_" + stable_hash(split, *sorted(tasks))[:20]
        return BenchmarkSnapshot(label=label[:256], split=split, benchmark_version=version,  # type: ignore[arg-type]
                                 score=fmean(r.hard for r in results) if results else 0.0, tasks=len(results),
                                 runs=len(runs) + len(recs), per_cluster=per_cluster)

    def effect(self, split: Split, before: Guidance, after: Guidance) -> Effect:
        """The change of the split's score from `before` to `after`, record by record, with its standard error
        (module docstring): observed outcomes an estimate replaces, and the estimates used on either side."""
        tasks = self._tasks(split)
        gain = 0.0
        coef: dict[tuple[object, ...], float] = {}
        counts: dict[tuple[object, ...], tuple[int, int]] = {}
        observed: dict[tuple[object, ...], list[float]] = {}  # per estimate: sum of w^2, successes, records
        for tid in tasks:
            items: list[tuple[float, Estimate | None, float, Estimate | None, bool]] = []
            for r in self.mined.runs.get(tid, []):
                items.append((*self.run_term(r, before), *self.run_term(r, after), r.success))
            for c in self.mined.recoveries.get(tid, []):
                items.append((*self.recovery_term(c, before), *self.recovery_term(c, after), c.success))
            w = 1 / (len(tasks) * len(items))
            for a, ea, b, eb, success in items:
                if ea == eb:
                    continue  # same source on both sides: no change, no noise
                gain += w * (b - a)
                for est, sign in ((ea, -1.0), (eb, 1.0)):
                    if est is not None:
                        coef[est[0]] = coef.get(est[0], 0.0) + sign * w
                        counts[est[0]] = (est[1], est[2])
                if ea is None or eb is None:
                    slot = observed.setdefault((eb or ea)[0], [0.0, 0.0, 0.0])  # type: ignore[index]
                    slot[0] += w * w
                    slot[1] += success
                    slot[2] += 1
        var = sum(c * c * _variance(*counts[k]) / counts[k][1] for k, c in coef.items())
        var += sum(w2 * _variance(ok, n) for w2, ok, n in observed.values())
        return Effect(gain, sqrt(var))


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
    test_effect: Effect | None = None
    """The accepted edits' effect on the held-out test split (reported, never read by a decision)."""

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
    out.test_effect = rp.effect("test", start, out.state)
    return out


def _judge(e: Edit, out: GateResult, current: BenchmarkSnapshot, rp: Replayer, s: SessionsSettings) -> Verdict:
    try:
        candidate = out.state.with_edit(e)
    except NotApplicable as exc:
        return Verdict(e, False, f"not applicable: {exc}")
    after = rp.snapshot(f"candidate {e.id}", "val", candidate)
    effect = rp.effect("val", out.state, candidate)
    low = effect.bound(s.gate_alpha)
    scores = (f"val score {current.score:.4f} -> {after.score:.4f} (gain {effect.gain:+.4f} +- {effect.se:.4f}, "
              f"{1 - s.gate_alpha:.0%} lower bound {low:+.4f})")
    if low <= s.min_improvement:
        return Verdict(e, False, f"{scores}: not above the split's noise", current.score, after.score)
    for cid, before in current.per_cluster.items():
        drop = before - after.per_cluster.get(cid, before)
        if drop > s.max_cluster_regression:
            return Verdict(e, False, f"cluster {cid} regresses by {drop:.4f} (> {s.max_cluster_regression:g})",
                           current.score, after.score)
    out.state = candidate
    return Verdict(e, True, scores, current.score, after.score)


def _follow(e: Edit, verdicts: dict[str, Verdict], out: GateResult) -> Verdict:
    parent = verdicts.get(e.supports or "")
    if parent is None or not parent.accepted:
        return Verdict(e, False, f"supports {e.supports}, which the gate rejected")
    try:
        out.state = out.state.with_edit(e)
    except NotApplicable as exc:
        return Verdict(e, False, f"not applicable: {exc}")
    return Verdict(e, True, f"documents accepted edit {e.supports}", parent.before, parent.after)
