"""Pattern projections: identity, occurrence and application counters, lifecycle transitions.

Identity is `contracts.pattern_id(type, name)` (type + normalised name); `content_hash` over type, name and
description lets queries find the same pattern under different names. Every write is one statement with
`ON CONFLICT` (no read-modify-write in Python), inside the batch transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3

from contracts import Envelope, PatternApplied, PatternObserved, PatternTransitioned, QuarantineStatus
from contracts.records import normalise_pattern_name, pattern_id
from services.errors import EventRejected
from services.store.codec import us

ALLOWED_TRANSITIONS: dict[QuarantineStatus, frozenset[QuarantineStatus]] = {
    QuarantineStatus.PENDING: frozenset(
        {QuarantineStatus.VALIDATED, QuarantineStatus.QUARANTINED, QuarantineStatus.RETIRED}
    ),
    QuarantineStatus.VALIDATED: frozenset({QuarantineStatus.QUARANTINED, QuarantineStatus.RETIRED}),
    QuarantineStatus.QUARANTINED: frozenset(
        {QuarantineStatus.PENDING, QuarantineStatus.VALIDATED, QuarantineStatus.RETIRED}
    ),
    QuarantineStatus.RETIRED: frozenset(),
}
"""The quarantine lifecycle's legal moves. Retired is terminal; quarantined -> pending is a revisit."""


def content_hash(pattern_type: str, pattern_name: str, description: str) -> str:
    text = "\x1f".join(normalise_pattern_name(x) for x in (pattern_type, pattern_name, description))
    return hashlib.sha256(text.encode()).hexdigest()


UPSERT_PATTERN = """
INSERT INTO patterns (
    id, pattern_type, pattern_name, description, occurrence_count, first_seen_us, last_seen_us,
    led_to_success_count, led_to_failure_count, suggested_action, context_tags, provenance_job_hash,
    provenance_sheet_num, content_hash, instrument_name, workspace
) VALUES (
    :id, :pattern_type, :pattern_name, :description, 1, :at, :at,
    (SELECT COUNT(*) FROM pattern_applications WHERE pattern_id = :id AND success = 1),
    (SELECT COUNT(*) FROM pattern_applications WHERE pattern_id = :id AND success = 0),
    :suggested_action, :tags, :job, :sheet, :content_hash, :instrument, :workspace
)
ON CONFLICT(id) DO UPDATE SET
    occurrence_count = occurrence_count + 1,
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
"""


def observe(conn: sqlite3.Connection, env: Envelope, p: PatternObserved, seq: int) -> None:
    conn.execute(
        UPSERT_PATTERN,
        {
            "id": pattern_id(p.pattern_type, p.pattern_name),
            "pattern_type": p.pattern_type,
            "pattern_name": p.pattern_name,
            "description": p.description,
            "at": us(env.occurred_at),
            "suggested_action": p.suggested_action,
            "tags": json.dumps(sorted(set(p.context_tags))),
            "job": p.provenance_job_hash or env.job,
            "sheet": p.provenance_sheet_num,
            "content_hash": content_hash(p.pattern_type, p.pattern_name, p.description),
            "instrument": p.instrument_name,
            "workspace": env.workspace,
        },
    )


INSERT_APPLICATION = "INSERT INTO pattern_applications VALUES (?,?,?,?,?,?,?,?,?,?,?)"
COUNT_APPLICATION = """
UPDATE patterns SET
    led_to_success_count = led_to_success_count + :ok,
    led_to_failure_count = led_to_failure_count + (1 - :ok),
    last_confirmed_us = CASE WHEN :ok = 1 THEN MAX(COALESCE(last_confirmed_us, 0), :at)
                             ELSE last_confirmed_us END
WHERE id = :id
"""


def apply(conn: sqlite3.Connection, env: Envelope, p: PatternApplied, seq: int) -> None:
    # An application may arrive before the pattern's first observation (streams interleave); it is kept
    # and counted when the pattern row is created (see UPSERT_PATTERN's sub-selects).
    at = us(env.occurred_at)
    conn.execute(
        INSERT_APPLICATION,
        (
            env.event_id, seq, p.pattern_id, env.workspace, env.job, at, int(p.success),
            p.grounding_confidence, p.execution_id, p.model,
            p.success_factors.model_dump_json() if p.success_factors else None,
        ),
    )
    conn.execute(COUNT_APPLICATION, {"ok": int(p.success), "at": at, "id": p.pattern_id})


def transition(conn: sqlite3.Connection, env: Envelope, p: PatternTransitioned, seq: int) -> None:
    row = conn.execute("SELECT quarantine_status FROM patterns WHERE id = ?", (p.pattern_id,)).fetchone()
    if row is None:
        raise EventRejected(f"pattern {p.pattern_id!r} is not in the store")
    current = QuarantineStatus(row[0])
    if p.to_status not in ALLOWED_TRANSITIONS[current]:
        raise EventRejected(f"illegal transition {current.value} -> {p.to_status.value} for {p.pattern_id}")
    at = us(env.occurred_at)
    conn.execute(
        "INSERT INTO pattern_transitions VALUES (?,?,?,?,?,?,?,?)",
        (env.event_id, seq, p.pattern_id, current.value, p.to_status.value, p.reason, p.actor, at),
    )
    conn.execute(
        """UPDATE patterns SET quarantine_status = :to,
               quarantined_at_us = CASE WHEN :to = 'quarantined' THEN :at ELSE quarantined_at_us END,
               quarantine_reason = CASE WHEN :to = 'quarantined' THEN :reason ELSE quarantine_reason END,
               validated_at_us = CASE WHEN :to = 'validated' THEN :at ELSE validated_at_us END,
               active = CASE WHEN :to = 'retired' THEN 0 ELSE active END
           WHERE id = :id""",
        {"to": p.to_status.value, "at": at, "reason": p.reason, "id": p.pattern_id},
    )
