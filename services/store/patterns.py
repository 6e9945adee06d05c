"""Pattern projections: identity, applications, derived scores, the lifecycle, success factors, drift.

Identity is `contracts.pattern_id(type, name)` (type + normalised name); `content_hash` over type and
description lets queries find the same pattern under different names. Tags merge (a set union) and are also
kept one row per tag in `pattern_tags` for indexed tag queries.

Per application, inside the batch transaction and in ledger order (docs/LEARNING.md has every formula):
  1. the application row; 2. the per-pattern aggregate `pattern_counts` (applications, successes, last
  confirmed, last applied); 3. the pattern's counters; 4. the running entropy aggregate (`entropy_state`);
  5. success-factor counts; 6. effectiveness, variance, priority, trust and the automatic lifecycle rule.
  All of it is held in the batch's memory and written once per pattern (`services.store.batch`), except the
  transitions a rule makes, written as they happen. Once per pattern at the end of the batch, `settle`:
  drift and the success-factor summary (functions of the set of applications, so the batch boundaries
  cannot change them).

Everything derived is a function of event data only (never the wall clock): scores use the last applications
by *event time* and measure decay up to the pattern's latest application, so the same set of applications
gives the same scores whatever order concurrent producers' events arrived in.

Automatic transitions are *derived* records: a rule's decision is written to `pattern_transitions` with
actor `rule` (or `entropy_response` for a revisit), id `<cause event id>/<pattern id>` and the cause's seq;
it is not a separate ledger event, and a rebuild re-derives it identically. Manual transitions are
`PatternTransitioned` ledger events; an illegal one is refused (`EventRejected`) before anything is written.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from pheromone.contracts import Envelope, PatternApplied, PatternObserved, PatternTransitioned, QuarantineStatus
from pheromone.contracts.records import normalise_pattern_name, pattern_id
from pheromone.services.errors import EventRejected
from pheromone.services.learning.drift import effectiveness_drift, epistemic_drift
from pheromone.services.learning.entropy import c_log2_c
from pheromone.services.learning.factors import GROUNDING, FactorCount, factor_rows, grounding_of, summarise
from pheromone.services.learning.lifecycle import (
    ALLOWED_TRANSITIONS,
    IllegalTransition,
    automatic_transition,
    check_transition,
    is_revisit,
    resets_evidence,
)
from pheromone.services.learning.scores import days_between, effectiveness, priority, trust
from pheromone.services.order import check_predecessor
from pheromone.services.store.batch import PatternBatch
from pheromone.services.store.codec import dumps, us
from pheromone.services.store.pattern_state import Live, PatternState, Window, scores
from pheromone.services.store.sql import SqlConn

if TYPE_CHECKING:
    from pheromone.services.settings import LearningSettings

__all__ = ["ALLOWED_TRANSITIONS", "apply", "content_hash", "observe", "revisit", "settle", "transition"]


def content_hash(pattern_type: str, pattern_name: str, description: str) -> str:
    """SHA-256 over the normalised type and description, to find one pattern recorded under several names.

    The name is left out (the id already keys on type + name, so a hash that includes it can never match
    across names); a pattern without a description hashes its type and name instead.
    """
    content = normalise_pattern_name(description) or f"\x1e{normalise_pattern_name(pattern_name)}"
    return hashlib.sha256(f"{normalise_pattern_name(pattern_type)}\x1f{content}".encode()).hexdigest()


STATE_COLUMNS = """pattern_name, occurrence_count, led_to_success_count, led_to_failure_count,
    last_confirmed_us, last_applied_us, quarantine_status, grace_until_apps, evidence_base_apps,
    evidence_base_successes"""
SELECT_STATE = f"SELECT {STATE_COLUMNS} FROM patterns WHERE id = ?"
SELECT_COUNTS = """
SELECT applications, successes, last_confirmed_us, last_applied_us FROM pattern_counts WHERE pattern_id = ?
"""

# -- observations --------------------------------------------------------------------------------------------

INSERT_COUNTS_ROW = (
    "INSERT INTO pattern_counts VALUES (?, 0, 0, NULL, NULL) ON CONFLICT(pattern_id) DO NOTHING"
)
UPSERT_PATTERN = f"""
INSERT INTO patterns (
    id, pattern_type, pattern_name, description, occurrence_count, first_seen_us, last_seen_us,
    led_to_success_count, led_to_failure_count, last_confirmed_us, last_applied_us, suggested_action,
    context_tags, provenance_job_hash, provenance_sheet_num, content_hash, instrument_name, workspace
) VALUES (
    :id, :pattern_type, :pattern_name, :description, 1, :at, :at,
    (SELECT successes FROM pattern_counts WHERE pattern_id = :id),
    (SELECT applications - successes FROM pattern_counts WHERE pattern_id = :id),
    (SELECT last_confirmed_us FROM pattern_counts WHERE pattern_id = :id),
    (SELECT last_applied_us FROM pattern_counts WHERE pattern_id = :id),
    :suggested_action, :tags, :job, :sheet, :content_hash, :instrument, :workspace
)
ON CONFLICT(id) DO UPDATE SET
    occurrence_count = occurrence_count + 1,
    first_seen_us = MIN(first_seen_us, excluded.first_seen_us),
    last_seen_us = MAX(last_seen_us, excluded.last_seen_us),
    description = CASE WHEN excluded.description != '' THEN excluded.description ELSE description END,
    suggested_action = COALESCE(excluded.suggested_action, suggested_action),
    instrument_name = COALESCE(excluded.instrument_name, instrument_name),
    content_hash = CASE WHEN excluded.description != '' THEN excluded.content_hash ELSE content_hash END,
    context_tags = (
        SELECT json_group_array(value) FROM (
            SELECT DISTINCT value FROM json_each(patterns.context_tags)
            UNION SELECT value FROM json_each(excluded.context_tags) ORDER BY value
        )
    )
