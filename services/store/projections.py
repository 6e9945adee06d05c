"""Projections: how each event type changes the derived tables.

Each function takes the open transaction's connection, the event, and the event's ledger `seq`; it runs only
for an event that this transaction inserted into the ledger (exactly-once effect), strictly in ledger order,
so a rebuild that replays the ledger by `seq` reaches the same state. Projections never read the wall clock:
every time they write comes from the event.

Raising `EventRejected` refuses one event. A projection must raise it *before* it writes anything: the store
then deletes the event's ledger row and the subscriber dead-letters it.

Every projection also gets the `ProjectionContext`: the learning settings the rules use (docs/LEARNING.md). A
rebuild must run with the same settings to reproduce the same derived values.
"""

from __future__ import annotations

import sqlite3

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
    RateLimitEvent,
    parse_envelope,
)
from pheromone.services.errors import EventRejected
from pheromone.services.learning.executions import execution_confidence
from pheromone.services.settings import LearningSettings
from pheromone.services.store import patterns
from pheromone.services.store.codec import dumps as _json
from pheromone.services.store.codec import us
from pheromone.services.store.context import Projection, ProjectionContext
from pheromone.services.store.session_projections import SESSION_PROJECTIONS
from pheromone.services.store.sql import SqlConn

SELECT_LEARNING = "SELECT body FROM learning_settings WHERE id = 1"
RECORD_LEARNING = """
INSERT INTO learning_settings VALUES (1, :body, :at)
ON CONFLICT(id) DO UPDATE SET body = excluded.body, recorded_us = excluded.recorded_us
WHERE body != excluded.body
"""


def learning_settings(
    conn: SqlConn, given: LearningSettings | None, now_us: int
) -> LearningSettings:
    """The settings to derive with: `given` (recorded in the store), else the recorded ones, else defaults.

    The store records what it projects with, so a `rebuild` and the read side (queries, CLI) use the same
    rules as the writer without being told.
    """
    if given is not None:
        conn.execute(RECORD_LEARNING, {"body": given.model_dump_json(), "at": now_us})
        return given
    row = conn.execute(SELECT_LEARNING).fetchone()
    return LearningSettings.model_validate_json(row[0]) if row else LearningSettings()


def guard_owner(conn: SqlConn, table: str, record_id: str, workspace: str, ctx: ProjectionContext) -> None:
    """Refuse an event that would change another workspace's record (a correction reusing its id).

    Workspaces are a boundary: a later event for a record id replaces the row only when it comes from the
    workspace that recorded it. Refused before anything is written (see db.py), so the event is dead-lettered
    with this reason and the other workspace's row is untouched. The owner comes from the batch's
    `RecordOwners` (read once per batch, services.store.owners); the projection then records that
    `workspace` owns the record.
    """
    owner = ctx.owners.owner(conn, table, record_id)
    if owner is not None and owner != workspace:
        raise EventRejected(owned_elsewhere(table, record_id))


def owned_elsewhere(table: str, record_id: str) -> str:
    return f"{table} record {record_id!r} belongs to another workspace"


UPSERT_EXECUTION = """
INSERT INTO executions (
    id, event_id, workspace, job, workspace_hash, job_hash, sheet_num, started_us, completed_us,
    duration_seconds, status, retry_count, success_without_retry, validation_pass_rate, confidence_score,
    model, error_codes, computed_confidence
) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT(id) DO UPDATE SET
    event_id=excluded.event_id, workspace=excluded.workspace, job=excluded.job,
    workspace_hash=excluded.workspace_hash, job_hash=excluded.job_hash, sheet_num=excluded.sheet_num,
    started_us=excluded.started_us, completed_us=excluded.completed_us,
    duration_seconds=excluded.duration_seconds, status=excluded.status, retry_count=excluded.retry_count,
    success_without_retry=excluded.success_without_retry,
    validation_pass_rate=excluded.validation_pass_rate, confidence_score=excluded.confidence_score,
    model=excluded.model, error_codes=excluded.error_codes, computed_confidence=excluded.computed_confidence
WHERE executions.workspace = excluded.workspace
"""


