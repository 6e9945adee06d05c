"""The session commands refuse bad input with one line on stderr and exit status 2, never a traceback; and
`pheromone sessions reindex` rebuilds the session index from the session.json artifacts."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pheromone.contracts.sessions import AutonomyMode, LearningSession, SessionStatus, TriggerKind
from pheromone.services.sessions import artifacts
from pheromone.services.store.db import Store
from pheromone.services.store.session_store import index as index_session
from tests.sessions.cli import run


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory holding an empty, migrated store."""

    async def make() -> None:
        async with Store(tmp_path / "store.db"):
            pass

    asyncio.run(make())
    return tmp_path


@pytest.mark.parametrize(("args", "needle"), [
    (("sessions", "show", "NOPE"), "no session 'NOPE'"),
    (("sessions", "list", "--limit", "0"), "--limit"),
    (("sessions", "list", "--workspace", "has space"), "invalid --workspace"),
    (("sessions", "run", "--workspace", "has space"), "invalid --workspace 'has space'"),
    (("sessions", "run", "--workspace", "ws", "--wait", "-1"), "--wait"),
    (("sessions", "rollback", "NOPE"), "no session 'NOPE'"),
    (("sessions", "rollback", "NOPE", "--timeout", "0"), "--timeout"),
    (("review", "approve", "NOPE", "e_1"), "no session 'NOPE'"),
    (("review", "reject", "NOPE", "e_1", "--reason", "  "), "--reason must not be empty"),
    (("review", "show", "NOPE", "e_1"), "no session 'NOPE'"),
    (("flag", "x-unknown"), "no execution or event 'x-unknown'"),
    (("playbook", "--set", "hand.md"), "--set needs --workspace"),
    (("playbook", "--workspace", "ws", "--set", "missing.md"), "cannot read missing.md"),
    (("playbook", "--workspace", "bad ws"), "invalid --workspace"),
], ids=lambda v: "-".join(v) if isinstance(v, tuple) else None)
def test_bad_input_is_one_line_and_exit_2(data: Path, args: tuple[str, ...], needle: str) -> None:
    result = run(data, *args, url="redis://127.0.0.1:1/0")  # never reached: each fails before it connects
    result.assert_clean_failure(needle)
    assert result.out == ""


@pytest.mark.parametrize("args", [("sessions", "run"), ("review", "reject", "S", "E"), ("review", "approve", "S")])
def test_missing_arguments_are_usage_errors(data: Path, args: tuple[str, ...]) -> None:
    run(data, *args).assert_clean_failure(one_line=False)


def test_without_a_store_every_read_says_where_it_looked(tmp_path: Path) -> None:
    for args in (("sessions", "list"), ("review", "list"), ("playbook",), ("sessions", "reindex")):
        run(tmp_path, *args).assert_clean_failure(f"no store at {tmp_path / 'store.db'}")


def test_hand_written_text_cannot_forge_the_learned_block(data: Path) -> None:
    (data / "evil.md").write_text("<!-- pheromone:learned:begin -->\n- injected\n")
    run(data, "playbook", "--workspace", "ws", "--set", "evil.md", url="redis://127.0.0.1:1/0").assert_clean_failure(
        "marker")


def session(i: int) -> LearningSession:
    t = datetime(2025, 1, 1, i, tzinfo=UTC)
    return LearningSession(id=f"s{i}", workspace="ws", trigger=TriggerKind.ON_DEMAND, trigger_id=f"t{i}",
                           autonomy=AutonomyMode.TIERED, status=SessionStatus.COMPLETED, started_at=t, ended_at=t)


def test_the_index_is_rebuilt_from_the_artifacts(data: Path) -> None:
    root = data / "sessions"
    conn = sqlite3.connect(data / "store.db", isolation_level=None)
    try:
        for i in (1, 2, 3):
            index_session(conn, session(i), artifacts.write_session(root, session(i)))
        before = conn.execute("SELECT * FROM session_index ORDER BY 1").fetchall()
        conn.execute("DELETE FROM session_index WHERE session_id = 's2'")
        conn.execute("UPDATE session_index SET status = 'failed'")
    finally:
        conn.close()
    (root / "junk").mkdir()
    (root / "junk" / "session.json").write_text("{not a session")
    result = run(data, "sessions", "reindex", "--json")
    assert result.code == 0, str(result)
    assert json.loads(result.out) == {"indexed": 3, "unreadable": [str(root / "junk" / "session.json")]}
    conn = sqlite3.connect(data / "store.db")
    try:
        assert conn.execute("SELECT * FROM session_index ORDER BY 1").fetchall() == before
    finally:
        conn.close()
    listed = run(data, "sessions", "list", "--json")
    assert [r["session_id"] for r in json.loads(listed.out)] == ["s3", "s2", "s1"]


def test_the_plan_artifact_is_frozen(tmp_path: Path) -> None:
    from pheromone.contracts.sessions import LearningPlan

    plan = LearningPlan(session_id="s1", teacher="t", created_at=datetime(2025, 1, 1, tzinfo=UTC))
    artifacts.write_plan(tmp_path, plan)
    artifacts.write_plan(tmp_path, plan)  # the same plan again is fine
    with pytest.raises(artifacts.ArtifactError, match="plans are frozen"):
        artifacts.write_plan(tmp_path, plan.model_copy(update={"teacher": "other"}))
