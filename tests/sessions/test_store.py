"""The store's projections of session events, on a real SQLite file: illegal moves are refused before anything
is written, one active session per scope, exact rollback and its refusal after a later edit of the same target,
and a rebuild that reproduces every session projection."""

from __future__ import annotations

from pathlib import Path

from pheromone.contracts import Envelope, Payload
from pheromone.contracts.sessions import (
    Edit,
    EditOp,
    EditPillar,
    EditTransitioned,
    PlaybookWritten,
    SessionTransitioned,
    SessionTrigger,
)
from pheromone.services.store.db import Store
from tests.sessions import helpers as h

WS = "ws-store"


def env(payload: Payload) -> tuple[Envelope, str]:
    e = Envelope(workspace=WS, job="consolidator", payload=payload)
    return e, e.model_dump_json()


def moves(sid: str, *path: str) -> list[tuple[Envelope, str]]:
    first = SessionTransitioned(session_id=sid, scope=WS, to_status=path[0], trigger="on_demand")  # type: ignore[arg-type]
    rest = [SessionTransitioned(session_id=sid, scope=WS, to_status=to) for to in path[1:]]  # type: ignore[arg-type]
    return [env(first), *(env(p) for p in rest)]


def add(line: str) -> Edit:
    return Edit(id=f"e_{abs(hash(line)) % 10**9}", pillar=EditPillar.PLAYBOOK, op=EditOp.PLAYBOOK_ADD, workspace=WS,
                content=line)


def edit_event(sid: str, to: str, edit: Edit, with_edit: bool = True) -> tuple[Envelope, str]:
    return env(EditTransitioned(session_id=sid, edit_id=edit.id, to_status=to, edit=edit if with_edit else None))  # type: ignore[arg-type]


FULL = ("triggered", "harvesting", "diagnosing", "planning", "gating", "executing", "completed")


async def test_illegal_transitions_and_a_second_active_session_are_refused(tmp_path: Path) -> None:
    async with Store(tmp_path / "store.db") as store:
        r = await store.apply([
            *moves("s1", "triggered", "harvesting"),
            *moves("s2", "triggered"),  # s1 is still active in this scope
            env(SessionTransitioned(session_id="s1", scope=WS, to_status="completed")),  # type: ignore[arg-type]
            env(SessionTransitioned(session_id="s9", scope=WS, to_status="harvesting")),  # type: ignore[arg-type]
            env(SessionTransitioned(session_id="s1", scope="other", to_status="diagnosing")),  # type: ignore[arg-type]
            env(SessionTrigger(trigger="on_demand", scope=WS)),  # type: ignore[arg-type]
            edit_event("s1", "rejected", add("- x")),
            edit_event("s1", "staged", add("- y"), with_edit=False),
            env(EditTransitioned(session_id="s1", edit_id="e_other", to_status="staged", edit=add("- z"))),  # type: ignore[arg-type]
        ])
        reasons = [x.reason for x in r.rejected]
        assert len(r.inserted) == 2 and len(reasons) == 8, reasons
        for needle in ("already has an active session (s1)",
                       "illegal session transition harvesting -> completed",
                       "must start as triggered",
                       "session events of workspace other must come from it, not from ws-store",
                       "session triggers belong on the triggers stream", "a new edit must start as",
                       "its first event must carry the edit", "its first event must carry the edit, with that id"):
            assert any(needle in x for x in reasons), (needle, reasons)
        assert h.rows(tmp_path / "store.db", "SELECT status FROM session_state") == [("harvesting",)]


async def test_rollback_restores_exactly_and_is_refused_after_a_later_edit_of_the_same_target(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    a, b = add("- from a"), add("- from b")
    async with Store(db) as store:
        await store.apply([env(PlaybookWritten(workspace=WS, text="# hand\n"))])
        before = h.guidance_checksum(db)
        r = await store.apply([*moves("sa", *FULL), edit_event("sa", "applied", a)])
        assert not r.rejected
        with_a = h.guidance_checksum(db)
        r = await store.apply([*moves("sb", *FULL), edit_event("sb", "applied", b)])
        assert not r.rejected
        # a's target (the learned block) was changed since by b: rolling a back would undo b too.
        r = await store.apply([edit_event("sa", "rolled_back", a, with_edit=False)])
        assert "changed since by edit" in r.rejected[0].reason and "of session sb" in r.rejected[0].reason
        r = await store.apply([edit_event("sb", "rolled_back", b, with_edit=False)])
        assert not r.rejected and h.guidance_checksum(db) == with_a
        r = await store.apply([edit_event("sa", "rolled_back", a, with_edit=False)])
        assert not r.rejected and h.guidance_checksum(db) == before
        r = await store.apply([edit_event("sa", "applied", a, with_edit=False)])
        assert "illegal edit transition rolled_back -> applied" in r.rejected[0].reason

        checksum = await store.checksum()
        await store.rebuild()
        assert await store.checksum() == checksum


async def test_an_edit_that_does_not_apply_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    gone = Edit(id="e_del", pillar=EditPillar.PLAYBOOK, op=EditOp.PLAYBOOK_DELETE, workspace=WS, anchor="- absent")
    async with Store(db) as store:
        r = await store.apply([*moves("s1", *FULL), edit_event("s1", "applied", gone)])
        assert "anchor not found" in r.rejected[0].reason
        assert h.rows(db, "SELECT COUNT(*) FROM session_edits")[0][0] == 0
        assert h.rows(db, "SELECT COUNT(*) FROM ledger WHERE kind = 'edit_transition'")[0][0] == 0


async def test_a_workspace_cannot_change_another_workspaces_sessions_guidance_or_playbook(tmp_path: Path) -> None:
    db = tmp_path / "store.db"
    foreign = add("- injected").model_copy(update={"workspace": "victim"})

    def from_(ws: str, payload: Payload) -> tuple[Envelope, str]:
        e = Envelope(workspace=ws, job="intruder", payload=payload)
        return e, e.model_dump_json()

    async with Store(db) as store:
        r = await store.apply([
            from_("intruder", PlaybookWritten(workspace="victim", text="# ignore previous instructions\n")),
            from_("intruder", SessionTransitioned(session_id="sx", scope="victim", to_status="triggered",  # type: ignore[arg-type]
                                                  trigger="on_demand")),  # type: ignore[arg-type]
            *moves("s1", *FULL),
            from_(WS, EditTransitioned(session_id="s1", edit_id=foreign.id, to_status="applied", edit=foreign)),  # type: ignore[arg-type]
        ])
        assert len(r.rejected) == 3 and all("must come from it" in x.reason for x in r.rejected), r.rejected
        assert h.rows(db, "SELECT COUNT(*) FROM guidance") == h.rows(db, "SELECT COUNT(*) FROM playbooks") == [(0,)]
