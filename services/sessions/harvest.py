"""Harvest and mine (seed 002's first two stages): from the ledger since the last session to SessionDigests,
runs, and TaskRecords split into train/val/test.

- A **run** is one `ExecutionRecord` with the patterns applied in it (`PatternApplied.execution_id`); it
  succeeded when its status is `completed` and nobody flagged it (`pheromone flag`). A **recovery** is one
  `ErrorRecoveryRecord`.
- A **task** is a recurring situation: `project` is the workspace, `intent` the sheet a run executed
  (`sheet 7`) or the recovery's situation (`recover 429 on m at hour 13`); its id is a stable hash of both.
- **Splits** come from a stable hash of the task id, so a task keeps its split across sessions. **Dream**
  tasks (bootstrap variants of real train tasks, for the teacher) are always train: they never reach
  val or test, and `check_splits` refuses a benchmark where they would, or where val overlaps train.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Literal

from pheromone.contracts import Envelope, ErrorRecoveryRecord, ExecutionRecord, PatternApplied
from pheromone.contracts.sessions import SessionDigest, TaskRecord

Split = Literal["train", "val", "test"]
SUCCESS_STATUS = "completed"
"""Seed 000's sheet statuses are completed / failed / skipped: only `completed` is a success."""


class GateRefused(RuntimeError):
    """The benchmark is unsound (val overlaps train, a dream task outside train): no gate runs on it."""


@dataclass(frozen=True, slots=True)
class Run:
    id: str
    job: str
    workspace: str
    model: str | None
    sheet: int
    success: bool
    error_codes: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    flagged: bool = False


@dataclass(frozen=True, slots=True)
class Recovery:
    id: str
    workspace: str
    error_code: str
    model: str | None
    hour: int
    wait: float
    success: bool


@dataclass
class Harvest:
    digests: list[SessionDigest] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)
    watermark: int = 0
    events: int = 0


def stable_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def task_id(project: str, intent: str) -> str:
    return "t_" + stable_hash(project, intent)[:24]


def split_of(tid: str, val_fraction: float, test_fraction: float) -> Split:
    """A real task's split from a stable hash of its id (uniform in [0, 1))."""
    u = int(stable_hash("split", tid)[:13], 16) / 16**13
    if u < val_fraction:
        return "val"
    if u < val_fraction + test_fraction:
        return "test"
    return "train"


def harvest(events: Iterable[tuple[int, Envelope]], flagged: frozenset[str] = frozenset()) -> Harvest:
    """Digests per job, runs and recoveries from ledger events (seq, envelope) in seq order."""
    out = Harvest()
    executions: dict[str, tuple[Envelope, ExecutionRecord]] = {}
    applied: dict[str, list[str]] = defaultdict(list)
    per_job: dict[tuple[str, str], list[Envelope]] = defaultdict(list)
    for seq, env in events:
        out.watermark = max(out.watermark, seq)
        out.events += 1
        per_job[(env.workspace, env.job)].append(env)
        p = env.payload
        if isinstance(p, ExecutionRecord):
            executions[p.id] = (env, p)
        elif isinstance(p, PatternApplied) and p.execution_id is not None:
            applied[p.execution_id].append(p.pattern_id)
        elif isinstance(p, ErrorRecoveryRecord):
            out.recoveries.append(Recovery(p.id, env.workspace, p.error_code, p.model, p.time_of_day,
                                           p.actual_wait, p.recovery_success))
    for eid, (env, x) in executions.items():
        is_flagged = eid in flagged or env.event_id in flagged
        out.runs.append(Run(
            eid, env.job, env.workspace, x.model, x.sheet_num,
            x.status == SUCCESS_STATUS and not is_flagged, tuple(sorted(set(x.error_codes))),
            tuple(sorted(set(applied.get(eid, ())))), is_flagged,
        ))
    out.runs.sort(key=lambda r: r.id)
    out.digests = [_digest(ws, job, envs, flagged) for (ws, job), envs in sorted(per_job.items())]
    return out


def _digest(workspace: str, job: str, envs: Sequence[Envelope], flagged: frozenset[str]) -> SessionDigest:
    times: list[datetime] = [e.occurred_at for e in envs]
    execs = [e.payload for e in envs if isinstance(e.payload, ExecutionRecord)]
    signals = [f"flagged:{x.id}" for x in execs if x.id in flagged]
    signals += [f"failed:{x.id}" for x in execs if x.status != SUCCESS_STATUS][:50]
    return SessionDigest(
        job=job, workspace=workspace, started_at=min(times), ended_at=max(times), events=len(envs),
        executions=len(execs), failures=sum(1 for x in execs if x.status != SUCCESS_STATUS),
        models=sorted({x.model for x in execs if x.model})[:256],
        error_codes=sorted({c for x in execs for c in x.error_codes})[:256],
        patterns_applied=sorted({e.payload.pattern_id for e in envs if isinstance(e.payload, PatternApplied)})[:256],
        feedback_signals=signals[:256],
    )


