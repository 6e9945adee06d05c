"""The guidance sessions edit, and one applier per `EditOp`.

The guidance of a workspace is a set of entries `(pillar, key) -> value` (the store's `guidance` table) plus
the hand-written text of its playbook (`playbooks`), which no edit touches:

    pattern      ["<pattern id>", "<model>" or null, "status"]  -> a QuarantineStatus value (quarantined or
                                                                   retired: not served to that model, or to any)
                 ["<pattern id>", null, "priority"]              -> the priority served instead of the derived one
                 ["<pattern id>", null, "suggested_action"]      -> the action served instead of the observed one
    wait_policy  ["<error code>", "<model>" or null, "wait"]    -> seconds to wait
    playbook     "learned"                                      -> the lines of the learned block, in order

Keys are JSON arrays (`slot`), so no error code or model name, whatever characters it holds, can collide
with another key; null means "every model".

`apply_edit(before, edit)` is the one place an edit's effect is defined: the store's projection calls it to
apply an event, the gate calls it to build candidate states. Rollback restores the exact `before` value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pheromone.contracts.sessions import LEARNED_BEGIN, LEARNED_END, Edit, EditOp, EditPillar

Value = Any
"""A JSON value: a status string, a number, a text, or a list of playbook lines."""
LEARNED = "learned"
BLOCKING = frozenset({"quarantined", "retired"})
"""A pattern whose status for a (workspace, model) is one of these is not served there."""


_PATTERN, _WAIT = EditPillar.PATTERN.value, EditPillar.WAIT_POLICY.value


class NotApplicable(ValueError):
    """The edit cannot apply to the current value (anchor missing, line already present, no change)."""


@lru_cache(maxsize=65_536)
def slot(target: str, model: str | None, field: str) -> str:
    """The guidance key of one value: a JSON array, unambiguous whatever the names hold."""
    return json.dumps([target, model, field], separators=(",", ":"), ensure_ascii=False)


def unslot(key: str) -> tuple[str, str | None, str]:
    target, model, field = json.loads(key)
    return target, model, field


def key_of(edit: Edit) -> str:
    match edit.op:
        case EditOp.SET_PATTERN_STATUS:
            return slot(edit.target or "", edit.model, "status")
        case EditOp.SET_PATTERN_PRIORITY:
            return slot(edit.target or "", None, "priority")
        case EditOp.SET_SUGGESTED_ACTION:
            return slot(edit.target or "", None, "suggested_action")
        case EditOp.SET_WAIT_POLICY:
            return slot(edit.target or "", edit.model, "wait")
        case _:
            return LEARNED


def apply_edit(before: Value | None, edit: Edit) -> Value:
    """The value after `edit`, given the value before (None: no entry). Raises NotApplicable."""
    match edit.op:
        case EditOp.SET_PATTERN_STATUS:
            after: Value = edit.status.value if edit.status is not None else None
        case EditOp.SET_PATTERN_PRIORITY:
            after = edit.priority
        case EditOp.SET_SUGGESTED_ACTION:
            after = edit.content
        case EditOp.SET_WAIT_POLICY:
            after = edit.seconds
        case _:
            return _playbook(list(before or []), edit)
    if before == after:
        raise NotApplicable(f"{edit.op.value} on {edit.target}: the value is already {after!r}")
    return after


def _playbook(lines: list[str], edit: Edit) -> list[str]:
    if edit.op is EditOp.PLAYBOOK_ADD:
        if edit.content in lines:
            raise NotApplicable(f"the learned block already has the line {edit.content!r}")
        return [*lines, edit.content]  # type: ignore[list-item]
    if edit.anchor not in lines:
        raise NotApplicable(f"the learned block has no line {edit.anchor!r} (anchor not found)")
    at = lines.index(edit.anchor)
    if edit.op is EditOp.PLAYBOOK_DELETE:
        return lines[:at] + lines[at + 1 :]
    if edit.content in lines:
        raise NotApplicable(f"the learned block already has the line {edit.content!r}")
    return [*lines[:at], edit.content, *lines[at + 1 :]]  # type: ignore[list-item]


@dataclass(frozen=True)
class Guidance:
    """One workspace's guidance entries, immutable: `with_edit` returns the state after an edit."""

    entries: Mapping[tuple[str, str], Value] = field(default_factory=dict)

    def get(self, pillar: EditPillar | str, key: str) -> Value | None:
        return self.entries.get((str(pillar), key))

    def with_edit(self, edit: Edit) -> Guidance:
        slot = (edit.pillar.value, key_of(edit))
        return Guidance({**self.entries, slot: apply_edit(self.entries.get(slot), edit)})

    def blocks(self, pattern_id: str, model: str | None) -> bool:
        """Is `pattern_id` kept from jobs running `model` (a status for that model, or for every model)?"""
        for scope in ((model,) if model else ()) + (None,):
            status = self.entries.get((_PATTERN, slot(pattern_id, scope, "status")))
            if status is not None:
                return status in BLOCKING
        return False

    def wait(self, error_code: str, model: str | None) -> float | None:
        for scope in ((model,) if model else ()) + (None,):
            value = self.entries.get((_WAIT, slot(error_code, scope, "wait")))
            if value is not None:
                return float(value)
        return None

    @property
    def learned(self) -> list[str]:
        return list(self.entries.get((EditPillar.PLAYBOOK.value, LEARNED)) or [])


def render_playbook(hand: str, learned: Iterable[str]) -> str:
    """The markdown jobs fetch: the hand-written text as written, then the marked learned block."""
    body = "\n".join(learned)
    sep = "" if not hand else "\n" if hand.endswith("\n") else "\n\n"
    block = f"{LEARNED_BEGIN}\n{body}\n{LEARNED_END}\n" if body else f"{LEARNED_BEGIN}\n{LEARNED_END}\n"
    return hand + sep + block  # the hand-written text is a prefix, byte for byte


def served_patterns(patterns: list[dict[str, Any]], g: Guidance, model: str | None) -> list[dict[str, Any]]:
    """The store's ranked patterns as a job running `model` is served them: blocked ones left out, the
    priority and suggested action of an edit served instead of the derived ones, re-ranked by priority."""
    out = []
    for p in patterns:
        pid = p["id"]
        if g.blocks(pid, model):
            continue
        q = dict(p)
        priority = g.get(EditPillar.PATTERN, slot(pid, None, "priority"))
        action = g.get(EditPillar.PATTERN, slot(pid, None, "suggested_action"))
        if priority is not None:
            q["priority_score"] = float(priority)
        if action is not None:
            q["suggested_action"] = action
        q["guided"] = priority is not None or action is not None
        out.append(q)
    out.sort(key=lambda q: (-q["priority_score"], q["id"]))
    return out
