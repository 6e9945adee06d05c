"""Does learning work? Simulated fleets with planted causes (and null fleets with none) go through the real
store (`services.store.db.Store`: projections, scores, the lifecycle) and the real session pipeline
(`services.sessions.pipeline`: harvest, diagnose, plan, gate, decide); then fresh jobs that follow what
pheromone serves are compared with jobs that ignore it and with an oracle that knows the planted odds.

Per seed (every figure is over `--seeds` seeds, with a 95 % interval):

1. **Efficacy.** A fleet of ~1,000 runs on two models and four patterns, success drawn from planted odds:
   `split the prompt` helps on model-a and hurts on model-b; `skip the tests` hurts everywhere; `cite the
   source` helps everywhere; `back off` does nothing; recoveries from 429 on model-b succeed when the job
   waited >= 20 s. The events go through `Store.apply`; the consolidator's view harvests them from the
   ledger; the pipeline runs with the statistical teacher (autonomy `auto`: every gate-accepted edit
   applies, as if a reviewer approved). Then 1,000 runs per arm: **guided** jobs apply a pattern the store
   validated, skip one it quarantined or the session's guidance blocks for their model, explore the pending
   ones as unguided jobs do, and wait as the guidance's wait policy says (else the store's learned wait);
   **unguided** jobs apply each pattern half the time and wait a random time; the **oracle** applies the
   best subset for its model and waits 20 s. Lift = guided - unguided success; its share of the oracle's.
   Recall: the planted causes a session reports as clusters. The same pipeline in `tiered` autonomy counts
   applied edits that support a staged one (must be 0). A **null fleet** (nothing differs) counts sessions
   that report a cluster or accept an edit.
2. **Gate power** (`GATE_TRIALS` sessions per seed and size). One model, a pattern applied in 30 % of runs
   whose removal changes the fleet's success by
   -10 (clearly harmful), -2 (subtle), 0 (useless) or +5 points (helpful); a scripted teacher proposes to
   block it; the gate decides, for fleets of 250, 1,000 and 4,000 runs per session window.
3. **Lifecycle.** Applications of patterns of known true success through a real store: quarantined within
   100 applications at 70 %, within 15 at 20 %; a quarantined pattern at 80 % back in use within 30.
4. **Stress (seed 002).** 20 consecutive sessions, each on a fresh 1,000-run window of a fleet that follows
   the current guidance, with a noisy teacher proposing random edits; gated (the pipeline) and ungated
   (every edit applied), from the same start (what a good session learned: `GOOD_START`). The score is the
   fleet's exact expected success under the guidance (from the planted odds). `--svg` draws it (the
   repository's copy: docs/efficacy-stress.svg).

    python bench/efficacy.py [--seeds 200] [--workers 2] [--json] [--svg docs/efficacy-stress.svg]

With --json the last line is one JSON object (rates as fractions).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from pheromone.contracts import (  # noqa: E402
    Envelope,
    ErrorRecoveryRecord,
    ExecutionRecord,
    PatternApplied,
    PatternObserved,
    pattern_id,
)
from pheromone.contracts.sessions import AutonomyMode, Edit, EditOp, EditPillar, EditStatus, edit_id  # noqa: E402
from pheromone.services.query.learning import WaitArgs, wait  # noqa: E402
from pheromone.services.sessions.guidance import Guidance, NotApplicable  # noqa: E402
from pheromone.services.sessions.harvest import Harvest, Recovery, Run, harvest  # noqa: E402
from pheromone.services.sessions.pipeline import Consolidation, diagnose_step, gate_step, plan_step  # noqa: E402
from pheromone.services.sessions.teacher import Lesson, StatisticalTeacher  # noqa: E402
from pheromone.services.settings import LearningSettings, SessionsSettings  # noqa: E402
from pheromone.services.store.db import Store  # noqa: E402
from pheromone.services.store.reader import Reader  # noqa: E402
from pheromone.services.store.session_store import SessionStore  # noqa: E402

WS = "ws-bench"
MODELS = ("model-a", "model-b")
BASE = 0.70
PTYPE = "prompt_pattern"
EFFECTS: dict[str, dict[str, float]] = {
    "split the prompt": {"model-a": 0.15, "model-b": -0.45},
    "skip the tests": {"model-a": -0.35, "model-b": -0.35},
    "cite the source": {"model-a": 0.15, "model-b": 0.15},
    "back off": {"model-a": 0.0, "model-b": 0.0},
}
NAMES = tuple(EFFECTS)
PID = {name: pattern_id(PTYPE, name) for name in NAMES}
WAITS = (2.0, 5.0, 10.0, 15.0, 20.0, 40.0)
RECOVERY_CODE, RECOVERY_MODEL, ENOUGH_WAIT = "429", "model-b", 20.0
RECOVERY_ODDS = (0.9, 0.2)  # waited >= 20 s, less
PLANTED = (("pattern", "split the prompt", "model-b"), ("pattern", "skip the tests", "model-a"),
           ("pattern", "skip the tests", "model-b"), ("recovery", RECOVERY_CODE, RECOVERY_MODEL))
SHEETS = 40
T0 = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
NOW = datetime(2026, 1, 6, tzinfo=UTC)
S = SessionsSettings()
L = LearningSettings()


# -- the planted world ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    effects: dict[str, dict[str, float]]
    recovery_odds: tuple[float, float]

    def p_run(self, model: str, applied: Sequence[str]) -> float:
        return min(0.98, max(0.02, BASE + sum(self.effects[n][model] for n in applied)))

    def p_recovery(self, wait_s: float) -> float:
        return self.recovery_odds[0 if wait_s >= ENOUGH_WAIT else 1]


PLANTED_WORLD = World(EFFECTS, RECOVERY_ODDS)
NULL_WORLD = World({n: dict.fromkeys(MODELS, 0.0) for n in NAMES}, (0.6, 0.6))


def fleet_events(world: World, rng: random.Random, jobs: int = 24) -> list[Envelope]:
    """~1,000 runs (24 jobs x 40 sheets), each pattern applied half the time, recoveries on a third of
    model-b's runs with a random wait."""
    out = [Envelope(workspace=WS, job="seed", occurred_at=T0, payload=PatternObserved(
        pattern_type=PTYPE, pattern_name=n, context_tags=["bench"])) for n in NAMES]
    t = T0
    for j in range(jobs):
        model = MODELS[j % 2]
        job = f"{WS}.job-{j}"
        for sheet in range(1, SHEETS + 1):
            t += timedelta(seconds=1)
            applied = [n for n in NAMES if rng.random() < 0.5]
            ok = rng.random() < world.p_run(model, applied)
            xid = f"x-{j}-{sheet}"
            out.append(Envelope(workspace=WS, job=job, occurred_at=t, payload=ExecutionRecord(
                id=xid, workspace_hash=WS, job_hash=job, sheet_num=sheet, started_at=t, completed_at=t,
                duration_seconds=1.0, status="completed" if ok else "failed", retry_count=0,
                success_without_retry=ok, validation_pass_rate=1.0 if ok else 0.0, confidence_score=0.5,
                model=model, error_codes=[] if ok else ["validation"])))
            for n in applied:
                out.append(Envelope(workspace=WS, job=job, occurred_at=t, payload=PatternApplied(
                    pattern_id=PID[n], success=ok, execution_id=xid, model=model)))
            if model == RECOVERY_MODEL and sheet % 3 == 0:
                w = rng.choice(WAITS)
                out.append(Envelope(workspace=WS, job=job, occurred_at=t, payload=ErrorRecoveryRecord(
                    id=f"r-{j}-{sheet}", error_code=RECOVERY_CODE, suggested_wait=w, actual_wait=w,
                    recovery_success=rng.random() < world.p_recovery(w), recorded_at=t, model=model,
                    time_of_day=sheet % 24)))
    return out