def execution(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    # A later event for the same record id is a correction: it replaces the row (last in ledger order wins).
    # The upsert's WHERE repeats the owner check, so another workspace's row is never changed even by a
    # statement that ran without one.
    p = env.payload
    assert isinstance(p, ExecutionRecord)
    guard_owner(conn, "executions", p.id, env.workspace, ctx)
    ctx.batch.add_record(
        conn,
        UPSERT_EXECUTION,
        p.id,
        (
            p.id, env.event_id, env.workspace, env.job, p.workspace_hash, p.job_hash, p.sheet_num,
            us(p.started_at), us(p.completed_at), p.duration_seconds, p.status, p.retry_count,
            int(p.success_without_retry), p.validation_pass_rate, p.confidence_score, p.model,
            _json(p.error_codes),
            execution_confidence(
                p.validation_pass_rate, p.retry_count, p.success_without_retry, ctx.learning
            ),
        ),
    )
    ctx.owners.record("executions", p.id, env.workspace)


UPSERT_RECOVERY = "INSERT OR REPLACE INTO error_recoveries VALUES (?,?,?,?,?,?,?,?,?,?)"


def error_recovery(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, ErrorRecoveryRecord)
    guard_owner(conn, "error_recoveries", p.id, env.workspace, ctx)
    ctx.batch.add_record(
        conn,
        UPSERT_RECOVERY,
        p.id,
        (
            p.id, env.event_id, env.workspace, p.error_code, p.suggested_wait, p.actual_wait,
            int(p.recovery_success), us(p.recorded_at), p.model, p.time_of_day,
        ),
    )
    ctx.owners.record("error_recoveries", p.id, env.workspace)


def rate_limit(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, RateLimitEvent)
    guard_owner(conn, "rate_limit_events", p.id, env.workspace, ctx)
    conn.execute(
        "INSERT OR REPLACE INTO rate_limit_events VALUES (?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, env.workspace, p.error_code, p.model, us(p.recorded_at), us(p.expires_at),
            p.source_job_hash, p.duration_seconds,
        ),
    )
    ctx.owners.record("rate_limit_events", p.id, env.workspace)


def escalation(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, EscalationDecisionRecord)
    guard_owner(conn, "escalation_decisions", p.id, env.workspace, ctx)
    conn.execute(
        "INSERT OR REPLACE INTO escalation_decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, env.workspace, p.job_hash, p.sheet_num, p.confidence, p.action, p.guidance,
            p.validation_pass_rate, p.retry_count, p.outcome_after_action, us(p.recorded_at), p.model,
        ),
    )
    ctx.owners.record("escalation_decisions", p.id, env.workspace)


def escalation_outcome(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, EscalationOutcomeRecorded)
    if ctx.owners.owner(conn, "escalation_decisions", p.escalation_id) is None:
        # Retryable: after a crash, redelivery can bring an outcome before its escalation.
        raise EventRejected(f"escalation {p.escalation_id!r} is not in the store", retryable=True)
    guard_owner(conn, "escalation_decisions", p.escalation_id, env.workspace, ctx)
    conn.execute("UPDATE escalation_decisions SET outcome_after_action=? WHERE id=?", (p.outcome, p.escalation_id))


def discovery(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, PatternDiscoveryEvent)
    guard_owner(conn, "pattern_discoveries", p.id, env.workspace, ctx)
    conn.execute(
        "INSERT OR REPLACE INTO pattern_discoveries VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, env.workspace, p.pattern_id, p.pattern_name, p.pattern_type,
            p.source_job_hash, us(p.recorded_at), us(p.expires_at), p.effectiveness_score,
            _json(sorted(set(p.context_tags))),
        ),
    )
    ctx.owners.record("pattern_discoveries", p.id, env.workspace)


def evolution_entry(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, EvolutionTrajectoryEntry)
    try:
        conn.execute(
            "INSERT INTO evolution_trajectory VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                p.id, env.event_id, p.cycle, us(p.recorded_at), p.evolutions_completed,
                p.evolutions_deferred, _json(p.issue_classes), p.cv_avg, p.implementation_loc, p.test_loc,
                p.loc_accuracy, p.research_candidates_resolved, p.research_candidates_created, p.notes,
            ),
        )
    except sqlite3.IntegrityError as exc:
        raise EventRejected(f"evolution cycle {p.cycle} (or entry id {p.id!r}) is already recorded") from exc


