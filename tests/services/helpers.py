"""What the service tests share: a deadline poller, record builders, read-only looks at the store and streams.

Nothing here waits a fixed time for a condition: `eventually()` polls until the condition holds or its
deadline passes, and then fails with the last value it saw.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis

from pheromone.contracts import (
    DriftMetrics,
    EntropyResponseRecord,
    Envelope,
    EpistemicDriftMetrics,
    ErrorRecoveryRecord,
    EscalationDecisionRecord,
    EscalationOutcomeRecorded,
    EvolutionTrajectoryEntry,
    ExecutionRecord,
    ExplorationBudgetRecord,
    PatternApplied,
    PatternDiscoveryEvent,
    PatternEntropyMetrics,
    PatternObserved,
    PatternTransitioned,
    Payload,
    RateLimitEvent,
    pattern_id,
)
from pheromone.contracts.sessions import (
    Edit,
    EditOp,
    EditPillar,
    EditTransitioned,
    PlaybookWritten,
    SessionTransitioned,
)
from pheromone.contracts.streams import FIELD, GROUP_STORE, Keys
from pheromone.services.settings import StoreLocation
from tests.support import FAST, eventually, settings, store_rows  # noqa: F401 - re-exported for the tests here

# -- the store file, read-only ---------------------------------------------------------------------------


def query(db: StoreLocation, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows from the store (either backend) through a connection of our own; [] when there is no store yet."""
    return store_rows(db, sql, *params)


def scalar(db: StoreLocation, sql: str, *params: Any) -> Any:
    rows = query(db, sql, *params)
    return rows[0][0] if rows else None


def ledger_ids(db: StoreLocation) -> list[str]:
    return [row[0] for row in query(db, "SELECT event_id FROM ledger")]


def ledger_count(db: StoreLocation) -> int:
    return int(scalar(db, "SELECT COUNT(*) FROM ledger") or 0)


def kind_counts(db: StoreLocation) -> dict[str, int]:
    return dict(query(db, "SELECT kind, COUNT(*) FROM ledger GROUP BY kind"))  # type: ignore[arg-type]


def count(db: StoreLocation, table: str, where: str = "1=1", *params: Any) -> int:
    return int(scalar(db, f"SELECT COUNT(*) FROM {table} WHERE {where}", *params) or 0)


# -- streams ---------------------------------------------------------------------------------------------


async def pending(r: aioredis.Redis, stream: str, group: str = GROUP_STORE) -> int:
    """Entries delivered to `group` and not acked; 0 when the stream or group does not exist."""
    try:
        return int((await r.xpending(stream, group))["pending"])
    except aioredis.ResponseError as exc:
        if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():
            return 0
        raise


async def all_pending(r: aioredis.Redis, prefix: str) -> int:
    keys = Keys(prefix)
    return sum([await pending(r, s) for s in (keys.ingest, keys.ratelimits, keys.discoveries)])


async def group_caught_up(r: aioredis.Redis, stream: str, group: str = GROUP_STORE) -> bool:
    """True once `group` has read every entry of `stream` and acked all of them."""
    for info in await r.xinfo_groups(stream):
        if info["name"].decode() == group:
            return bool(info["lag"] == 0 and info["pending"] == 0)
    return False


async def dead_letters(r: aioredis.Redis, prefix: str) -> list[tuple[bytes, dict[bytes, bytes]]]:
    return list(await r.xrange(Keys(prefix).dead))


Fields = dict[bytes | str, bytes | str]


async def xadd_raw(r: aioredis.Redis, stream: str, entries: list[Fields]) -> list[bytes]:
    """XADD each field mapping in order, in one pipeline; returns the entry ids."""
    async with r.pipeline(transaction=False) as pipe:
        for fields in entries:
            pipe.xadd(stream, fields)  # type: ignore[arg-type]
        return list(await pipe.execute())


# -- records ---------------------------------------------------------------------------------------------

_cycle = itertools.count(1)


def now() -> datetime:
    return datetime.now(UTC)