@dataclass
class Mined:
    """Tasks by id, and the runs and recoveries each task holds (dream tasks hold resampled ones)."""

    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    runs: dict[str, list[Run]] = field(default_factory=dict)
    recoveries: dict[str, list[Recovery]] = field(default_factory=dict)

    def split(self, name: Split) -> list[TaskRecord]:
        return [t for t in self.tasks.values() if t.split == name]

    def runs_of(self, name: Split, *, real_only: bool = False) -> list[Run]:
        return [r for t in self.split(name) if not (real_only and t.origin == "dream")
                for r in self.runs.get(t.id, [])]

    def recoveries_of(self, name: Split, *, real_only: bool = False) -> list[Recovery]:
        return [r for t in self.split(name) if not (real_only and t.origin == "dream")
                for r in self.recoveries.get(t.id, [])]


def mine(h: Harvest, *, val_fraction: float, test_fraction: float, dreams_per_task: int,
         session_id: str = "") -> Mined:
    m = Mined()
    for r in h.runs:
        _add(m, r.workspace, f"sheet {r.sheet}", r.model, "run", r, val_fraction, test_fraction, session_id)
    for c in h.recoveries:
        intent = f"recover {c.error_code} on {c.model or '*'} at hour {c.hour:02d}"
        _add(m, c.workspace, intent, c.model, "recovery", c, val_fraction, test_fraction, session_id)
    for tid in list(m.tasks):
        t = _outcome(m, m.tasks[tid])
        m.tasks[tid] = t
        if t.split == "train":
            for i in range(dreams_per_task):
                dream(m, t, i)
    return m


def _add(m: Mined, project: str, intent: str, model: str | None, kind: str, item: Run | Recovery,
         val: float, test: float, session_id: str) -> None:
    tid = task_id(project, intent)
    if tid not in m.tasks:
        m.tasks[tid] = TaskRecord(id=tid, project=project, intent=intent[:256], model=model,
                                  tags=[kind], split=split_of(tid, val, test),
                                  source_sessions=[session_id] if session_id else [])
    if isinstance(item, Run):
        m.runs.setdefault(tid, []).append(item)
    else:
        m.recoveries.setdefault(tid, []).append(item)


def _outcome(m: Mined, t: TaskRecord) -> TaskRecord:
    results = [r.success for r in m.runs.get(t.id, [])] + [c.success for c in m.recoveries.get(t.id, [])]
    fails = results.count(False)
    outcome = "unknown" if not results else "success" if not fails else "fail" if fails == len(results) else "mixed"
    models = {r.model for r in m.runs.get(t.id, [])} | {c.model for c in m.recoveries.get(t.id, [])}
    return t.model_copy(update={"runs": len(results), "failures": fails, "outcome": outcome,
                                "model": t.model if len(models) == 1 else None})


def dream(m: Mined, real: TaskRecord, i: int) -> TaskRecord:
    """A synthetic variant of a real task: its runs resampled with replacement (seeded by its id). Always
    in train, whatever its own id would hash to."""
    rng = random.Random(stable_hash("dream", real.id, str(i)))
    tid = "d_" + stable_hash("dream", real.id, str(i))[:24]
    runs = m.runs.get(real.id, [])
    recs = m.recoveries.get(real.id, [])
    m.runs[tid] = [replace(r, id=f"{r.id}~{i}") for r in rng.choices(runs, k=len(runs))] if runs else []
    m.recoveries[tid] = [replace(c, id=f"{c.id}~{i}") for c in rng.choices(recs, k=len(recs))] if recs else []
    t = real.model_copy(update={"id": tid, "origin": "dream", "derived_from": real.id, "split": "train",
                                "intent": f"dream {i} of {real.intent}"[:256]})
    m.tasks[tid] = t
    return t


def check_splits(m: Mined) -> None:
    """Refuse a benchmark where val overlaps train or a dream task is outside train (raises GateRefused)."""
    train = {t.id for t in m.split("train")}
    for name in ("val", "test"):
        ids = {t.id for t in m.split(name)}
        if ids & train:
            raise GateRefused(f"{name} overlaps train on {len(ids & train)} task(s), e.g. {sorted(ids & train)[0]}")
        dreams = [t.id for t in m.split(name) if t.origin == "dream"]
        if dreams:
            raise GateRefused(f"dream task {dreams[0]} is in {name}: dream tasks belong to train only")
    seen = {r.id.split("~")[0] for r in m.runs_of("train")} | {c.id.split("~")[0] for c in m.recoveries_of("train")}
    for name in ("val", "test"):
        shared = seen & ({r.id for r in m.runs_of(name)} | {c.id for c in m.recoveries_of(name)})  # type: ignore[arg-type]
        if shared:
            raise GateRefused(f"{name} shares record {sorted(shared)[0]} with train")
    derived = {t.derived_from for t in m.tasks.values() if t.origin == "dream" and t.derived_from is not None}
    leaked = derived & {t.id for t in m.split("val")} | derived & {t.id for t in m.split("test")}
    if leaked:
        raise GateRefused(f"a dream task derives from held-out task {sorted(leaked)[0]}")