# -- 1. efficacy through the real store and pipeline -------------------------------------------------------------


def session(h: Harvest, mode: AutonomyMode, teacher: Any = None, g: Guidance | None = None,
            sid: str = "s-1") -> Consolidation:
    g = g or Guidance()
    c = diagnose_step(h, WS, sid, S)
    plan_step(c, teacher or StatisticalTeacher(), g, WS, sid, S, NOW)
    gate_step(c, g, mode, S, NOW, WS)
    return c


def applied_state(c: Consolidation, g: Guidance) -> Guidance:
    for o in c.outcomes:
        if o.status is EditStatus.APPLIED:
            g = g.with_edit(o.edit)
    return g


def applied_on_staged(c: Consolidation) -> int:
    status = {o.edit.id: o.status for o in c.outcomes}
    return sum(1 for o in c.outcomes if o.status is EditStatus.APPLIED and o.edit.supports
               and status.get(o.edit.supports) is not EditStatus.APPLIED)


def recalled(c: Consolidation) -> list[bool]:
    found = {("pattern", x.pattern_id, x.model) for x in c.clusters if "pattern" in x.tags}
    found |= {("recovery", x.error_code, x.model) for x in c.clusters if "recovery" in x.tags}
    return [(kind, PID.get(what, what), model) in found for kind, what, model in PLANTED]


