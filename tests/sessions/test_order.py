"""Lifecycle events that arrive ahead of their predecessor wait; only events that can never apply are refused.

On a real SQLite store: a session, edit or pattern transition sent from a status the entity has not reached
yet is refused as retryable (the subscriber leaves it pending), one sent from a status it can never be in
again is refused for good, and any order of a session's events, offered again the way the retrier does,
ends in the state the in-order stream gives, equal to a rebuild of its ledger.
"""

from __future__ import annotations

import asyncio
import tempfile
from itertools import pairwise
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pheromone.contracts import Envelope, PatternObserved, PatternTransitioned, Payload
from pheromone.contracts.records import pattern_id
from pheromone.contracts.sessions import Edit, EditOp, EditPillar, EditTransitioned, SessionTransitioned
from pheromone.services.order import reachable
from pheromone.services.sessions.states import EDIT_FIRST, EDIT_TRANSITIONS, SESSION_TRANSITIONS
from pheromone.services.store.db import ApplyResult, Store
from tests.sessions import helpers as h

WS = "ws-order"
Event = tuple[Envelope, str]


def env(payload: Payload) -> Event:
    e = Envelope(workspace=WS, job="consolidator", payload=payload)
    return e, e.model_dump_json()


def session(sid: str, *path: str) -> list[Event]:
    """The events of a session along `path`, each saying the status it moves from (as the consolidator
    sends them)."""
    out = [env(SessionTransitioned(session_id=sid, scope=WS, to_status=path[0], trigger="on_demand"))]  # type: ignore[arg-type]
    out += [env(SessionTransitioned(session_id=sid, scope=WS, to_status=to, from_status=prev))  # type: ignore[arg-type]
            for prev, to in pairwise(path)]
    return out


def wait_policy(target: str, seconds: float) -> Edit:
    return Edit(id=f"e_{target}", pillar=EditPillar.WAIT_POLICY, op=EditOp.SET_WAIT_POLICY, workspace=WS,
                target=target, seconds=seconds)


def edit(sid: str, e: Edit, *path: str) -> list[Event]:
    out = [env(EditTransitioned(session_id=sid, edit_id=e.id, to_status=path[0], edit=e))]  # type: ignore[arg-type]
    out += [env(EditTransitioned(session_id=sid, edit_id=e.id, to_status=to, from_status=prev))  # type: ignore[arg-type]
            for prev, to in pairwise(path)]
    return out


PID = pattern_id("retry_pattern", "back off")


def pattern_moves(*path: str) -> list[Event]:
    return [env(PatternTransitioned(pattern_id=PID, to_status=to, from_status=prev, reason="r", actor="t"))  # type: ignore[arg-type]
            for prev, to in pairwise(path)]


OBSERVED = env(PatternObserved(pattern_type="retry_pattern", pattern_name="back off", description="d"))
FULL = ("triggered", "harvesting", "diagnosing", "planning", "gating", "executing", "awaiting_review",
        "completed")
SCENARIO: list[Event] = [
    *session("s1", *FULL),
    *edit("s1", wait_policy("E1", 10), "staged", "applied", "rolled_back"),
    *edit("s1", wait_policy("E2", 20), "applied"),
    *edit("s1", wait_policy("E3", 30), "staged", "rejected"),
    *session("s2", "triggered", "harvesting", "failed"),  # starts once s1 has ended: a scope has one at a time
    OBSERVED,
    # No status twice: a status the path comes back to (a revisit) names the predecessor only up to the cycle.
    *pattern_moves("pending", "validated", "quarantined", "retired"),
]
"""One stream's worth of ordered entities, in the order their producers sent them."""

STATE = {
    "sessions": "SELECT session_id, status, scope, trigger FROM session_state ORDER BY 1",
    "session moves": "SELECT event_id, session_id, from_status, to_status FROM session_transitions ORDER BY 1",
    "edits": "SELECT session_id, edit_id, status, before IS NULL, after FROM session_edits ORDER BY 1, 2",
    "edit moves": "SELECT event_id, from_status, to_status FROM edit_transitions ORDER BY 1",
    "guidance": "SELECT workspace, pillar, key, value, edit_id FROM guidance ORDER BY 1, 2, 3",
    "pattern": "SELECT id, quarantine_status FROM patterns ORDER BY 1",
    "pattern moves": "SELECT from_status, to_status FROM pattern_transitions ORDER BY seq",
}
"""What the order of application must not change (ledger seqs differ with the order, by design)."""


def state(db: Path) -> dict[str, list[tuple[object, ...]]]:
    return {name: h.rows(db, sql) for name, sql in STATE.items()}


async def deliver(db: Path, first: list[Event]) -> tuple[list[str], int]:
    """`first` as one batch, then what was refused as retryable offered again one at a time in stream order
    (the retrier's way) until nothing is left; returns the permanent refusals and the rounds it took."""
    position = {e.event_id: i for i, (e, _) in enumerate(SCENARIO)}
    refused: list[str] = []
    rounds = 0
    async with Store(db) as store:
        waiting = retry(first, await store.apply(first), refused)
        while waiting:
            rounds += 1
            assert rounds <= len(SCENARIO), f"no progress: {[e.payload for e, _ in waiting]}"
            again: list[Event] = []
            for event in sorted(waiting, key=lambda ev: position[ev[0].event_id]):
                again += retry([event], await store.apply([event]), refused)
            waiting = again
        before = await store.checksum()
        await store.rebuild()
        assert await store.checksum() == before, "projections differ from a rebuild of the ledger"
    return refused, rounds


