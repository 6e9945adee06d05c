"""Projections: how each event type changes the derived tables.

Each function takes the open transaction's connection, the event, and the event's ledger `seq`; it runs only
for an event that this transaction inserted into the ledger (exactly-once effect), strictly in ledger order,
so a rebuild that replays the ledger by `seq` reaches the same state. Projections never read the wall clock:
every time they write comes from the event.

Raising `EventRejected` refuses one event. A projection must raise it *before* it writes anything: the store
then deletes the event's ledger row and the subscriber dead-letters it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from contracts import (
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
)
from services.errors import EventRejected
from services.store import patterns
from services.store.codec import dumps as _json
from services.store.codec import us

Projection = Callable[[sqlite3.Connection, Envelope, int], None]


UPSERT_EXECUTION = """
INSERT INTO executions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT(id) DO UPDATE SET
    event_id=excluded.event_id, workspace=excluded.workspace, job=excluded.job,
    workspace_hash=excluded.workspace_hash, job_hash=excluded.job_hash, sheet_num=excluded.sheet_num,
    started_us=excluded.started_us, completed_us=excluded.completed_us,
    duration_seconds=excluded.duration_seconds, status=excluded.status, retry_count=excluded.retry_count,
    success_without_retry=excluded.success_without_retry,
    validation_pass_rate=excluded.validation_pass_rate, confidence_score=excluded.confidence_score,
    model=excluded.model, error_codes=excluded.error_codes
"""


def execution(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    # A later event for the same record id is a correction: it replaces the row (last in ledger order wins).
    p = env.payload
    assert isinstance(p, ExecutionRecord)
    conn.execute(
        UPSERT_EXECUTION,
        (
            p.id, env.event_id, env.workspace, env.job, p.workspace_hash, p.job_hash, p.sheet_num,
            us(p.started_at), us(p.completed_at), p.duration_seconds, p.status, p.retry_count,
            int(p.success_without_retry), p.validation_pass_rate, p.confidence_score, p.model,
            _json(p.error_codes),
        ),
    )


def error_recovery(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, ErrorRecoveryRecord)
    conn.execute(
        "INSERT OR REPLACE INTO error_recoveries VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, env.workspace, p.error_code, p.suggested_wait, p.actual_wait,
            int(p.recovery_success), us(p.recorded_at), p.model, p.time_of_day,
        ),
    )


def rate_limit(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, RateLimitEvent)
    conn.execute(
        "INSERT OR REPLACE INTO rate_limit_events VALUES (?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, env.workspace, p.error_code, p.model, us(p.recorded_at), us(p.expires_at),
            p.source_job_hash, p.duration_seconds,
        ),
    )


def escalation(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, EscalationDecisionRecord)
    conn.execute(
        "INSERT OR REPLACE INTO escalation_decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, env.workspace, p.job_hash, p.sheet_num, p.confidence, p.action, p.guidance,
            p.validation_pass_rate, p.retry_count, p.outcome_after_action, us(p.recorded_at), p.model,
        ),
    )


def escalation_outcome(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, EscalationOutcomeRecorded)
    cur = conn.execute(
        "UPDATE escalation_decisions SET outcome_after_action=? WHERE id=?", (p.outcome, p.escalation_id)
    )
    if cur.rowcount == 0:
        raise EventRejected(f"escalation {p.escalation_id!r} is not in the store")


def discovery(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, PatternDiscoveryEvent)
    conn.execute(
        "INSERT OR REPLACE INTO pattern_discoveries VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, env.workspace, p.pattern_id, p.pattern_name, p.pattern_type,
            p.source_job_hash, us(p.recorded_at), us(p.expires_at), p.effectiveness_score,
            _json(sorted(set(p.context_tags))),
        ),
    )


def evolution_entry(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
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


def budget(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, ExplorationBudgetRecord)
    conn.execute(
        "INSERT OR REPLACE INTO exploration_budget VALUES (?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, seq, p.job_hash, us(p.recorded_at), p.budget_value, p.entropy_at_time,
            p.adjustment_type.value, p.adjustment_reason,
        ),
    )


def entropy_response(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, EntropyResponseRecord)
    conn.execute(
        "INSERT OR REPLACE INTO entropy_responses VALUES (?,?,?,?,?,?,?,?,?,?)",
        (
            p.id, env.event_id, p.job_hash, us(p.recorded_at), p.entropy_at_trigger, p.threshold_used,
            _json(p.actions_taken), int(p.budget_boosted), p.quarantine_revisits, _json(p.patterns_revisited),
        ),
    )


def entropy_metrics(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
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


def drift(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, DriftMetrics | EpistemicDriftMetrics)
    conn.execute(
        "INSERT INTO drift_history VALUES (?,?,?,?,?)",
        (env.event_id, seq, p.type, p.pattern_id, p.model_dump_json()),
    )


def pattern_observed(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, PatternObserved)
    patterns.observe(conn, env, p, seq)


def pattern_applied(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, PatternApplied)
    patterns.apply(conn, env, p, seq)


def pattern_transition(conn: sqlite3.Connection, env: Envelope, seq: int) -> None:
    p = env.payload
    assert isinstance(p, PatternTransitioned)
    patterns.transition(conn, env, p, seq)


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
