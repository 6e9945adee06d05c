"""A simulated fleet of agent jobs: what `pheromone demo` and the benchmarks emit.

Each job runs sheets against a model; each sheet is an execution that may hit errors, apply known patterns
(whose real success rate differs per pattern and per model, so there is something to learn), report rate
limits, record error recoveries and escalate. The mix is seeded, so a run is reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pheromone.contracts import (
    ErrorRecoveryRecord,
    EscalationDecisionRecord,
    EscalationOutcomeRecorded,
    ExecutionRecord,
    PatternApplied,
    PatternDiscoveryEvent,
    PatternObserved,
    Payload,
    RateLimitEvent,
    SuccessFactors,
    pattern_id,
    time_bucket,
)

MODELS = ("claude-sonnet", "claude-haiku", "gpt-large", "local-llama")
ERRORS = ("rate_limit", "timeout", "validation", "auth", "overloaded")
PATTERNS: tuple[tuple[str, str, tuple[str, ...], float], ...] = (
    # (type, name, tags, base success rate)
    ("retry_pattern", "exponential backoff on 429", ("rate_limit", "api"), 0.85),
    ("retry_pattern", "switch to smaller model when overloaded", ("overloaded", "api"), 0.7),
    ("validation_failure", "re-read the schema before writing json", ("json", "validation"), 0.8),
    ("validation_failure", "regenerate the whole file instead of patching", ("files", "validation"), 0.45),
    ("prompt_pattern", "ask for a plan before code", ("planning",), 0.75),
    ("prompt_pattern", "include failing test output verbatim", ("tests", "debugging"), 0.9),
    ("tool_pattern", "grep before editing", ("files", "search"), 0.65),
    ("tool_pattern", "run the formatter last", ("files",), 0.3),
)


@dataclass
class SimJob:
    """One simulated job; `step()` returns the records of one sheet."""

    workspace: str
    job: str
    rng: random.Random
    model: str = field(default="")
    sheet: int = 0

    def __post_init__(self) -> None:
        self.model = self.model or self.rng.choice(MODELS)

    def step(self) -> list[Payload]:
        rng, now = self.rng, datetime.now(UTC)
        self.sheet += 1
        out: list[Payload] = []
        ptype, pname, tags, base = rng.choice(PATTERNS)
        pid = pattern_id(ptype, pname)
        if rng.random() < 0.15:
            out.append(PatternObserved(pattern_type=ptype, pattern_name=pname, context_tags=list(tags),
                                       description=f"{pname} ({ptype})", provenance_job_hash=self.job,
                                       provenance_sheet_num=self.sheet))
        # The planted cause: every pattern does worse on the small local model.
        rate = base - (0.35 if self.model == "local-llama" else 0.0)
        ok = rng.random() < rate
        grounding = round(rng.uniform(0.5, 1.0), 3)
        out.append(PatternApplied(
            pattern_id=pid, success=ok, grounding_confidence=grounding, model=self.model,
            success_factors=SuccessFactors(error_categories=[rng.choice(ERRORS)],
                                           time_of_day_bucket=time_bucket(now.hour),
                                           retry_iteration=rng.randint(0, 2), grounding_confidence=grounding),
        ))
        errors = [rng.choice(ERRORS)] if not ok else []
        retries = rng.randint(1, 3) if errors else 0
        duration = rng.uniform(2, 120)
        out.append(ExecutionRecord(
            workspace_hash=self.workspace, job_hash=self.job, sheet_num=self.sheet,
            started_at=now - timedelta(seconds=duration), completed_at=now, duration_seconds=duration,
            status="completed" if ok else "failed", retry_count=retries, success_without_retry=ok and not retries,
            validation_pass_rate=1.0 if ok else round(rng.uniform(0, 0.8), 3),
            confidence_score=round(rng.uniform(0.6, 1.0) if ok else rng.uniform(0.1, 0.6), 3),
            model=self.model, error_codes=errors,
        ))
        if errors and errors[0] == "rate_limit" and rng.random() < 0.3:
            secs = rng.choice((15.0, 30.0, 60.0))
            out.append(RateLimitEvent(error_code="429", model=self.model, recorded_at=now,
                                      expires_at=now + timedelta(seconds=secs), source_job_hash=self.job,
                                      duration_seconds=secs))
        if errors:
            wait = rng.choice((1.0, 5.0, 10.0, 30.0))
            out.append(ErrorRecoveryRecord(error_code=errors[0], suggested_wait=wait,
                                           actual_wait=wait * rng.uniform(0.8, 1.5),
                                           recovery_success=rng.random() < 0.7, recorded_at=now,
                                           model=self.model, time_of_day=now.hour))
        if not ok and rng.random() < 0.1:
            esc = EscalationDecisionRecord(job_hash=self.job, sheet_num=self.sheet,
                                           confidence=round(rng.uniform(0, 0.6), 3),
                                           action=rng.choice(("retry", "skip", "abort", "modify_prompt")),
                                           guidance=None, validation_pass_rate=round(rng.uniform(0, 0.8), 3),
                                           retry_count=retries, model=self.model)
            out.append(esc)
            out.append(EscalationOutcomeRecorded(escalation_id=esc.id,
                                                 outcome=rng.choice(("success", "failed", "skipped"))))
        if ok and rng.random() < 0.02:
            out.append(PatternDiscoveryEvent(pattern_id=pid, pattern_name=pname, pattern_type=ptype,
                                             source_job_hash=self.job, recorded_at=now,
                                             expires_at=now + timedelta(seconds=300),
                                             effectiveness_score=round(base, 3), context_tags=list(tags)))
        return out


def fleet(workspaces: int, jobs_per_workspace: int, seed: int = 7) -> list[SimJob]:
    rng = random.Random(seed)
    return [
        SimJob(f"ws-{w}", f"ws-{w}.job-{j}", random.Random(rng.random()))
        for w in range(workspaces)
        for j in range(jobs_per_workspace)
    ]


Emit = Callable[[Payload], str]