def retry(batch: list[Event], result: ApplyResult, refused: list[str]) -> list[Event]:
    refused += [r.reason for r in result.rejected if not r.retry]
    return [batch[r.index] for r in result.rejected if r.retry]


def control() -> dict[str, list[tuple[object, ...]]]:
    with tempfile.TemporaryDirectory() as d:
        refused, rounds = asyncio.run(deliver(Path(d) / "store.db", SCENARIO))
        assert refused == [] and rounds == 0
        return state(Path(d) / "store.db")


CONTROL = control()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.permutations(SCENARIO))
def test_any_arrival_order_ends_where_the_stream_order_does(order: list[Event]) -> None:
    with tempfile.TemporaryDirectory() as d:
        refused, _ = asyncio.run(deliver(Path(d) / "store.db", order))
        assert refused == []
        assert state(Path(d) / "store.db") == CONTROL


async def test_an_early_move_is_retryable_and_an_impossible_one_is_refused_at_once(tmp_path: Path) -> None:
    s1 = session("s1", "triggered", "harvesting", "diagnosing")
    staged, approved = edit("s1", wait_policy("E1", 10), "staged", "applied")
    async with Store(tmp_path / "store.db") as store:
        early = await store.apply([s1[2], s1[1], approved])
        assert [(r.index, r.retry) for r in early.rejected] == [(0, True), (1, True), (2, True)]
        assert "waits for the move to harvesting" in early.rejected[0].reason
        assert "not recorded yet: waits for the move to triggered" in early.rejected[1].reason
        assert (await store.apply([*s1, staged, approved])).rejected == []
        stale = await store.apply([
            env(SessionTransitioned(session_id="s1", scope=WS, to_status="diagnosing", from_status="harvesting")),  # type: ignore[arg-type]
            env(SessionTransitioned(session_id="s1", scope=WS, to_status="gating", from_status="diagnosing")),  # type: ignore[arg-type]
            env(EditTransitioned(session_id="s1", edit_id="e_E1", to_status="rejected", from_status="staged")),  # type: ignore[arg-type]
        ])
        reasons = [(r.retry, r.reason) for r in stale.rejected]
        assert reasons == [
            (False, "session s1: sent from harvesting, but it is diagnosing and can no longer be harvesting"),
            (False, "session s1: illegal session transition diagnosing -> gating (from diagnosing: failed, "
                    "planning)"),
            (False, "edit e_E1 of session s1: sent from staged, but it is applied and can no longer be staged"),
        ]
    assert h.rows(tmp_path / "store.db", "SELECT status FROM session_state") == [("diagnosing",)]


async def test_a_new_session_waits_while_its_scope_is_held(tmp_path: Path) -> None:
    s1, s2 = session("s1", "triggered"), session("s2", "triggered")
    async with Store(tmp_path / "store.db") as store:
        held = await store.apply([*s1, *s2])
        assert [(r.index, r.retry) for r in held.rejected] == [(1, True)]
        assert "already has an active session (s1)" in held.rejected[0].reason
        abandoned = env(SessionTransitioned(session_id="s1", scope=WS, to_status="failed"))  # type: ignore[arg-type]
        assert (await store.apply([abandoned, *s2])).rejected == []
    assert h.rows(tmp_path / "store.db", "SELECT session_id, status FROM session_state ORDER BY 1") == [
        ("s1", "failed"), ("s2", "triggered")]


async def test_a_sender_that_does_not_say_its_predecessor_gets_the_check_it_always_had(tmp_path: Path) -> None:
    s1 = session("s1", "triggered", "harvesting")
    unsaid = [env(SessionTransitioned(session_id="s1", scope=WS, to_status=to))  # type: ignore[arg-type]
              for to in ("harvesting", "triggered", "gating")]
    async with Store(tmp_path / "store.db") as store:
        r = await store.apply([unsaid[0]])  # the session is not recorded: its first event may be on its way
        assert [(x.retry, x.reason) for x in r.rejected] == [
            (True, "session s1: a new session must start as triggered, not harvesting")]
        r = await store.apply([*s1, unsaid[1], unsaid[2]])  # recorded: an illegal move is refused for good
        assert [(x.retry, x.reason.split(": ", 1)[1]) for x in r.rejected] == [
            (False, "illegal session transition harvesting -> triggered (from harvesting: diagnosing, failed)"),
            (False, "illegal session transition harvesting -> gating (from harvesting: diagnosing, failed)")]


def test_reachable_follows_the_legal_moves() -> None:
    assert reachable(SESSION_TRANSITIONS, "completed", frozenset()) == {"rolled_back"}  # type: ignore[arg-type]
    assert reachable(SESSION_TRANSITIONS, "failed", frozenset()) == frozenset()  # type: ignore[arg-type]
    assert reachable(EDIT_TRANSITIONS, None, EDIT_FIRST) == set(EDIT_TRANSITIONS)
    assert reachable(EDIT_TRANSITIONS, "staged", EDIT_FIRST) == {"applied", "rejected", "rolled_back"}  # type: ignore[arg-type]