RETURNING {STATE_COLUMNS}, effectiveness_score, variance
"""
INSERT_TAG = "INSERT INTO pattern_tags VALUES (?, ?) ON CONFLICT DO NOTHING"
COUNT_TAG = """
INSERT INTO tag_counts VALUES (?, 1) ON CONFLICT(tag) DO UPDATE SET patterns = patterns + 1
"""
# An unchanged priority (saturated occurrences) is not rewritten: the row and its four priority indexes are
# left as they are, which is what rewriting the same value would give, without the writes.
SET_PRIORITY = "UPDATE patterns SET priority_score = ?1 WHERE id = ?2 AND priority_score IS NOT ?1"


def observe(
    conn: SqlConn,
    env: Envelope,
    p: PatternObserved,
    seq: int,
    s: LearningSettings,
    batch: PatternBatch,
) -> None:
    pid = pattern_id(p.pattern_type, p.pattern_name)
    tags = sorted(set(p.context_tags))
    live = batch.live.get(pid)
    if live is not None and (live.state is None or live.effectiveness is None):
        # The upsert would create the row from `pattern_counts`, which the batch holds newer: write it first.
        batch.flush_pattern(conn, pid)
        live = None
    if conn.execute(INSERT_COUNTS_ROW, (pid,)).rowcount:
        batch.add_entropy(conn, total=0, delta=0.0, unique=1, effective=0)
    row = conn.execute(
        UPSERT_PATTERN,
        {
            "id": pid,
            "pattern_type": p.pattern_type,
            "pattern_name": p.pattern_name,
            "description": p.description,
            "at": us(env.occurred_at),
            "suggested_action": p.suggested_action,
            "tags": dumps(tags),
            "job": p.provenance_job_hash or env.job,
            "sheet": p.provenance_sheet_num,
            "content_hash": content_hash(p.pattern_type, p.pattern_name, p.description),
            "instrument": p.instrument_name,
            "workspace": env.workspace,
        },
    ).fetchone()
    for tag in tags:
        if conn.execute(INSERT_TAG, (tag, pid)).rowcount:
            # Patterns per tag, so a tag query can pick its plan without counting (services.query.learning).
            conn.execute(COUNT_TAG, (tag,))
    if live is not None:
        # The row existed and the batch holds this pattern: the upsert changed its occurrence count and
        # descriptive columns, none of the counts, times or status the batch holds newer. The batch's write of
        # the pattern (`batch.flush`) derives the priority from the new count, as SET_PRIORITY would, so
        # writing the pattern now and loading it again at its next application would be wasted work.
        assert live.state is not None
        live.state.occurrences = row[1]
        return
    state = PatternState.from_row(pid, row[:10])
    if state.occurrences == 1 and state.successes + state.failures > 0:
        # First observation of a pattern that was applied before: derive everything from its applications.
        batch.write_applications(conn)
        refresh(conn, state, s, cause=(env.event_id, seq, us(env.occurred_at)))
        batch.touched.add(pid)
    else:
        # Only the occurrence count changed: priority is the one derived value that depends on it.
        conn.execute(SET_PRIORITY, (priority(row[10], state.occurrences, row[11], s), pid))


# -- applications --------------------------------------------------------------------------------------------

MICRO = 1_000_000
"""Grounding is summed in integer millionths: exact, so the mean does not depend on the order of addition."""
WINDOW_KEYED = """
SELECT applied_us, event_id, success, grounding_confidence FROM pattern_applications WHERE pattern_id = ?
ORDER BY applied_us DESC, event_id DESC LIMIT ?
"""


def apply(
    conn: SqlConn,
    env: Envelope,
    p: PatternApplied,
    seq: int,
    s: LearningSettings,
    batch: PatternBatch,
) -> None:
    """One application, on the batch's in-memory copy of the pattern (written back by `batch.flush`).

    Each step does what its statement did: the counts as `INSERT ... ON CONFLICT DO UPDATE` (a MAX for the
    times), the entropy terms, the factor counts, then the scores and the lifecycle rule over the last window.
    """
    # An application may arrive before the pattern's first observation (streams interleave): it is counted in
    # `pattern_counts` now, and the pattern row takes its counters from there when it is created.
    # This is the hottest projection, hence locals and one call per step rather than one per factor row.
    pid, at, ok, grounding_confidence = p.pattern_id, us(env.occurred_at), int(p.success), p.grounding_confidence
    factors = p.success_factors
    live = batch.live.get(pid) or _load(conn, pid, s, batch)  # before this row joins the buffer
    batch.add_application(
        conn,
        (
            env.event_id,
            seq,
            pid,
            env.workspace,
            env.job,
            at,
            ok,
            grounding_confidence,
            p.execution_id,
            p.model,
            factors.model_dump_json() if factors else None,
        ),
    )
    live.applications = n = live.applications + 1
    live.successes += ok
    if ok:
        live.last_confirmed_us = at if live.last_confirmed_us is None else max(live.last_confirmed_us, at)
    live.last_applied_us = at if live.last_applied_us is None else max(live.last_applied_us, at)
    batch.add_entropy(
        conn,
        total=1,
        delta=c_log2_c(n) - c_log2_c(n - 1),
        unique=int(n == 1 and live.state is None),
        effective=int(n == 1),
    )
    batch.add_factors(pid, factor_rows(factors, env.occurred_at.hour, s), ok)
    grounding = grounding_of(factors, grounding_confidence)
    if grounding is not None:
        # The summary's grounding is the mean over *successful* applications (the seed's "why it worked").
        batch.add_factor((pid, GROUNDING, ""), ok, round(grounding * MICRO) * ok, ok)
    # The window is the top `effectiveness_window` by (applied_us, event_id), newest first: the top of the
    # loaded window plus this batch's applications is the top of all of them. Event ids are unique, so the
    # order is total; an application newer than the window's head (the usual case) goes in front, as the
    # sort would put it, without sorting.
    window = live.window
    entry = (at, env.event_id, ok, grounding_confidence)
    if not window or (at, entry[1]) > (window[0][0], window[0][1]):
        window.insert(0, entry)
    else:
        window.append(entry)
        window.sort(key=_window_key, reverse=True)
    del window[s.effectiveness_window :]
    st = live.state
    if st is not None:
        st.successes, st.failures = live.successes, n - live.successes
        st.last_confirmed_us, st.last_applied_us = live.last_confirmed_us, live.last_applied_us
        live.effectiveness = _rule(
            conn, st, [w[2] for w in window], [w[3] for w in window], s, cause=(env.event_id, seq, at)
        )
        batch.touched.add(pid)


def _window_key(entry: tuple[int, str, int, float | None]) -> tuple[int, str]:
    # SQLite orders TEXT by its UTF-8 bytes (BINARY), which is the order of code points, as Python's str.
    return entry[0], entry[1]


def _load(conn: SqlConn, pid: str, s: LearningSettings, batch: PatternBatch) -> Live:
    """A pattern's counts, row state and last window, read once per batch (or after a `flush_pattern`)."""
    batch.write_applications(conn)  # rows this batch wrote before a flush_pattern belong in the window
    apps, ok, confirmed, applied = conn.execute(SELECT_COUNTS, (pid,)).fetchone() or (0, 0, None, None)
    row = conn.execute(SELECT_STATE, (pid,)).fetchone()
    window: Window = conn.execute(WINDOW_KEYED, (pid, s.effectiveness_window)).fetchall()
    state = PatternState.from_row(pid, row) if row else None
    live = Live(pid, apps, ok, confirmed, applied, state, window, s)
    batch.live[pid] = live
    return live


