"""Versioned, forward-only migrations.

`migrate()` runs under `BEGIN IMMEDIATE`, so when two processes open a fresh store at once the second waits for
the first's write lock, then sees the new `user_version` and applies nothing twice. A database newer than this
code is refused rather than guessed at.

Times are stored as integer microseconds since the Unix epoch, UTC (`*_us` columns): compared as numbers,
never as strings of mixed formats.
"""

from __future__ import annotations

import sqlite3
import time

from pheromone.services.errors import StoreError

MIGRATIONS: tuple[str, ...] = (
    # 1: the ledger and the projections of seed 000's record families.
    """
    CREATE TABLE ledger (
        event_id       TEXT PRIMARY KEY,
        seq            INTEGER NOT NULL UNIQUE,
        kind           TEXT NOT NULL,
        workspace      TEXT NOT NULL,
        job            TEXT NOT NULL,
        correlation_id TEXT,
        occurred_us    INTEGER NOT NULL,
        stored_us      INTEGER NOT NULL,
        schema_version INTEGER NOT NULL,
        body           TEXT NOT NULL
    );
    CREATE INDEX ledger_workspace_time ON ledger(workspace, occurred_us);
    CREATE INDEX ledger_kind_time ON ledger(kind, occurred_us);
    CREATE INDEX ledger_time ON ledger(occurred_us);
    CREATE INDEX ledger_correlation ON ledger(correlation_id) WHERE correlation_id IS NOT NULL;

    CREATE TABLE executions (
        id TEXT PRIMARY KEY, event_id TEXT NOT NULL, workspace TEXT NOT NULL, job TEXT NOT NULL,
        workspace_hash TEXT NOT NULL, job_hash TEXT NOT NULL, sheet_num INTEGER NOT NULL,
        started_us INTEGER NOT NULL, completed_us INTEGER NOT NULL, duration_seconds REAL NOT NULL,
        status TEXT NOT NULL, retry_count INTEGER NOT NULL, success_without_retry INTEGER NOT NULL,
        validation_pass_rate REAL NOT NULL, confidence_score REAL NOT NULL, model TEXT,
        error_codes TEXT NOT NULL
    );
    CREATE INDEX executions_scope ON executions(workspace, job, model);

    CREATE TABLE patterns (
        id TEXT PRIMARY KEY, pattern_type TEXT NOT NULL, pattern_name TEXT NOT NULL,
        description TEXT NOT NULL, occurrence_count INTEGER NOT NULL,
        first_seen_us INTEGER NOT NULL, last_seen_us INTEGER NOT NULL, last_confirmed_us INTEGER,
        led_to_success_count INTEGER NOT NULL DEFAULT 0, led_to_failure_count INTEGER NOT NULL DEFAULT 0,
        effectiveness_score REAL NOT NULL DEFAULT 0.55, variance REAL NOT NULL DEFAULT 0.0,
        suggested_action TEXT, context_tags TEXT NOT NULL, priority_score REAL NOT NULL DEFAULT 0.0,
        quarantine_status TEXT NOT NULL DEFAULT 'pending', provenance_job_hash TEXT,
        provenance_sheet_num INTEGER, quarantined_at_us INTEGER, validated_at_us INTEGER,
        quarantine_reason TEXT, trust_score REAL NOT NULL DEFAULT 0.5, trust_calculation_us INTEGER,
        success_factors TEXT, success_factors_updated_us INTEGER, active INTEGER NOT NULL DEFAULT 1,
        content_hash TEXT, instrument_name TEXT, workspace TEXT NOT NULL
    );
    CREATE INDEX patterns_content ON patterns(content_hash);
    CREATE INDEX patterns_priority ON patterns(priority_score DESC);

    CREATE TABLE pattern_applications (
        event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, pattern_id TEXT NOT NULL,
        workspace TEXT NOT NULL, job TEXT NOT NULL, applied_us INTEGER NOT NULL, success INTEGER NOT NULL,
        grounding_confidence REAL, execution_id TEXT, model TEXT, success_factors TEXT
    );
    CREATE INDEX applications_pattern ON pattern_applications(pattern_id, seq);

    CREATE TABLE pattern_transitions (
        event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, pattern_id TEXT NOT NULL,
        from_status TEXT NOT NULL, to_status TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL,
        at_us INTEGER NOT NULL
    );
    CREATE INDEX transitions_pattern ON pattern_transitions(pattern_id, seq);

    CREATE TABLE error_recoveries (
        id TEXT PRIMARY KEY, event_id TEXT NOT NULL, workspace TEXT NOT NULL, error_code TEXT NOT NULL,
        suggested_wait REAL NOT NULL, actual_wait REAL NOT NULL, recovery_success INTEGER NOT NULL,
        recorded_us INTEGER NOT NULL, model TEXT, time_of_day INTEGER NOT NULL
    );
    CREATE INDEX recoveries_code ON error_recoveries(error_code, model, recorded_us);

    CREATE TABLE rate_limit_events (
        id TEXT PRIMARY KEY, event_id TEXT NOT NULL, workspace TEXT NOT NULL, error_code TEXT NOT NULL,
        model TEXT NOT NULL, recorded_us INTEGER NOT NULL, expires_us INTEGER NOT NULL,
        source_job_hash TEXT NOT NULL, duration_seconds REAL NOT NULL
    );
    CREATE INDEX rate_limits_model ON rate_limit_events(model, expires_us);

    CREATE TABLE escalation_decisions (
        id TEXT PRIMARY KEY, event_id TEXT NOT NULL, workspace TEXT NOT NULL, job_hash TEXT NOT NULL,
        sheet_num INTEGER NOT NULL, confidence REAL NOT NULL, action TEXT NOT NULL, guidance TEXT,
        validation_pass_rate REAL NOT NULL, retry_count INTEGER NOT NULL, outcome_after_action TEXT,
        recorded_us INTEGER NOT NULL, model TEXT
    );

    CREATE TABLE pattern_discoveries (
        id TEXT PRIMARY KEY, event_id TEXT NOT NULL, workspace TEXT NOT NULL, pattern_id TEXT NOT NULL,
        pattern_name TEXT NOT NULL, pattern_type TEXT NOT NULL, source_job_hash TEXT NOT NULL,
        recorded_us INTEGER NOT NULL, expires_us INTEGER NOT NULL, effectiveness_score REAL NOT NULL,
        context_tags TEXT NOT NULL
    );

    CREATE TABLE evolution_trajectory (
        id TEXT PRIMARY KEY, event_id TEXT NOT NULL, cycle INTEGER NOT NULL UNIQUE,
        recorded_us INTEGER NOT NULL, evolutions_completed INTEGER NOT NULL,
        evolutions_deferred INTEGER NOT NULL, issue_classes TEXT NOT NULL, cv_avg REAL NOT NULL,
        implementation_loc INTEGER NOT NULL, test_loc INTEGER NOT NULL, loc_accuracy REAL NOT NULL,
        research_candidates_resolved INTEGER NOT NULL, research_candidates_created INTEGER NOT NULL,
        notes TEXT NOT NULL
    );

    CREATE TABLE exploration_budget (
        id TEXT PRIMARY KEY, event_id TEXT NOT NULL, seq INTEGER NOT NULL, job_hash TEXT NOT NULL,
        recorded_us INTEGER NOT NULL, budget_value REAL NOT NULL, entropy_at_time REAL,
        adjustment_type TEXT NOT NULL, adjustment_reason TEXT
    );
    CREATE INDEX budget_seq ON exploration_budget(seq);

    CREATE TABLE entropy_responses (
        id TEXT PRIMARY KEY, event_id TEXT NOT NULL, job_hash TEXT NOT NULL, recorded_us INTEGER NOT NULL,
        entropy_at_trigger REAL NOT NULL, threshold_used REAL NOT NULL, actions_taken TEXT NOT NULL,
        budget_boosted INTEGER NOT NULL, quarantine_revisits INTEGER NOT NULL,
        patterns_revisited TEXT NOT NULL
    );

    CREATE TABLE entropy_history (
        event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, calculated_us INTEGER NOT NULL,
        shannon_entropy REAL NOT NULL, max_possible_entropy REAL NOT NULL, diversity_index REAL NOT NULL,
        unique_pattern_count INTEGER NOT NULL, effective_pattern_count INTEGER NOT NULL,
        total_applications INTEGER NOT NULL, dominant_pattern_share REAL NOT NULL,
        threshold_exceeded INTEGER NOT NULL
    );

    CREATE TABLE drift_history (
        event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, kind TEXT NOT NULL, pattern_id TEXT NOT NULL,
        body TEXT NOT NULL
    );
    """,
    # 2: the learning model (issue 3, docs/LEARNING.md): derived pattern state, incremental aggregates for
    # entropy, success factors and tags, current drift per pattern, and indexes for the queries.
    """
    ALTER TABLE patterns ADD COLUMN last_applied_us INTEGER;
    ALTER TABLE patterns ADD COLUMN grace_until_apps INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE executions ADD COLUMN computed_confidence REAL;

    CREATE INDEX applications_window ON pattern_applications(pattern_id, applied_us DESC, event_id DESC);
    CREATE INDEX applications_grounded ON pattern_applications(pattern_id, applied_us DESC, event_id DESC)
        WHERE grounding_confidence IS NOT NULL;

    CREATE TABLE pattern_counts (
        pattern_id TEXT PRIMARY KEY, applications INTEGER NOT NULL, successes INTEGER NOT NULL,
        last_confirmed_us INTEGER, last_applied_us INTEGER
    ) WITHOUT ROWID;
    CREATE INDEX pattern_counts_applications ON pattern_counts(applications);

    CREATE TABLE entropy_state (
        id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL, sum_c_log2_c REAL NOT NULL,
        unique_patterns INTEGER NOT NULL, effective_patterns INTEGER NOT NULL
    );

    CREATE TABLE success_factor_counts (
        pattern_id TEXT NOT NULL, factor TEXT NOT NULL, value TEXT NOT NULL,
        applications INTEGER NOT NULL, successes INTEGER NOT NULL,
        grounding_sum REAL NOT NULL DEFAULT 0, grounding_n INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (pattern_id, factor, value)
    ) WITHOUT ROWID;

    CREATE TABLE pattern_tags (
        tag TEXT NOT NULL, pattern_id TEXT NOT NULL, PRIMARY KEY (tag, pattern_id)
    ) WITHOUT ROWID;
    CREATE INDEX pattern_tags_pattern ON pattern_tags(pattern_id);

    CREATE TABLE pattern_drift (
        pattern_id TEXT PRIMARY KEY, updated_us INTEGER NOT NULL,
        drift TEXT, drift_magnitude REAL, drift_exceeded INTEGER NOT NULL DEFAULT 0,
        epistemic TEXT, belief_change REAL, epistemic_exceeded INTEGER NOT NULL DEFAULT 0
    ) WITHOUT ROWID;
    CREATE INDEX drift_alerts ON pattern_drift(drift_exceeded, drift_magnitude);
    CREATE INDEX epistemic_alerts ON pattern_drift(epistemic_exceeded, belief_change);

    CREATE INDEX patterns_status_priority ON patterns(quarantine_status, priority_score DESC);
    CREATE INDEX patterns_type_priority ON patterns(pattern_type, priority_score DESC);
    CREATE INDEX recoveries_success ON error_recoveries(error_code, recovery_success, recorded_us);
    CREATE INDEX recoveries_model_success ON error_recoveries(error_code, model, recovery_success, recorded_us);
    CREATE INDEX escalations_similarity ON escalation_decisions(confidence, validation_pass_rate);
    CREATE INDEX executions_started ON executions(started_us);
    CREATE INDEX entropy_history_seq ON entropy_history(seq);
    """,
    # 3: grounding summed in exact integer millionths (order-independent means); the learning settings the
    # store derives with (read by `rebuild` and the read side; not a projection); patterns per tag, an
    # escalation index per outcome and a covering rank index, so the tag and similarity queries stay cheap.
    """
    ALTER TABLE success_factor_counts RENAME COLUMN grounding_sum TO grounding_sum_micro;
    UPDATE success_factor_counts SET grounding_sum_micro = ROUND(grounding_sum_micro * 1000000);

    CREATE TABLE learning_settings (
        id INTEGER PRIMARY KEY CHECK (id = 1), body TEXT NOT NULL, recorded_us INTEGER NOT NULL
    );

    CREATE TABLE tag_counts (tag TEXT PRIMARY KEY, patterns INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO tag_counts SELECT tag, COUNT(*) FROM pattern_tags GROUP BY tag;

    CREATE INDEX escalations_outcome_similarity
        ON escalation_decisions(outcome_after_action, confidence, validation_pass_rate);
    CREATE INDEX patterns_rank ON patterns(priority_score DESC, id, quarantine_status, trust_score);
    """,
    # 4: learning sessions (issue 6, docs/SESSIONS.md): session and edit lifecycles and the guidance they edit
    # (projections of the ledger), and the session index (rebuilt from the session.json artifacts, not the
    # ledger: `pheromone sessions reindex`).
    """
    CREATE TABLE session_state (
        session_id TEXT PRIMARY KEY, scope TEXT NOT NULL, status TEXT NOT NULL, trigger TEXT NOT NULL,
        watermark INTEGER, started_us INTEGER NOT NULL, updated_us INTEGER NOT NULL, seq INTEGER NOT NULL
    );
    CREATE INDEX session_state_scope ON session_state(scope, status);

    CREATE TABLE session_transitions (
        event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, session_id TEXT NOT NULL, from_status TEXT,
        to_status TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL, at_us INTEGER NOT NULL
    );
    CREATE INDEX session_transitions_session ON session_transitions(session_id, seq);

    CREATE TABLE session_edits (
        session_id TEXT NOT NULL, edit_id TEXT NOT NULL, workspace TEXT NOT NULL, pillar TEXT NOT NULL,
        op TEXT NOT NULL, key TEXT NOT NULL, status TEXT NOT NULL, risk_tier TEXT NOT NULL, edit TEXT NOT NULL,
        before TEXT, after TEXT, reason TEXT NOT NULL, actor TEXT NOT NULL, updated_us INTEGER NOT NULL,
        seq INTEGER NOT NULL, PRIMARY KEY (session_id, edit_id)
    );
    CREATE INDEX session_edits_status ON session_edits(status, workspace);

    CREATE TABLE edit_transitions (
        event_id TEXT PRIMARY KEY, seq INTEGER NOT NULL, session_id TEXT NOT NULL, edit_id TEXT NOT NULL,
        from_status TEXT, to_status TEXT NOT NULL, reason TEXT NOT NULL, actor TEXT NOT NULL, at_us INTEGER NOT NULL
    );

    CREATE TABLE guidance (
        workspace TEXT NOT NULL, pillar TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
        session_id TEXT NOT NULL, edit_id TEXT NOT NULL, seq INTEGER NOT NULL,
        PRIMARY KEY (workspace, pillar, key)
    ) WITHOUT ROWID;

    CREATE TABLE playbooks (
        workspace TEXT PRIMARY KEY, hand TEXT NOT NULL, actor TEXT NOT NULL, updated_us INTEGER NOT NULL,
        seq INTEGER NOT NULL
    );

    CREATE TABLE session_index (
        session_id TEXT PRIMARY KEY, workspace TEXT NOT NULL, status TEXT NOT NULL, trigger TEXT NOT NULL,
        trigger_id TEXT NOT NULL, autonomy TEXT NOT NULL, started_us INTEGER NOT NULL, ended_us INTEGER,
        applied INTEGER NOT NULL, staged INTEGER NOT NULL, rejected INTEGER NOT NULL,
        score_before REAL, score_after REAL, path TEXT NOT NULL
    );
    CREATE INDEX session_index_workspace ON session_index(workspace, started_us);
    CREATE INDEX session_index_trigger ON session_index(trigger_id);
    """,
    # 5: `applications_pattern (pattern_id, seq)` served no query: every read of `pattern_applications` by
    # pattern is by its last applications (`applications_window`, whose pattern_id prefix also serves any
    # lookup by pattern alone): one B-tree fewer to update per application and to write per commit.
    """
    DROP INDEX IF EXISTS applications_pattern;
    """,
    # 6: `recoveries_code (error_code, model, recorded_us)` served no query either: the planner takes
    # `recoveries_model_success (error_code, model, recovery_success, recorded_us)` for every filter on the
    # code (and model), its same prefix. One B-tree fewer per error recovery.
    """
    DROP INDEX IF EXISTS recoveries_code;
    """,
    # 7: the lifecycle's evidence is the applications since a pattern last entered or left quarantine: the
    # pattern's counts at that move, so the evidence is two subtractions (services/learning/lifecycle.py).
    """
    ALTER TABLE patterns ADD COLUMN evidence_base_apps INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE patterns ADD COLUMN evidence_base_successes INTEGER NOT NULL DEFAULT 0;
    """,
)