def budget(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, ExplorationBudgetRecord)
    conn.execute(
        "INSERT OR REPLACE INTO exploration_budget VALUES (?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, seq, p.job_hash, us(p.recorded_at), p.budget_value, p.entropy_at_time,
            p.adjustment_type.value, p.adjustment_reason,
        ),
    )


def entropy_response(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, EntropyResponseRecord)
    conn.execute(
        "INSERT OR REPLACE INTO entropy_responses VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, p.job_hash, us(p.recorded_at), p.entropy_at_trigger, p.threshold_used,
            _json(p.actions_taken), int(p.budget_boosted), p.quarantine_revisits, _json(p.patterns_revisited),
        ),
    )
    # The revisits themselves are derived here (docs/LEARNING.md): each listed pattern that is still
    # quarantined moves to pending with a grace period; one that is not (already revisited, validated by an
    # operator meanwhile, unknown) is left alone rather than refusing the whole response.
    at = us(p.recorded_at)
    for pid in dict.fromkeys(p.patterns_revisited):
        patterns.revisit(
            conn, pid, key=f"{env.event_id}/{pid}", seq=seq, at=at, s=ctx.learning, batch=ctx.batch,
            reason=f"revisited by entropy response {p.id} (entropy {p.entropy_at_trigger:.3f} "
            f"< {p.threshold_used:.3f})",
        )


def entropy_metrics(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, PatternEntropyMetrics)
    conn.execute(
        "INSERT INTO entropy_history VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            env.event_id, seq, us(p.calculated_at), p.shannon_entropy, p.max_possible_entropy,
            p.diversity_index, p.unique_pattern_count, p.effective_pattern_count, p.total_applications,
            p.dominant_pattern_share, int(p.threshold_exceeded),
        ),
    )


def drift(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, DriftMetrics | EpistemicDriftMetrics)
    conn.execute(
        "INSERT INTO drift_history VALUES (?,?,?,?,?)",
        (env.event_id, seq, p.type, p.pattern_id, p.model_dump_json()),
    )


def pattern_observed(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, PatternObserved)
    patterns.observe(conn, env, p, seq, ctx.learning, ctx.batch)


def pattern_applied(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, PatternApplied)
    patterns.apply(conn, env, p, seq, ctx.learning, ctx.batch)


def pattern_transition(conn: SqlConn, env: Envelope, seq: int, ctx: ProjectionContext) -> None:
    p = env.payload
    assert isinstance(p, PatternTransitioned)
    patterns.transition(conn, env, p, seq, ctx.learning, ctx.batch)


PROJECTIONS: dict[str, Projection] = {
    "execution": execution,
    "pattern_observed": pattern_observed,
    "pattern_applied": pattern_applied,
    "pattern_transition": pattern_transition,
    "error_recovery": error_recovery,
    "rate_limit": rate_limit,
    "escalation": escalation,
    "escalation_outcome": escalation_outcome,
    "pattern_discovery": discovery,
    "evolution_entry": evolution_entry,
    "budget": budget,
    "entropy_response": entropy_response,
    "entropy_metrics": entropy_metrics,
    "drift": drift,
    "epistemic_drift": drift,
}
PROJECTIONS.update(SESSION_PROJECTIONS)  # learning sessions: services.store.session_projections


def replay(conn: SqlConn, rows: list[tuple[int, str]], ctx: ProjectionContext, *, postgres: bool) -> int:
    """A rebuild's chunk of ledger rows (seq, body), projected in order; returns how many."""
    envs = [(seq, parse_envelope(body)) for seq, body in rows]
    ctx.next_chunk(conn, [env for _, env in envs], postgres=postgres)
    for seq, env in envs:
        # Events in the ledger were accepted once; a projection must accept them again.
        PROJECTIONS[env.kind](conn, env, seq, ctx)
    return len(envs)