# -- derived state -------------------------------------------------------------------------------------------

WINDOW = """
SELECT success, grounding_confidence FROM pattern_applications WHERE pattern_id = ?
ORDER BY applied_us DESC, event_id DESC LIMIT ?
"""
GROUNDED_WINDOW = """
SELECT grounding_confidence FROM pattern_applications
WHERE pattern_id = ? AND grounding_confidence IS NOT NULL
ORDER BY applied_us DESC, event_id DESC LIMIT ?
"""
SELECT_FACTORS = """
SELECT factor, value, applications, successes, grounding_sum_micro / 1e6, grounding_n
FROM success_factor_counts
WHERE pattern_id = ?
"""
SET_SCORES = """
UPDATE patterns SET effectiveness_score = :eff, variance = :var, priority_score = :pri, trust_score = :trust,
    trust_calculation_us = :at
WHERE id = :id
"""
SET_FACTORS = """
UPDATE patterns SET success_factors = ?1,
    success_factors_updated_us = CASE WHEN ?1 IS NULL THEN success_factors_updated_us ELSE ?2 END
WHERE id = ?3
"""
UPSERT_DRIFT = """
INSERT INTO pattern_drift VALUES (:id, :at, :drift, :magnitude, :exceeded, :epistemic, :change, :e_exceeded)
ON CONFLICT(pattern_id) DO UPDATE SET
    updated_us = excluded.updated_us, drift = excluded.drift, drift_magnitude = excluded.drift_magnitude,
    drift_exceeded = excluded.drift_exceeded, epistemic = excluded.epistemic,
    belief_change = excluded.belief_change, epistemic_exceeded = excluded.epistemic_exceeded
"""
INSERT_TRANSITION = "INSERT INTO pattern_transitions VALUES (?,?,?,?,?,?,?,?)"
SET_STATUS = """
UPDATE patterns SET quarantine_status = :to,
    quarantined_at_us = CASE WHEN :to = 'quarantined' THEN :at ELSE quarantined_at_us END,
    quarantine_reason = CASE WHEN :to = 'quarantined' THEN :reason ELSE NULL END,
    validated_at_us = CASE WHEN :to = 'validated' THEN :at ELSE validated_at_us END,
    active = CASE WHEN :to = 'retired' THEN 0 ELSE active END,
    grace_until_apps = :grace, evidence_base_apps = :base_apps, evidence_base_successes = :base_ok
WHERE id = :id
"""
SET_TRUST = "UPDATE patterns SET trust_score = ?, trust_calculation_us = ? WHERE id = ?"