PROJECTION_TABLES: tuple[str, ...] = (
    "executions",
    "patterns",
    "pattern_applications",
    "pattern_transitions",
    "error_recoveries",
    "rate_limit_events",
    "escalation_decisions",
    "pattern_discoveries",
    "evolution_trajectory",
    "exploration_budget",
    "entropy_responses",
    "entropy_history",
    "drift_history",
    "pattern_counts",
    "entropy_state",
    "success_factor_counts",
    "pattern_tags",
    "pattern_drift",
    "tag_counts",
    "session_state",
    "session_transitions",
    "session_edits",
    "edit_transitions",
    "guidance",
    "playbooks",
)
"""Every table derived from the ledger: dropped and replayed by `pheromone rebuild`.

Not listed: `learning_settings`, the settings the projections derive with (see `services.store.projections`);
it is configuration, not state derived from events. Nor `session_index`: it is rebuilt from the session.json
artifacts (`services.store.session_store.SessionStore.reindex`)."""


def connect(path: str, *, timeout_s: float = 30.0) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL, synchronous=NORMAL."""
    conn = sqlite3.connect(path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
    # Switching a fresh file to WAL needs its exclusive lock, and when connections race for it SQLite answers
    # "database is locked" at once instead of calling the busy handler (it would deadlock): retry in here.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                conn.close()
                raise
            time.sleep(0.005)
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    conn.execute("PRAGMA foreign_keys=ON")
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to the newest version; returns it. Safe when processes race."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(
                f"store schema version {version} is newer than this pheromone ({len(MIGRATIONS)}); upgrade"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in _statements(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={number}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our IMMEDIATE transaction; run statements one by one instead.
    return [s.strip() for s in script.split(";") if s.strip()]