def envelope(payload: Payload, workspace: str = "ws-t", job: str = "job-t", **extra: Any) -> Envelope:
    return Envelope(workspace=workspace, job=job, payload=payload, **extra)


def entry(env: Envelope) -> Fields:
    """The one-field stream entry a producer writes for `env`."""
    return {FIELD: env.model_dump_json()}


def execution(job: str = "job-t", **kw: Any) -> ExecutionRecord:
    t = now()
    fields: dict[str, Any] = dict(
        workspace_hash="ws-t", job_hash=job, sheet_num=1, started_at=t - timedelta(seconds=5), completed_at=t,
        duration_seconds=5.0, status="completed", retry_count=0, success_without_retry=True,
        validation_pass_rate=1.0, confidence_score=0.9, model="claude-sonnet",
    )
    return ExecutionRecord(**{**fields, **kw})


def observed(name: str, ptype: str = "retry_pattern", **kw: Any) -> PatternObserved:
    return PatternObserved(pattern_type=ptype, pattern_name=name, description=f"{name} ({ptype})",
                           context_tags=["api"], **kw)


def applied(name: str, success: bool, ptype: str = "retry_pattern", **kw: Any) -> PatternApplied:
    return PatternApplied(pattern_id=pattern_id(ptype, name), success=success, grounding_confidence=0.8,
                          model="claude-sonnet", **kw)


def transitioned(name: str, to: str, ptype: str = "retry_pattern") -> PatternTransitioned:
    return PatternTransitioned(pattern_id=pattern_id(ptype, name), to_status=to, reason="test", actor="tests")


def recovery() -> ErrorRecoveryRecord:
    return ErrorRecoveryRecord(error_code="timeout", suggested_wait=5.0, actual_wait=6.0,
                               recovery_success=True, recorded_at=now(), model="claude-sonnet",
                               time_of_day=now().hour)


def rate_limit(model: str = "claude-sonnet", seconds: float = 30.0) -> RateLimitEvent:
    t = now()
    return RateLimitEvent(error_code="429", model=model, recorded_at=t,
                          expires_at=t + timedelta(seconds=seconds), source_job_hash="job-t",
                          duration_seconds=seconds)


def escalation(**kw: Any) -> EscalationDecisionRecord:
    return EscalationDecisionRecord(job_hash="job-t", sheet_num=1, confidence=0.3, action="retry",
                                    guidance=None, validation_pass_rate=0.4, retry_count=1, **kw)


def outcome(escalation_id: str, result: str = "success") -> EscalationOutcomeRecorded:
    return EscalationOutcomeRecorded(escalation_id=escalation_id, outcome=result)


def discovery(name: str = "back off", ptype: str = "retry_pattern") -> PatternDiscoveryEvent:
    t = now()
    return PatternDiscoveryEvent(pattern_id=pattern_id(ptype, name), pattern_name=name, pattern_type=ptype,
                                 source_job_hash="job-t", recorded_at=t, expires_at=t + timedelta(minutes=5),
                                 effectiveness_score=0.7, context_tags=["api"])


def evolution(cycle: int | None = None, **kw: Any) -> EvolutionTrajectoryEntry:
    return EvolutionTrajectoryEntry(
        cycle=next(_cycle) if cycle is None else cycle, recorded_at=now(), evolutions_completed=1,
        evolutions_deferred=0, issue_classes=["x"], cv_avg=0.5, implementation_loc=10, test_loc=10,
        loc_accuracy=1.0, **kw,
    )


def budget() -> ExplorationBudgetRecord:
    return ExplorationBudgetRecord(job_hash="job-t", recorded_at=now(), budget_value=0.2, entropy_at_time=0.4,
                                   adjustment_type="boost")


def entropy_response() -> EntropyResponseRecord:
    return EntropyResponseRecord(job_hash="job-t", recorded_at=now(), entropy_at_trigger=0.2,
                                 threshold_used=0.3, actions_taken=["budget_boost"], budget_boosted=True)