async def through_store(world: World, rng: random.Random, tmp: Path) -> tuple[Harvest, dict[str, str], float | None]:
    """Ingest a fleet into a real store; return the harvest the consolidator's view reads back from the
    ledger, the lifecycle status of each pattern, and the learned wait for 429 on model-b (None: static)."""
    db = tmp / "store.db"
    events = fleet_events(world, rng)
    async with Store(db) as store:
        for i in range(0, len(events), 1_000):
            await store.apply([(e, e.model_dump_json()) for e in events[i : i + 1_000]])
    view = SessionStore(db)
    try:
        h = harvest(view.ledger(WS, 0, S.max_harvest_events))
        status = {n: view.conn.execute("SELECT quarantine_status FROM patterns WHERE id = ?", (PID[n],))
                  .fetchone()[0] for n in NAMES}
    finally:
        view.close()
    async with Reader(db) as reader:
        learned = await wait(reader, WaitArgs(error_code=RECOVERY_CODE, model=RECOVERY_MODEL), L)
    db.unlink()
    return h, status, (learned["wait_seconds"] if learned["strategy"] != "static_fallback" else None)


def best_subset(world: World, model: str) -> tuple[str, ...]:
    subsets = (c for k in range(len(NAMES) + 1) for c in itertools.combinations(NAMES, k))
    return max(subsets, key=lambda c: (world.p_run(model, c), -len(c)))


def evaluate(world: World, rng: random.Random, g: Guidance, status: dict[str, str], learned_wait: float | None,
             runs: int = 1_000) -> dict[str, float]:
    """Success rates of guided, unguided and oracle jobs on the same planted odds (runs and recoveries)."""
    out: dict[str, float] = {}
    for arm in ("guided", "unguided", "oracle"):
        ok = n = 0
        for i in range(runs):
            model = MODELS[i % 2]
            if arm == "oracle":
                applied = list(best_subset(world, model))
            elif arm == "unguided":
                applied = [p for p in NAMES if rng.random() < 0.5]
            else:
                applied = []
                for p in NAMES:
                    if g.blocks(PID[p], model) or status[p] in ("quarantined", "retired"):
                        continue
                    if status[p] == "validated" or rng.random() < 0.5:
                        applied.append(p)
            ok += rng.random() < world.p_run(model, applied)
            n += 1
            if model == RECOVERY_MODEL and i % 3 == 0:
                if arm == "oracle":
                    w = ENOUGH_WAIT
                elif arm == "guided" and (policy := g.wait(RECOVERY_CODE, model)) is not None:
                    w = policy
                elif arm == "guided" and learned_wait is not None:
                    w = learned_wait
                else:
                    w = rng.choice(WAITS)
                ok += rng.random() < world.p_recovery(w)
                n += 1
        out[arm] = ok / n
    return out