def refresh(
    conn: SqlConn, st: PatternState, s: LearningSettings, cause: tuple[str, int, int]
) -> None:
    """Recompute a pattern's scores after an event and apply the automatic lifecycle rule.

    `cause` is the (event id, seq, time) of the event that triggered it: the key and time of a derived
    transition. Scores are as of the pattern's latest application (`last_applied_us`), never the wall clock.
    The lifecycle depends on the path, so this runs after every application; what depends only on the set of
    applications (drift, the success-factor summary) waits for `settle`, once per pattern per batch.
    """
    recent = conn.execute(WINDOW, (st.id, s.effectiveness_window)).fetchall()
    eff = _rule(conn, st, [r[0] for r in recent], [r[1] for r in recent], s, cause)
    conn.execute(SET_SCORES, {**scores(st, eff, s), "id": st.id})


def _rule(
    conn: SqlConn,
    st: PatternState,
    successes: list[int],
    groundings: list[float | None],
    s: LearningSettings,
    cause: tuple[str, int, int],
) -> float:
    """The effectiveness over a given window (newest first: its outcomes as 0/1 and its grounding confidences),
    after writing the transition the automatic rule makes, if any (`st` then holds the new status)."""
    n = st.successes + st.failures
    days = days_between(st.last_confirmed_us, st.last_applied_us)
    eff = effectiveness(st.successes, st.failures, successes, groundings, days, s)
    event_id, seq, at = cause
    if st.status != QuarantineStatus.RETIRED:
        evidence = (st.successes - st.base_successes, n - st.base_apps)
        move = automatic_transition(st.status, n, eff, st.grace_until, s, evidence=evidence)
        if move is not None:
            check_transition(st.status, move[0])  # a rule's move obeys the same table as everyone's
            _write_transition(
                conn, st, move[0], move[1], actor="rule", key=f"{event_id}/{st.id}", seq=seq, at=at, s=s
            )
    return eff


