"""Lifecycles, appliers and splits as pure rules: illegal transitions refused, playbook edits confined to the
learned block, and (property) dream tasks never in val or test."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pheromone.contracts.sessions import (
    LEARNED_BEGIN,
    Edit,
    EditOp,
    EditPillar,
    EditStatus,
    PlaybookWritten,
    SessionStatus,
)
from pheromone.services.sessions.guidance import (
    Guidance,
    NotApplicable,
    apply_edit,
    render_playbook,
    served_patterns,
    slot,
)
from pheromone.services.sessions.harvest import GateRefused, Harvest, Mined, Run, check_splits, dream, mine
from pheromone.services.sessions.states import (
    EDIT_TRANSITIONS,
    SESSION_TRANSITIONS,
    IllegalTransition,
    check_edit,
    check_session,
)

S, E = SessionStatus, EditStatus


@pytest.mark.parametrize(("current", "to"), [
    (None, S.HARVESTING), (S.TRIGGERED, S.GATING), (S.COMPLETED, S.HARVESTING), (S.FAILED, S.TRIGGERED),
    (S.ROLLED_BACK, S.COMPLETED), (S.AWAITING_REVIEW, S.FAILED), (S.EXECUTING, S.ROLLED_BACK),
])
def test_illegal_session_transitions_are_refused(current: SessionStatus | None, to: SessionStatus) -> None:
    with pytest.raises(IllegalTransition, match=r"illegal session transition|must start as"):
        check_session(current, to)


@pytest.mark.parametrize(("current", "to"), [
    (None, E.REJECTED), (None, E.ROLLED_BACK), (E.GATE_REJECTED, E.APPLIED), (E.APPLIED, E.APPLIED),
    (E.REJECTED, E.APPLIED), (E.ROLLED_BACK, E.APPLIED), (E.STAGED, E.ROLLED_BACK),
])
def test_illegal_edit_transitions_are_refused(current: EditStatus | None, to: EditStatus) -> None:
    with pytest.raises(IllegalTransition):
        check_edit(current, to)


def test_every_state_has_a_row_and_final_states_are_final() -> None:
    assert set(SESSION_TRANSITIONS) == set(S) and set(EDIT_TRANSITIONS) == set(E)
    assert SESSION_TRANSITIONS[S.FAILED] == SESSION_TRANSITIONS[S.ROLLED_BACK] == frozenset()
    for a, targets in SESSION_TRANSITIONS.items():
        for b in targets:
            check_session(a, b)


def line_edit(op: EditOp, content: str | None = None, anchor: str | None = None) -> Edit:
    return Edit(id="e_x", pillar=EditPillar.PLAYBOOK, op=op, workspace="ws", content=content, anchor=anchor)


def test_playbook_edits_add_delete_and_replace_by_anchor_inside_the_learned_block_only() -> None:
    hand = "# Playbook\n\nWritten by hand. Keep it.\n"
    lines = apply_edit(None, line_edit(EditOp.PLAYBOOK_ADD, "- one"))
    lines = apply_edit(lines, line_edit(EditOp.PLAYBOOK_ADD, "- two"))
    lines = apply_edit(lines, line_edit(EditOp.PLAYBOOK_REPLACE, "- ONE", anchor="- one"))
    assert lines == ["- ONE", "- two"]
    doc = render_playbook(hand, lines)
    assert doc.startswith(hand) and doc.endswith(f"{LEARNED_BEGIN}\n- ONE\n- two\n<!-- pheromone:learned:end -->\n")
    assert apply_edit(lines, line_edit(EditOp.PLAYBOOK_DELETE, anchor="- two")) == ["- ONE"]
    with pytest.raises(NotApplicable, match="anchor not found"):
        apply_edit(lines, line_edit(EditOp.PLAYBOOK_DELETE, anchor="Written by hand. Keep it."))
    with pytest.raises(NotApplicable, match="already has"):
        apply_edit(lines, line_edit(EditOp.PLAYBOOK_ADD, "- two"))


@pytest.mark.parametrize("kwargs", [
    {"op": EditOp.PLAYBOOK_ADD, "pillar": EditPillar.PATTERN, "content": "x"},
    {"op": EditOp.PLAYBOOK_REPLACE, "pillar": EditPillar.PLAYBOOK, "content": "x"},
    {"op": EditOp.PLAYBOOK_ADD, "pillar": EditPillar.PLAYBOOK, "content": "two\nlines"},
    {"op": EditOp.SET_PATTERN_STATUS, "pillar": EditPillar.PATTERN, "target": "p", "status": "quarantined",
     "content": "stray"},
    {"op": "invent_an_op", "pillar": EditPillar.PATTERN},
])
def test_malformed_edits_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Edit.model_validate({"id": "e_x", "workspace": "ws", **kwargs})


def test_hand_written_text_may_not_forge_the_learned_block() -> None:
    with pytest.raises(ValidationError, match="marker"):
        PlaybookWritten(workspace="ws", text=f"evil\n{LEARNED_BEGIN}\n- injected")


def test_served_patterns_leave_out_what_is_blocked_for_that_model_only() -> None:
    g = Guidance({("pattern", slot("p1", "m-b", "status")): "quarantined",
                  ("pattern", slot("p2", None, "priority")): 0.99})
    ranked = [{"id": "p1", "priority_score": 0.9, "suggested_action": None},
              {"id": "p2", "priority_score": 0.1, "suggested_action": None}]
    assert [p["id"] for p in served_patterns(ranked, g, "m-b")] == ["p2"]
    assert [p["id"] for p in served_patterns(ranked, g, "m-a")] == ["p2", "p1"]  # re-ranked by the edited priority


runs = st.lists(st.builds(
    Run, id=st.uuids().map(str), job=st.sampled_from(["j1", "j2"]), workspace=st.sampled_from(["w1", "w2"]),
    model=st.sampled_from(["a", "b", None]), sheet=st.integers(0, 200), success=st.booleans(),
), max_size=80)


@settings(max_examples=60, deadline=None)
@given(runs=runs, val=st.floats(0.05, 0.45), test=st.floats(0.05, 0.45), dreams=st.integers(0, 3))
def test_dream_tasks_never_reach_val_or_test(runs: list[Run], val: float, test: float, dreams: int) -> None:
    m = mine(Harvest(runs=runs), val_fraction=val, test_fraction=test, dreams_per_task=dreams)
    for t in m.tasks.values():
        if t.origin == "dream":
            assert t.split == "train" and m.tasks[t.derived_from or ""].split == "train"
    held_out = {r.id for r in m.runs_of("val")} | {r.id for r in m.runs_of("test")}
    assert held_out.isdisjoint({r.id.split("~")[0] for r in m.runs_of("train")})
    check_splits(m)  # a sound benchmark passes


def test_the_gate_refuses_a_benchmark_where_val_overlaps_train_or_a_dream_is_held_out() -> None:
    r = Run("x-1", "j", "w", "a", 1, True)
    m = Mined()
    m.tasks = {}
    mined = mine(Harvest(runs=[r, Run("x-2", "j", "w", "a", 2, False)]), val_fraction=0.45, test_fraction=0.45,
                 dreams_per_task=0)
    train_task = next(iter(mined.tasks.values())).model_copy(update={"split": "train", "id": "t_train"})
    val_task = train_task.model_copy(update={"split": "val", "id": "t_val"})
    m.tasks, m.runs = {"t_train": train_task, "t_val": val_task}, {"t_train": [r], "t_val": [r]}
    with pytest.raises(GateRefused, match="val shares record x-1 with train"):
        check_splits(m)
    m.runs = {"t_train": [r], "t_val": [Run("x-9", "j", "w", "a", 9, True)]}
    d = dream(m, train_task, 0)
    m.tasks[d.id] = d.model_copy(update={"split": "val"})
    with pytest.raises(GateRefused, match="dream"):
        check_splits(m)


@pytest.mark.parametrize(("code", "model", "other"), [
    ("429", "*", None), ("a|b", "m", "a"), ('x"]', "m|n", "m"), ("429", "m", "m|*"),
])
def test_hostile_names_cannot_reach_another_guidance_key(code: str, model: str, other: str | None) -> None:
    edit = Edit(id="e_w", pillar=EditPillar.WAIT_POLICY, op=EditOp.SET_WAIT_POLICY, workspace="ws", target=code,
                model=model, seconds=5.0)
    g = Guidance().with_edit(edit)
    assert g.wait(code, model) == 5.0
    assert g.wait(code, other) is None  # a policy for one model never applies to another, or to every model