def efficacy(seed: int, tmp: Path) -> dict[str, Any]:
    rng = random.Random(f"efficacy-{seed}")
    h, status, learned = asyncio.run(through_store(PLANTED_WORLD, rng, tmp))
    auto = session(h, AutonomyMode.AUTO)
    tiered = session(h, AutonomyMode.TIERED)
    rates = evaluate(PLANTED_WORLD, rng, applied_state(auto, Guidance()), status, learned)
    hn, _, _ = asyncio.run(through_store(NULL_WORLD, rng, tmp))
    null = session(hn, AutonomyMode.AUTO)
    return {
        **rates, "recalled": recalled(auto), "applied_on_staged": applied_on_staged(tiered),
        "status": status, "learned_wait": learned,
        "null_false": bool(null.clusters) or any(o.status is EditStatus.APPLIED for o in null.outcomes),
    }


# -- 2. gate power ----------------------------------------------------------------------------------------------

EXPOSURE = 0.3
EDIT_EFFECTS = {"harmful": -0.10, "subtle": -0.02, "useless": 0.0, "helpful": 0.05}
SIZES = (250, 1_000, 4_000)
GATE_TRIALS = {250: 10, 1_000: 10, 4_000: 3}
"""Gate sessions per seed and size: a rate near the gate's nominal level needs thousands of trials to be told
from its target, and one trial per seed would leave a 200-seed run's interval three points wide."""
TARGET = pattern_id(PTYPE, "scripted target")
OTHER = pattern_id(PTYPE, "scripted bystander")


class ScriptedTeacher:
    name = "scripted"

    def __init__(self, edits: Sequence[Edit]) -> None:
        self.edits = list(edits)

    def propose(self, lesson: Lesson) -> list[Edit]:
        return self.edits


def block(pattern: str, model: str | None) -> Edit:
    return Edit(id=edit_id(EditOp.SET_PATTERN_STATUS, WS, pattern, model, "quarantined"), pillar=EditPillar.PATTERN,
                op=EditOp.SET_PATTERN_STATUS, workspace=WS, target=pattern, model=model,
                status="quarantined")  # type: ignore[arg-type]


