"""A simulated fleet with a planted cause: pattern `split the prompt` helps on model-a and hurts on model-b.

Every job runs sheets 1..SHEETS on one of two models; on about half its runs it applies the planted pattern
(and always a harmless one). Success odds (seeded, deterministic):

    model-a: with the pattern 0.90, without 0.55        model-b: with the pattern 0.15, without 0.80

so the right edit is to keep the pattern from model-b only: keeping it from model-a would cost score there.
Recoveries from `429` on model-b succeed when the job waited at least 20 s (0.9) and rarely below (0.2).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from pheromone.contracts import (
    Envelope,
    ErrorRecoveryRecord,
    ExecutionRecord,
    PatternApplied,
    PatternObserved,
    pattern_id,
)

WORKSPACE = "ws-fleet"
PLANTED = pattern_id("prompt_pattern", "split the prompt")
HARMLESS = pattern_id("retry_pattern", "back off")
ODDS = {("model-a", True): 0.90, ("model-a", False): 0.55, ("model-b", True): 0.15, ("model-b", False): 0.80}
SHEETS = 60
T0 = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)


def fleet(jobs: int = 24, seed: int = 7, workspace: str = WORKSPACE, recoveries: bool = False,
          odds: dict[tuple[str, bool], float] = ODDS,
          recovery_odds: tuple[float, float] = (0.9, 0.2)) -> list[Envelope]:
    rng = random.Random(seed)
    out: list[Envelope] = []
    t = T0
    for name, ptype in (("split the prompt", "prompt_pattern"), ("back off", "retry_pattern")):
        out.append(Envelope(workspace=workspace, job="seed", occurred_at=t,
                            payload=PatternObserved(pattern_type=ptype, pattern_name=name, context_tags=["api"])))
    for j in range(jobs):
        model = "model-a" if j % 2 == 0 else "model-b"
        job = f"{workspace}.job-{j}"
        for sheet in range(1, SHEETS + 1):
            t += timedelta(seconds=1)
            planted = rng.random() < 0.5
            ok = rng.random() < odds[(model, planted)]
            exec_id = f"x-{workspace}-{j}-{sheet}"
            out.append(Envelope(workspace=workspace, job=job, occurred_at=t, payload=ExecutionRecord(
                id=exec_id, workspace_hash=workspace, job_hash=job, sheet_num=sheet, started_at=t,
                completed_at=t, duration_seconds=1.0, status="completed" if ok else "failed", retry_count=0,
                success_without_retry=ok, validation_pass_rate=1.0 if ok else 0.0, confidence_score=0.5,
                model=model, error_codes=[] if ok else ["validation"])))
            for pid in ([PLANTED] if planted else []) + [HARMLESS]:
                out.append(Envelope(workspace=workspace, job=job, occurred_at=t, payload=PatternApplied(
                    pattern_id=pid, success=ok, execution_id=exec_id, model=model)))
            if recoveries and model == "model-b" and sheet % 3 == 0:
                wait = rng.choice([2.0, 5.0, 10.0, 15.0, 20.0, 40.0])
                success = rng.random() < recovery_odds[0 if wait >= 20 else 1]
                out.append(Envelope(workspace=workspace, job=job, occurred_at=t, payload=ErrorRecoveryRecord(
                    id=f"r-{workspace}-{j}-{sheet}", error_code="429", suggested_wait=wait, actual_wait=wait,
                    recovery_success=success, recorded_at=t, model=model, time_of_day=sheet % 24)))
    return out