def settle(conn: SqlConn, pattern: str, s: LearningSettings) -> None:
    """At the end of a batch, for each pattern it applied: drift and the success-factor summary.

    Both are functions of the set of applications (the last windows by event time, the factor counts), so
    computing them once per batch gives exactly what computing them after every application would.
    """
    row = conn.execute(SELECT_STATE, (pattern,)).fetchone()
    if row is None:
        return
    st = PatternState.from_row(pattern, row)
    rows = [FactorCount(*r) for r in conn.execute(SELECT_FACTORS, (st.id,)).fetchall()]
    summary = summarise(rows, st.successes, st.failures)
    conn.execute(SET_FACTORS, (summary.model_dump_json() if summary else None, st.last_applied_us, st.id))
    fetch = max(2 * s.drift_window, 2 * s.epistemic_window)
    _drift(conn, st, conn.execute(WINDOW, (st.id, fetch)).fetchall(), fetch, s)


def _drift(
    conn: SqlConn,
    st: PatternState,
    window: list[tuple[int, float | None]],
    fetched: int,
    s: LearningSettings,
) -> None:
    if len(window) < 2 * min(s.drift_window, s.epistemic_window):
        return
    drift = effectiveness_drift(st.id, st.name, [(bool(ok), g) for ok, g in window], s)
    grounded = [g for _, g in window if g is not None]
    if len(grounded) < 2 * s.epistemic_window and len(window) == fetched:
        # Older applications may hold more confidences than this window: read them through the partial index.
        grounded = [r[0] for r in conn.execute(GROUNDED_WINDOW, (st.id, 2 * s.epistemic_window)).fetchall()]
    epistemic = epistemic_drift(st.id, st.name, grounded, s)
    if drift is None and epistemic is None:
        return
    conn.execute(
        UPSERT_DRIFT,
        {
            "id": st.id,
            "at": st.last_applied_us,
            "drift": drift.model_dump_json() if drift else None,
            "magnitude": drift.drift_magnitude if drift else None,
            "exceeded": int(bool(drift and drift.threshold_exceeded)),
            "epistemic": epistemic.model_dump_json() if epistemic else None,
            "change": epistemic.belief_change if epistemic else None,
            "e_exceeded": int(bool(epistemic and epistemic.threshold_exceeded)),
        },
    )