def gate_trial(kind: str, runs: int, rng: random.Random) -> tuple[bool, int]:
    """One session on a one-model fleet where blocking TARGET changes the fleet's success by EDIT_EFFECTS[kind]:
    the pattern (applied in EXPOSURE of runs) moves its runs' success by -effect / EXPOSURE."""
    delta = -EDIT_EFFECTS[kind] / EXPOSURE
    h = Harvest()
    jobs = max(1, runs // 50)
    for j in range(jobs):
        for sheet in range(1, 51):
            on = rng.random() < EXPOSURE
            pats = (TARGET, OTHER) if on else (OTHER,)
            ok = rng.random() < 0.6 + (delta if on else 0.0)
            h.runs.append(Run(f"x-{j}-{sheet}", f"job-{j}", WS, "model", sheet, ok, () if ok else ("validation",),
                              tuple(sorted(pats))))
    c = session(h, AutonomyMode.AUTO, ScriptedTeacher([block(TARGET, "model")]))
    val = len(c.mined.runs_of("val"))
    return any(o.status is EditStatus.APPLIED for o in c.outcomes), val


def gate_power(seed: int) -> dict[str, Any]:
    rng = random.Random(f"gate-{seed}")
    out: dict[str, Any] = {}
    for size in SIZES:
        out[f"n_{size}"] = GATE_TRIALS[size]
        for kind in EDIT_EFFECTS:
            trials = [gate_trial(kind, size, rng) for _ in range(GATE_TRIALS[size])]
            out[f"{kind}_{size}"] = sum(accepted for accepted, _ in trials)
            out[f"val_{size}"] = statistics.fmean(val for _, val in trials)
    return out


# -- 3. lifecycle through the real store ---------------------------------------------------------------------------


async def lifecycle(seed: int, tmp: Path) -> dict[str, bool]:
    """Patterns of known true success, applied through a real store: which were ever quarantined, and whether
    one driven into quarantine was let out."""
    rng = random.Random(f"lifecycle-{seed}")
    db = tmp / "lifecycle.db"
    t = T0
    plan = {"good_100": (0.7, 100), "bad_15": (0.2, 15), "fine_100": (0.9, 100), "even_100": (0.5, 100)}
    events: list[Envelope] = []
    for name in [*plan, "recover"]:
        events.append(Envelope(workspace=WS, job="life", occurred_at=t, payload=PatternObserved(
            pattern_type=PTYPE, pattern_name=name)))
    for name, (p, n) in plan.items():
        for _ in range(n):
            t += timedelta(seconds=1)
            events.append(Envelope(workspace=WS, job="life", occurred_at=t, payload=PatternApplied(
                pattern_id=pattern_id(PTYPE, name), success=rng.random() < p)))
    rid = pattern_id(PTYPE, "recover")
    async with Store(db) as store:
        await store.apply([(e, e.model_dump_json()) for e in events])
        # drive `recover` into quarantine with failures, then 30 applications at a true 80 %
        for _ in range(L.lifecycle_min_evidence):  # quarantined at the last of these: no bound decides sooner
            t += timedelta(seconds=1)
            env = Envelope(workspace=WS, job="life", occurred_at=t,
                           payload=PatternApplied(pattern_id=rid, success=False))
            await store.apply([(env, env.model_dump_json())])
        later = []
        for _ in range(30):
            t += timedelta(seconds=1)
            later.append(Envelope(workspace=WS, job="life", occurred_at=t, payload=PatternApplied(
                pattern_id=rid, success=rng.random() < 0.8)))
    view = SessionStore(db)
    try:
        def moved_to(name: str, to: str) -> bool:
            return view.conn.execute("SELECT 1 FROM pattern_transitions WHERE pattern_id = ? AND to_status = ?",
                                     (pattern_id(PTYPE, name), to)).fetchone() is not None
        out = {name: moved_to(name, "quarantined") for name in plan}
        quarantined = view.conn.execute("SELECT quarantine_status FROM patterns WHERE id = ?", (rid,)).fetchone()[0]
    finally:
        view.close()
    async with Store(db) as store:
        await store.apply([(e, e.model_dump_json()) for e in later])
    view = SessionStore(db)
    try:
        out["recover_30"] = quarantined == "quarantined" and view.conn.execute(
            "SELECT 1 FROM pattern_transitions WHERE pattern_id = ? AND from_status = 'quarantined'",
            (rid,)).fetchone() is not None
        out["recover_quarantined"] = quarantined == "quarantined"
    finally:
        view.close()
    db.unlink()
    return out


# -- 4. the seed-002 stress test -----------------------------------------------------------------------------------

SESSIONS = 20
STRESS_WAITS = (2.0, 5.0, 10.0, 20.0, 40.0)


def expected_score(world: World, g: Guidance) -> float:
    """The fleet's exact expected success (runs and recoveries) when its jobs follow `g`: a pattern blocked for
    a model is never applied there, the others half the time; a wait policy is followed, else a random wait."""
    total = weight = 0.0
    for model in MODELS:
        served = [p for p in NAMES if not g.blocks(PID[p], model)]
        subsets = [c for k in range(len(served) + 1) for c in itertools.combinations(served, k)]
        total += sum(world.p_run(model, c) for c in subsets) / len(subsets)
        weight += 1
        if model == RECOVERY_MODEL:
            policy = g.wait(RECOVERY_CODE, model)
            p = world.p_recovery(policy) if policy is not None else statistics.fmean(
                world.p_recovery(w) for w in WAITS)
            total += p / 3  # a third of model-b's runs meet a 429
            weight += 1 / 3
    return total / weight


def window(world: World, g: Guidance, rng: random.Random, k: int) -> Harvest:
    """A fresh 1,000-run window of a fleet that follows `g`."""
    h = Harvest()
    served = {m: [n for n in NAMES if not g.blocks(PID[n], m)] for m in MODELS}
    for j in range(24):
        model = MODELS[j % 2]
        for sheet in range(1, SHEETS + 1):
            names = [n for n in served[model] if rng.random() < 0.5]
            applied = tuple(sorted(PID[n] for n in names))
            ok = rng.random() < world.p_run(model, names)
            h.runs.append(Run(f"x-{k}-{j}-{sheet}", f"job-{j}", WS, model, sheet, ok,
                              () if ok else ("validation",), applied))
            if model == RECOVERY_MODEL and sheet % 3 == 0:
                policy = g.wait(RECOVERY_CODE, model)
                w = policy if policy is not None else rng.choice(WAITS)
                h.recoveries.append(Recovery(f"r-{k}-{j}-{sheet}", WS, RECOVERY_CODE, model, sheet % 24, w,
                                             rng.random() < world.p_recovery(w)))
    return h


def status_edit(pattern: str, model: str | None, status: str) -> Edit:
    return Edit(id=edit_id(EditOp.SET_PATTERN_STATUS, WS, pattern, model, status), pillar=EditPillar.PATTERN,
                op=EditOp.SET_PATTERN_STATUS, workspace=WS, target=pattern, model=model,
                status=status)  # type: ignore[arg-type]


def wait_edit(model: str | None, seconds: float, *salt: object) -> Edit:
    return Edit(id=edit_id(EditOp.SET_WAIT_POLICY, WS, RECOVERY_CODE, model, seconds, *salt),
                pillar=EditPillar.WAIT_POLICY, op=EditOp.SET_WAIT_POLICY, workspace=WS, target=RECOVERY_CODE,
                model=model, seconds=seconds)


GOOD_START = Guidance()
for _e in (status_edit(PID["skip the tests"], None, "quarantined"),
           status_edit(PID["split the prompt"], "model-b", "quarantined"), wait_edit(RECOVERY_MODEL, ENOUGH_WAIT)):
    GOOD_START = GOOD_START.with_edit(_e)
"""Where both arms of the stress test start: what a good session learned (the seed's stress test starts from a
working system, so that what random edits can do is break it)."""


class NoisyTeacher:
    """Proposes random edits: a random status (keep from jobs, or serve) for a random pattern on a random model
    (or every model), or a random wait for 429 on a random model; each with a playbook line supporting it."""

    name = "noisy"

    def __init__(self, rng: random.Random, k: int, edits: int = 4) -> None:
        self.rng, self.k, self.n = rng, k, edits

    def propose(self, lesson: Lesson) -> list[Edit]:
        out: list[Edit] = []
        for i in range(self.n):
            model = self.rng.choice([*MODELS, None])
            if self.rng.random() < 0.6:
                status = self.rng.choice(("quarantined", "validated"))
                e = status_edit(PID[self.rng.choice(NAMES)], model, status)
            else:
                e = wait_edit(model, self.rng.choice(STRESS_WAITS), self.k, i)
            line = f"- session {self.k}, idea {i}: {e.op.value} {e.target} {e.model}"
            out += [e, Edit(id=edit_id(EditOp.PLAYBOOK_ADD, WS, line), pillar=EditPillar.PLAYBOOK,
                            op=EditOp.PLAYBOOK_ADD, workspace=WS, content=line, supports=e.id)]
        return out


def stress(seed: int) -> dict[str, list[float]]:
    rng = random.Random(f"stress-{seed}")
    gated = ungated = GOOD_START
    start = expected_score(PLANTED_WORLD, gated)
    scores: dict[str, list[float]] = {"start": [start], "gated": [], "ungated": []}
    for k in range(SESSIONS):
        teacher_rng = random.Random(f"stress-{seed}-{k}")  # both arms get the same proposals
        c = session(window(PLANTED_WORLD, gated, rng, k), AutonomyMode.AUTO, NoisyTeacher(teacher_rng, k), gated,
                    sid=f"s-{k}")
        gated = applied_state(c, gated)
        for e in NoisyTeacher(random.Random(f"stress-{seed}-{k}"), k).propose(None):  # type: ignore[arg-type]
            try:
                ungated = ungated.with_edit(e)
            except NotApplicable:
                pass
        scores["gated"].append(expected_score(PLANTED_WORLD, gated))
        scores["ungated"].append(expected_score(PLANTED_WORLD, ungated))
    return scores


# -- the run --------------------------------------------------------------------------------------------------------


def one_seed(seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pheromone-efficacy-") as d:
        tmp = Path(d)
        return {"seed": seed, "efficacy": efficacy(seed, tmp), "gate": gate_power(seed),
                "lifecycle": asyncio.run(lifecycle(seed, tmp)), "stress": stress(seed)}


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return 0.0, 1.0
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return max(0.0, c - h), min(1.0, c + h)


def mean_ci(xs: Sequence[float]) -> tuple[float, float, float]:
    m = statistics.fmean(xs)
    half = 1.96 * statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("inf")
    return m, m - half, m + half


def ratio_ci(num: Sequence[float], den: Sequence[float], rng: random.Random) -> tuple[float, float, float]:
    """Ratio of means with a percentile bootstrap over seeds."""
    n = len(num)
    boots = []
    for _ in range(2_000):
        idx = [rng.randrange(n) for _ in range(n)]
        d = sum(den[i] for i in idx)
        boots.append(sum(num[i] for i in idx) / d if d else 0.0)
    boots.sort()
    return sum(num) / sum(den), boots[int(0.025 * len(boots))], boots[int(0.975 * len(boots)) - 1]


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(results)
    eff = [r["efficacy"] for r in results]
    lifts = [e["guided"] - e["unguided"] for e in eff]
    oracle = [e["oracle"] - e["unguided"] for e in eff]
    lift, lift_lo, lift_hi = mean_ci(lifts)
    oracle_lift, o_lo, o_hi = mean_ci(oracle)
    share, s_lo, s_hi = ratio_ci(lifts, oracle, random.Random(0))
    found = [x for e in eff for x in e["recalled"]]
    rates: dict[str, Any] = {}

    def rate(name: str, k: int, total: int) -> None:
        lo, hi = wilson(k, total)
        rates[name], rates[f"{name}_ci"] = k / total if total else 0.0, [round(lo, 4), round(hi, 4)]

    rate("recall", sum(found), len(found))
    rate("null_false_rate", sum(e["null_false"] for e in eff), n)
    for size in SIZES:
        for kind in EDIT_EFFECTS:
            key = f"accept_{kind}" if size == 1_000 else f"accept_{kind}_{size}"
            rate(key, sum(r["gate"][f"{kind}_{size}"] for r in results), sum(r["gate"][f"n_{size}"] for r in results))
    life = [r["lifecycle"] for r in results]
    rate("quarantine_good_100", sum(x["good_100"] for x in life), n)
    rate("quarantine_bad_15", sum(x["bad_15"] for x in life), n)
    rate("quarantine_90pct_100", sum(x["fine_100"] for x in life), n)
    rate("quarantine_50pct_100", sum(x["even_100"] for x in life), n)
    driven = [x for x in life if x["recover_quarantined"]]
    rate("recover_30", sum(x["recover_30"] for x in driven), len(driven))
    # Scores are sums over subsets in a different order when the guidance differs: a difference below 1e-9 is
    # rounding, not a change.
    gated_delta = [0.0 if abs(d) < 1e-9 else d
                   for r in results for d in (g - r["stress"]["start"][0] for g in r["stress"]["gated"])]
    final_ungated = [r["stress"]["ungated"][-1] - r["stress"]["start"][0] for r in results]
    final_gated = [r["stress"]["gated"][-1] - r["stress"]["start"][0] for r in results]
    statuses: dict[str, dict[str, int]] = {}
    for e in eff:
        for name, st in e["status"].items():
            statuses.setdefault(name, {}).setdefault(st, 0)
            statuses[name][st] += 1
    return {
        "bench": "efficacy",
        **{k: round(v, 4) if isinstance(v, float) else v for k, v in rates.items()},
        "lift": round(lift, 4), "lift_ci_low": round(lift_lo, 4), "lift_ci_high": round(lift_hi, 4),
        "oracle_lift": round(oracle_lift, 4), "oracle_lift_ci": [round(o_lo, 4), round(o_hi, 4)],
        "lift_share": round(share, 4), "lift_share_ci": [round(s_lo, 4), round(s_hi, 4)],
        "success_guided": round(statistics.fmean(e["guided"] for e in eff), 4),
        "success_unguided": round(statistics.fmean(e["unguided"] for e in eff), 4),
        "success_oracle": round(statistics.fmean(e["oracle"] for e in eff), 4),
        "applied_on_staged": sum(e["applied_on_staged"] for e in eff),
        "val_runs": {str(size): round(statistics.fmean(r["gate"][f"val_{size}"] for r in results), 1)
                     for size in SIZES},
        "stress_gated_min_delta": round(min(gated_delta), 6),
        "stress_gated_final_delta": round(statistics.fmean(final_gated), 4),
        "stress_ungated_final_delta": round(statistics.fmean(final_ungated), 4),
        "stress_start": round(results[0]["stress"]["start"][0], 4),
        "lifecycle_status_counts": statuses,
        "seeds": n,
    }


def svg(results: list[dict[str, Any]], path: Path) -> None:
    """Mean expected score per session, gated and ungated, with the 5th-95th percentile band over seeds."""
    width, height, pad = 640, 360, 48
    start = results[0]["stress"]["start"][0]
    series = {arm: [[r["stress"][arm][k] for r in results] for k in range(SESSIONS)] for arm in ("gated", "ungated")}
    everything = [x for arm in series.values() for col in arm for x in col] + [start]
    lo, hi = min(everything) - 0.01, max(everything) + 0.01

    def xy(k: float, v: float) -> str:
        x = pad + (width - 2 * pad) * k / SESSIONS
        y = height - pad - (height - 2 * pad) * (v - lo) / (hi - lo)
        return f"{x:.1f},{y:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="12"><rect width="100%" height="100%" fill="white"/>']
    parts.append(f'<text x="{pad}" y="20">seed-002 stress: {len(results)} seeds, 20 sessions, noisy teacher '
                 "(expected fleet success)</text>")
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(f'<text x="4" y="{xy(0, v).split(",")[1]}">{v:.3f}</text>')
    parts.append(f'<polyline points="{xy(0, start)} {xy(SESSIONS, start)}" stroke="#888" stroke-dasharray="4" '
                 'fill="none"/>')
    parts.append(f'<text x="{pad + 4}" y="{float(xy(0, start).split(",")[1]) - 6:.1f}" fill="#888">start</text>')
    for k in (0, 5, 10, 15, 20):
        parts.append(f'<text x="{xy(k, lo).split(",")[0]}" y="{height - pad + 16}">{k}</text>')
    for arm, colour in (("gated", "#1b7837"), ("ungated", "#b2182b")):
        cols = [sorted(col) for col in series[arm]]
        low = [c[int(0.05 * (len(c) - 1))] for c in cols]
        high = [c[int(0.95 * (len(c) - 1))] for c in cols]
        mean = [statistics.fmean(c) for c in cols]
        band = [xy(k + 1, v) for k, v in enumerate(high)] + [xy(k + 1, v) for k, v in reversed(list(enumerate(low)))]
        parts.append(f'<polygon points="{" ".join(band)}" fill="{colour}" fill-opacity="0.15"/>')
        line = [xy(0, start)] + [xy(k + 1, v) for k, v in enumerate(mean)]
        parts.append(f'<polyline points="{" ".join(line)}" stroke="{colour}" stroke-width="2" fill="none"/>')
        parts.append(f'<text x="{width - pad - 60}" y="{xy(SESSIONS, mean[-1]).split(",")[1]}" '
                     f'fill="{colour}">{arm}</text>')
    parts.append(f'<text x="{width / 2 - 30}" y="{height - 8}">session (mean line; band: 5th-95th percentile '
                 'over seeds)</text></svg>')
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=200)
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--svg", type=Path, default=None, help="write the stress picture here")
    a = ap.parse_args()
    if a.seeds < 2:
        ap.error("--seeds must be at least 2 (an interval needs two)")
    if a.workers < 1:
        ap.error("--workers must be at least 1")
    t0 = time.monotonic()
    if a.workers == 1:
        results = [one_seed(s) for s in range(a.seeds)]
    else:
        with ProcessPoolExecutor(a.workers) as pool:
            results = list(pool.map(one_seed, range(a.seeds), chunksize=4))
    out = summarise(results)
    out["seconds"] = round(time.monotonic() - t0, 1)
    if a.svg is not None:
        svg(results, a.svg)
    if not a.json:
        for k, v in out.items():
            print(f"{k:32} {v}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
