"""Session artifacts: `<sessions dir>/<id>/session.json` (authoritative) and `plan.json` (the frozen plan),
and the `session_index` table that lists them, rebuilt from the files by `reindex`.

Files are written to a temporary name and renamed, so a reader sees the old or the new file, never half.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from pydantic import ValidationError

from pheromone.contracts.sessions import EditStatus, LearningPlan, LearningSession
from pheromone.services.store.codec import us

SESSION_FILE = "session.json"
PLAN_FILE = "plan.json"
UPSERT_INDEX = "INSERT OR REPLACE INTO session_index VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"


class ArtifactError(ValueError):
    """A session file that is missing or does not hold a session."""


def session_dir(root: Path, session_id: str) -> Path:
    return root / session_id


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_session(root: Path, s: LearningSession) -> Path:
    path = session_dir(root, s.id) / SESSION_FILE
    _write(path, s.model_dump_json(indent=2))
    return path


def write_plan(root: Path, plan: LearningPlan) -> Path:
    """The plan is frozen: written once; a second write of a different plan is refused."""
    path = session_dir(root, plan.session_id) / PLAN_FILE
    text = plan.model_dump_json(indent=2)
    if path.exists() and path.read_text(encoding="utf-8") != text:
        raise ArtifactError(f"{path} already holds a different plan: plans are frozen")
    _write(path, text)
    return path


def read_session(root: Path, session_id: str) -> LearningSession:
    path = session_dir(root, session_id) / SESSION_FILE
    try:
        return LearningSession.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise ArtifactError(f"no session {session_id!r} (no {path})") from exc
    except ValidationError as exc:
        raise ArtifactError(f"{path} is not a session: {exc.errors(include_url=False)[0]['msg']}") from exc


def index_row(s: LearningSession, path: Path) -> tuple[object, ...]:
    count = {st: sum(1 for o in s.outcomes if o.status is st) for st in EditStatus}
    snaps = {(x.label, x.split): x.score for x in s.snapshots}
    return (s.id, s.workspace, s.status.value, s.trigger.value, s.trigger_id, s.autonomy.value, us(s.started_at),
            us(s.ended_at) if s.ended_at else None, count[EditStatus.APPLIED], count[EditStatus.STAGED],
            count[EditStatus.GATE_REJECTED] + count[EditStatus.REJECTED], snaps.get(("before", "val")),
            snaps.get(("after", "val")), str(path))


def index(conn: sqlite3.Connection, s: LearningSession, path: Path) -> None:
    conn.execute(UPSERT_INDEX, index_row(s, path))


def reindex(conn: sqlite3.Connection, root: Path) -> tuple[int, list[str]]:
    """Rebuild `session_index` from every session.json under `root`; returns (indexed, unreadable files)."""
    bad: list[str] = []
    rows = []
    for path in sorted(root.glob(f"*/{SESSION_FILE}")) if root.is_dir() else []:
        try:
            rows.append(index_row(LearningSession.model_validate_json(path.read_bytes()), path))
        except (OSError, ValidationError):
            bad.append(str(path))
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("DELETE FROM session_index")
        conn.executemany(UPSERT_INDEX, rows)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(rows), bad