def entropy_metrics() -> PatternEntropyMetrics:
    return PatternEntropyMetrics(calculated_at=now(), shannon_entropy=1.5, max_possible_entropy=3.0,
                                 diversity_index=0.5, unique_pattern_count=8, effective_pattern_count=4,
                                 total_applications=100, dominant_pattern_share=0.3)


def drift(name: str = "back off") -> DriftMetrics:
    return DriftMetrics(pattern_id=pattern_id("retry_pattern", name), pattern_name=name, window_size=5,
                        effectiveness_before=0.8, effectiveness_after=0.6, grounding_confidence_avg=0.7,
                        drift_magnitude=0.2, drift_direction="negative", applications_analyzed=10)


def mixed_records(sim: Any, n: int) -> list[Payload]:
    """`n` records from a `pheromone.simulate.SimJob`: its sheets (every family a job emits) plus the families
    services emit, a pattern of the job's own taken through a legal manual lifecycle, and a learning session of
    its own (`session_records`, for jobs job-0 and job-1)."""
    own = f"own pattern of {sim.job}"
    out: list[Payload] = [
        observed(own), applied(own, True),
        transitioned(own, "quarantined"), transitioned(own, "pending"), transitioned(own, "validated"),
        # One session per workspace (sessions of a workspace may not overlap, and producers interleave): the
        # tests name jobs job-<i> in workspaces ws-<i % W>, W >= 2, so job-0 and job-1 are in different ones.
        *(session_records(sim.workspace) if sim.job in ("job-0", "job-1") else []),
    ]
    extras = (evolution, budget, entropy_response, entropy_metrics, drift, epistemic_drift)
    step = 0
    while len(out) < n:
        out.extend(sim.step())
        step += 1
        if step % 5 == 0:
            out.append(extras[step // 5 % len(extras)]())
    return out[:n]


def epistemic_drift(name: str = "back off") -> EpistemicDriftMetrics:
    return EpistemicDriftMetrics(pattern_id=pattern_id("retry_pattern", name), pattern_name=name,
                                 window_size=5, confidence_before=0.9, confidence_after=0.7,
                                 belief_change=-0.2, belief_entropy=0.3, applications_analyzed=10)


def session_records(scope: str) -> list[Payload]:
    """A learning session in its own scope through a legal lifecycle (docs/SESSIONS.md), with a playbook: an
    edit applied, one staged then rejected, one applied then rolled back. Session triggers are left out: they
    travel on the triggers stream, which the store does not read."""
    sid = f"s-{scope}"
    path = ("triggered", "harvesting", "diagnosing", "planning", "gating", "executing", "awaiting_review")

    def line(text: str) -> Edit:
        return Edit(id=f"e-{scope}-{text}", pillar=EditPillar.PLAYBOOK, op=EditOp.PLAYBOOK_ADD, workspace=scope,
                    content=f"- {text} ({scope})")

    keep, drop, undo = line("keep"), line("drop"), line("undo")
    out: list[Payload] = [PlaybookWritten(workspace=scope, text=f"# {scope}\n")]
    out += [SessionTransitioned(session_id=sid, scope=scope, to_status=to, trigger="on_demand" if i == 0 else None,  # type: ignore[arg-type]
                                watermark=7 if to == "diagnosing" else None) for i, to in enumerate(path)]
    out += [EditTransitioned(session_id=sid, edit_id=e.id, to_status=to, edit=e)  # type: ignore[arg-type]
            for e, to in ((keep, "applied"), (drop, "staged"), (undo, "applied"))]
    out += [EditTransitioned(session_id=sid, edit_id=drop.id, to_status="rejected", reason="not needed"),  # type: ignore[arg-type]
            EditTransitioned(session_id=sid, edit_id=undo.id, to_status="rolled_back", reason="undo"),  # type: ignore[arg-type]
            SessionTransitioned(session_id=sid, scope=scope, to_status="completed")]  # type: ignore[arg-type]
    return out