def _write_transition(
    conn: SqlConn,
    st: PatternState,
    to: QuarantineStatus,
    reason: str,
    *,
    actor: str,
    key: str,
    seq: int,
    at: int,
    s: LearningSettings,
) -> None:
    """One transition row and the pattern's new status; a revisit opens the re-quarantine grace period.

    Grace is stored as an application count: no automatic quarantine before the pattern reaches it.
    """
    applications = st.successes + st.failures
    grace = applications + s.revisit_grace_applications if is_revisit(st.status, to) else st.grace_until
    if resets_evidence(st.status, to):
        st.base_apps, st.base_successes = applications, st.successes
    conn.execute(INSERT_TRANSITION, (key, seq, st.id, st.status.value, to.value, reason, actor, at))
    conn.execute(SET_STATUS, {"to": to.value, "at": at, "reason": reason, "grace": grace, "id": st.id,
                              "base_apps": st.base_apps, "base_ok": st.base_successes})
    st.status, st.grace_until = to, grace


# -- transitions ---------------------------------------------------------------------------------------------


def transition(
    conn: SqlConn,
    env: Envelope,
    p: PatternTransitioned,
    seq: int,
    s: LearningSettings,
    batch: PatternBatch,
) -> None:
    """A manual (or service-made) transition event: validated against the lifecycle before any write.

    (Writing back the batch's pending state of the pattern first is not this event's write: it is the
    earlier events' state, which a refusal keeps.)
    """
    batch.flush_pattern(conn, p.pattern_id)
    row = conn.execute(SELECT_STATE, (p.pattern_id,)).fetchone()
    if row is None:
        # Retryable: after a crash, redelivery can bring a transition before the pattern's observation.
        raise EventRejected(f"pattern {p.pattern_id!r} is not in the store", retryable=True)
    st = PatternState.from_row(p.pattern_id, row)
    check_predecessor(f"pattern {p.pattern_id}", st.status, p.from_status, ALLOWED_TRANSITIONS, frozenset())
    try:
        check_transition(st.status, p.to_status)
    except IllegalTransition as exc:
        raise EventRejected(f"{exc} for pattern {p.pattern_id}") from exc
    at = us(env.occurred_at)
    _move(conn, st, p.to_status, p.reason, actor=p.actor, key=env.event_id, seq=seq, at=at, s=s)


def revisit(
    conn: SqlConn,
    pid: str,
    *,
    key: str,
    seq: int,
    at: int,
    reason: str,
    s: LearningSettings,
    batch: PatternBatch,
) -> bool:
    """An entropy response's revisit: quarantined -> pending with a grace period; False if not quarantined."""
    batch.flush_pattern(conn, pid)
    row = conn.execute(SELECT_STATE, (pid,)).fetchone()
    if row is None:
        return False
    st = PatternState.from_row(pid, row)
    if st.status != QuarantineStatus.QUARANTINED:
        return False
    _move(conn, st, QuarantineStatus.PENDING, reason, actor="entropy_response", key=key, seq=seq, at=at, s=s)
    return True


def _move(
    conn: SqlConn,
    st: PatternState,
    to: QuarantineStatus,
    reason: str,
    *,
    actor: str,
    key: str,
    seq: int,
    at: int,
    s: LearningSettings,
) -> None:
    _write_transition(conn, st, to, reason, actor=actor, key=key, seq=seq, at=at, s=s)
    days = days_between(st.last_confirmed_us, st.last_applied_us)
    conn.execute(SET_TRUST, (trust(st.successes, st.failures, days, to, s), at, st.id))
