"""Session artifacts: `<sessions dir>/<id>/session.json` (authoritative) and `plan.json` (the frozen plan).
The store lists them in its `session_index` table (`services.store.session_store`), rebuilt from these files.

Files are written to a temporary name and renamed, so a reader sees the old or the new file, never half.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import ValidationError

from pheromone.contracts.sessions import LearningPlan, LearningSession

SESSION_FILE = "session.json"
PLAN_FILE = "plan.json"


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


def read_sessions(root: Path) -> tuple[list[tuple[LearningSession, Path]], list[str]]:
    """Every session.json under `root`, in path order, and the files that are not readable sessions."""
    found: list[tuple[LearningSession, Path]] = []
    bad: list[str] = []
    for path in sorted(root.glob(f"*/{SESSION_FILE}")) if root.is_dir() else []:
        try:
            found.append((LearningSession.model_validate_json(path.read_bytes()), path))
        except (OSError, ValidationError):
            bad.append(str(path))
    return found, bad
