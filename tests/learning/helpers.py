"""Event builders and store readers shared by the learning tests."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pheromone.contracts import (
    Envelope,
    PatternApplied,
    PatternObserved,
    PatternTransitioned,
    Payload,
    SuccessFactors,
    pattern_id,
)

T0 = datetime(2025, 3, 3, 8, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def event(
    payload: Payload, minutes: float = 0, *, workspace: str = "ws-1", job: str = "job-1"
) -> tuple[Envelope, str]:
    env = Envelope(workspace=workspace, job=job, payload=payload, occurred_at=at(minutes))
    return env, env.model_dump_json()


def observed(
    name: str, ptype: str = "retry_pattern", tags: list[str] | None = None, **kw: Any
) -> PatternObserved:
    return PatternObserved(pattern_type=ptype, pattern_name=name, context_tags=tags or [], **kw)


def pid(name: str, ptype: str = "retry_pattern") -> str:
    return pattern_id(ptype, name)


def applied(
    name: str,
    ok: bool,
    grounding: float | None = None,
    ptype: str = "retry_pattern",
    factors: SuccessFactors | None = None,
    **kw: Any,
) -> PatternApplied:
    return PatternApplied(
        pattern_id=pid(name, ptype), success=ok, grounding_confidence=grounding, success_factors=factors, **kw
    )


def moved(name: str, to: str, reason: str = "operator review", actor: str = "tester") -> PatternTransitioned:
    return PatternTransitioned(pattern_id=pid(name), to_status=to, reason=reason, actor=actor)  # type: ignore[arg-type]


def rows(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def pattern_row(db: Path, pattern: str) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM patterns WHERE id = ?", (pattern,)).fetchone()
        return dict(row) if row else {}
    finally:
        conn.close()
