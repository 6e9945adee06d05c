"""Learning sessions (seeds 001 and 002): the consolidator's vocabulary, as wire contracts.

Seed 001 names the enums and models of a session (EditPillar, EditRiskTier, EditOp, TriggerKind, AutonomyMode,
SessionStatus, Edit, FailureCluster, LearningPlan, BenchmarkSnapshot, EditOutcome, LearningSession); seed 002
names the sleep cycle's records (SessionDigest, TaskRecord, ReplayResult, EditRecord, SleepReport). Where the
seeds list a name without its members, docs/SESSIONS.md says which members pheromone chose and why.

Four of these travel in envelopes (`contracts.events`): `SessionTrigger` (on the triggers stream, read by the
consolidator), `SessionTransitioned` and `EditTransitioned` (every lifecycle step of a session and of its
edits: ledger events the store projects) and `PlaybookWritten` (the hand-written part of a playbook).
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, model_validator

from pheromone.contracts.records import QuarantineStatus
from pheromone.contracts.types import (
    Contract,
    Identifier,
    Name,
    NonNegInt,
    Ratio,
    ShortList,
    Tags,
    Text,
    UtcDatetime,
)

MAX_PLAYBOOK_LINE = 1_000
PLAYBOOK_TEXT = 32_000
"""Longest hand-written playbook text (characters)."""
LEARNED_BEGIN = "<!-- pheromone:learned:begin -->"
LEARNED_END = "<!-- pheromone:learned:end -->"
"""The markers around a playbook's learned block; hand-written text may not contain them."""


class EditPillar(StrEnum):
    """Which part of the guidance pheromone serves an edit targets."""

    PATTERN = "pattern"
    WAIT_POLICY = "wait_policy"
    PLAYBOOK = "playbook"


class EditRiskTier(StrEnum):
    """How an edit gets applied: at once, through the review queue, or only ever by a person."""

    AUTO = "auto"
    REVIEW = "review"
    MANUAL = "manual"


class EditOp(StrEnum):
    """The closed set of operations a teacher may propose; each has one applier (`services.sessions.guidance`)."""

    SET_PATTERN_STATUS = "set_pattern_status"
    SET_PATTERN_PRIORITY = "set_pattern_priority"
    SET_SUGGESTED_ACTION = "set_suggested_action"
    SET_WAIT_POLICY = "set_wait_policy"
    PLAYBOOK_ADD = "playbook_add"
    PLAYBOOK_DELETE = "playbook_delete"
    PLAYBOOK_REPLACE = "playbook_replace"


class TriggerKind(StrEnum):
    SCHEDULED = "scheduled"
    CLUSTER = "cluster"
    USER_FLAG = "user_flag"
    ON_DEMAND = "on_demand"


class AutonomyMode(StrEnum):
    """auto: every gated edit but manual-tier ones applies; tiered: only auto-tier ones; manual: none."""

    AUTO = "auto"
    TIERED = "tiered"
    MANUAL = "manual"


class SessionStatus(StrEnum):
    """A session's lifecycle; the legal moves are `services.sessions.states.SESSION_TRANSITIONS`."""

    TRIGGERED = "triggered"
    HARVESTING = "harvesting"
    DIAGNOSING = "diagnosing"
    PLANNING = "planning"
    GATING = "gating"
    EXECUTING = "executing"
    AWAITING_REVIEW = "awaiting_review"
    COMPLETED = "completed"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


class EditStatus(StrEnum):
    """EditOutcome.status: the canonical lifecycle of one edit (`services.sessions.states.EDIT_TRANSITIONS`)."""

    GATE_REJECTED = "gate_rejected"
    STAGED = "staged"
    APPLIED = "applied"
    REJECTED = "rejected"
    ROLLED_BACK = "rolled_back"


_Pillar = Annotated[EditPillar, Field(strict=False)]
_Tier = Annotated[EditRiskTier, Field(strict=False)]
_Op = Annotated[EditOp, Field(strict=False)]
_Trigger = Annotated[TriggerKind, Field(strict=False)]
_Autonomy = Annotated[AutonomyMode, Field(strict=False)]
_Session = Annotated[SessionStatus, Field(strict=False)]
_EditStatus = Annotated[EditStatus, Field(strict=False)]
_Quarantine = Annotated[QuarantineStatus, Field(strict=False)]
Line = Annotated[str, Field(min_length=1, max_length=MAX_PLAYBOOK_LINE, pattern=r"^[^\r\n]+$")]
"""One line of a playbook's learned block: no line breaks."""

OP_PILLAR: dict[EditOp, EditPillar] = {
    EditOp.SET_PATTERN_STATUS: EditPillar.PATTERN,
    EditOp.SET_PATTERN_PRIORITY: EditPillar.PATTERN,
    EditOp.SET_SUGGESTED_ACTION: EditPillar.PATTERN,
    EditOp.SET_WAIT_POLICY: EditPillar.WAIT_POLICY,
    EditOp.PLAYBOOK_ADD: EditPillar.PLAYBOOK,
    EditOp.PLAYBOOK_DELETE: EditPillar.PLAYBOOK,
    EditOp.PLAYBOOK_REPLACE: EditPillar.PLAYBOOK,
}
"""Each op belongs to exactly one pillar."""

_REQUIRED: dict[EditOp, tuple[str, ...]] = {
    EditOp.SET_PATTERN_STATUS: ("target", "status"),
    EditOp.SET_PATTERN_PRIORITY: ("target", "priority"),
    EditOp.SET_SUGGESTED_ACTION: ("target", "content"),
    EditOp.SET_WAIT_POLICY: ("target", "seconds"),
    EditOp.PLAYBOOK_ADD: ("content",),
    EditOp.PLAYBOOK_DELETE: ("anchor",),
    EditOp.PLAYBOOK_REPLACE: ("anchor", "content"),
}
_FIELDS = ("target", "model", "status", "priority", "seconds", "content", "anchor")


class Edit(Contract):
    """One atomic, typed edit to the guidance of one workspace.

    `target`: a pattern id (pattern ops) or an error code (wait policy); `model` scopes a pattern status or a
    wait policy to one model (None: every model). The planner overwrites `risk_tier` from the fixed
    (pillar, op) table; a teacher cannot choose it. `supports`: for an edit whose effect replay cannot
    measure (playbook text, priority, suggested action), the measurable edit it documents: the gate accepts it
    exactly when it accepts that one.
    """

    id: Identifier
    pillar: _Pillar
    op: _Op
    workspace: Identifier
    target: Name | None = None
    model: Name | None = None
    status: _Quarantine | None = None
    priority: Ratio | None = None
    seconds: Annotated[float, Field(gt=0.0, le=86_400.0)] | None = None
    content: Line | None = None
    anchor: Line | None = None
    rationale: Text = ""
    references: ShortList = Field(default_factory=list)
    supports: Identifier | None = None
    risk_tier: _Tier = EditRiskTier.MANUAL

    @model_validator(mode="after")
    def _shape(self) -> Edit:
        if OP_PILLAR[self.op] != self.pillar:
            owner = OP_PILLAR[self.op].value
            raise ValueError(f"op {self.op.value} belongs to pillar {owner}, not {self.pillar.value}")
        needed = _REQUIRED[self.op]
        missing = [f for f in needed if getattr(self, f) is None]
        if missing:
            raise ValueError(f"op {self.op.value} needs {', '.join(missing)}")
        allowed = set(needed) | ({"model"} if self.op in (EditOp.SET_PATTERN_STATUS, EditOp.SET_WAIT_POLICY) else set())
        extra = [f for f in _FIELDS if f not in allowed and getattr(self, f) is not None]
        if extra:
            raise ValueError(f"op {self.op.value} takes no {', '.join(extra)}")
        return self


def edit_id(op: EditOp | str, workspace: str, *parts: object) -> str:
    """A stable id for an edit: the same proposal in two sessions has the same id."""
    text = "\x1f".join([str(op), workspace, *("" if p is None else str(p) for p in parts)])
    return "e_" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


class FailureCluster(Contract):
    """Failing tasks that share a signature (model, error category, pattern, tags), with rates from records.

    `failure_rate` is the failure share of the runs that match the signature; `baseline_rate` the failure
    share of comparable runs (same workspace and model) that do not. A cluster without failing runs is
    never built (`services.sessions.diagnose`).
    """

    id: Identifier
    workspace: Identifier
    model: Name | None = None
    error_code: Name | None = None
    pattern_id: Identifier | None = None
    tags: Tags = Field(default_factory=list)
    task_ids: ShortList = Field(default_factory=list)
    runs: NonNegInt
    failures: NonNegInt
    failure_rate: Ratio
    baseline_runs: NonNegInt = 0
    baseline_rate: Ratio | None = None
    hypothesis: Text = ""


class LearningPlan(Contract):
    """The teacher's frozen output: written once to `<session>/plan.json`, never re-prompted."""

    session_id: Identifier
    teacher: Name
    created_at: UtcDatetime
    clusters: list[FailureCluster] = Field(default_factory=list, max_length=1_000)
    edits: list[Edit] = Field(default_factory=list, max_length=1_000)
    dropped: ShortList = Field(default_factory=list)
    """Why proposals were dropped (no evidence, unknown target, duplicate)."""


class BenchmarkSnapshot(Contract):
    """A score from replaying one split against one guidance state (docs/SESSIONS.md defines the score)."""

    label: Name
    split: Literal["val", "test"]
    benchmark_version: Identifier
    """Hash of the split's task ids: two snapshots compare only when their versions are equal."""
    score: Ratio
    tasks: NonNegInt
    runs: NonNegInt
    per_cluster: dict[str, Ratio] = Field(default_factory=dict)


class EditOutcome(Contract):
    edit: Edit
    status: _EditStatus
    reason: Text = ""
    score_before: Ratio | None = None
    score_after: Ratio | None = None
    decided_by: Name | None = None
    decided_at: UtcDatetime | None = None


class SessionDigest(Contract):
    """What one job did since the last session, harvested from the ledger."""

    job: Identifier
    workspace: Identifier
    started_at: UtcDatetime
    ended_at: UtcDatetime
    events: NonNegInt
    executions: NonNegInt
    failures: NonNegInt
    models: ShortList = Field(default_factory=list)
    error_codes: ShortList = Field(default_factory=list)
    patterns_applied: ShortList = Field(default_factory=list)
    feedback_signals: ShortList = Field(default_factory=list)


class TaskRecord(Contract):
    """A recurring situation mined from executions: id = stable hash of (project, intent)."""

    id: Identifier
    project: Identifier
    intent: Name
    model: Name | None = None
    outcome: Literal["success", "fail", "mixed", "unknown"] = "unknown"
    tags: ShortList = Field(default_factory=list)
    source_sessions: ShortList = Field(default_factory=list)
    split: Literal["train", "val", "test"] = "train"
    origin: Literal["real", "dream"] = "real"
    derived_from: Identifier | None = None
    runs: NonNegInt = 0
    failures: NonNegInt = 0


class ReplayResult(Contract):
    """One task replayed under one guidance state: `hard` is its expected success rate (0..1)."""

    id: Identifier
    hard: Ratio
    soft: Ratio
    fail_reason: Text = ""


class EditRecord(Contract):
    """Seed 002's bounded edit as reported: target, op, content, anchor, rationale."""

    target: Name
    op: Name
    content: Text = ""
    anchor: Text = ""
    rationale: Text = ""


class SleepReport(Contract):
    """Everything one session produced, for review (seed 002)."""

    project: Identifier
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    n_sessions: NonNegInt = 0
    n_tasks: NonNegInt = 0
    n_replayed: NonNegInt = 0
    baseline_score: Ratio = 0.0
    candidate_score: Ratio = 0.0
    test_before: Ratio | None = None
    test_after: Ratio | None = None
    accepted: bool = False
    gate_action: Text = ""
    no_edits_reason: Text = ""
    edits: list[EditRecord] = Field(default_factory=list, max_length=1_000)
    rejected_edits: list[EditRecord] = Field(default_factory=list, max_length=1_000)
    notes: ShortList = Field(default_factory=list)


class LearningSession(Contract):
    """The durable record of one session: `<data_dir>/sessions/<id>/session.json` (authoritative), indexed in
    SQLite (`session_index`, rebuildable from the files)."""

    id: Identifier
    workspace: Identifier
    trigger: _Trigger
    trigger_id: Identifier
    subject: Name | None = None
    autonomy: _Autonomy
    status: _Session
    started_at: UtcDatetime
    ended_at: UtcDatetime | None = None
    teacher: Name = "none"
    watermark_from: NonNegInt = 0
    watermark_to: NonNegInt = 0
    digests: list[SessionDigest] = Field(default_factory=list, max_length=100_000)
    clusters: list[FailureCluster] = Field(default_factory=list, max_length=1_000)
    outcomes: list[EditOutcome] = Field(default_factory=list, max_length=1_000)
    snapshots: list[BenchmarkSnapshot] = Field(default_factory=list, max_length=2_000)
    report: SleepReport | None = None
    error: Text | None = None


# -- envelope payloads ---------------------------------------------------------------------------------------


class SessionTrigger(Contract):
    """Asks the consolidator for a session in `scope` (a workspace). Travels on the triggers stream only."""

    type: Literal["session_trigger"] = "session_trigger"
    trigger: _Trigger
    scope: Identifier
    subject: Name | None = None
    """What the trigger is about: the flagged record id, the crossing cluster's signature."""
    autonomy: _Autonomy | None = None
    """Overrides the consolidator's configured autonomy for this session."""
    requested_by: Name = "pheromone"


class SessionTransitioned(Contract):
    """A session moved to `to_status`; the first event of a session (to `triggered`) says what triggered it."""

    type: Literal["session_transition"] = "session_transition"
    session_id: Identifier
    scope: Identifier
    to_status: _Session
    reason: Text = ""
    actor: Name = "consolidator"
    trigger: _Trigger | None = None
    watermark: NonNegInt | None = None
    """On the move to `diagnosing`: the last ledger seq the session harvested."""
    from_status: _Session | None = None
    """The status the sender moved the session from. The store applies the event only in that status; in an
    earlier one the event is early and waits for its predecessor, in a later or another one it is refused.
    None: a session's first event (to `triggered`), or a sender that does not say (the move is checked
    against whatever status the session has)."""


class EditTransitioned(Contract):
    """An edit of a session moved to `to_status`. The first event of an edit carries the edit itself; the
    store applies it to the guidance on `applied` and restores the exact previous value on `rolled_back`."""

    type: Literal["edit_transition"] = "edit_transition"
    session_id: Identifier
    edit_id: Identifier
    to_status: _EditStatus
    edit: Edit | None = None
    reason: Text = ""
    actor: Name = "consolidator"
    from_status: _EditStatus | None = None
    """The status the sender moved the edit from (`staged` for an approval, `applied` for a rollback), with the
    same meaning as `SessionTransitioned.from_status`. None: an edit's first event, or a sender that does not
    say."""


class PlaybookWritten(Contract):
    """An operator wrote the hand-written part of a workspace's playbook (the learned block is untouched)."""

    type: Literal["playbook_written"] = "playbook_written"
    workspace: Identifier
    text: Annotated[str, Field(max_length=PLAYBOOK_TEXT)]
    actor: Name = "operator"

    @model_validator(mode="after")
    def _no_markers(self) -> PlaybookWritten:
        for marker in (LEARNED_BEGIN, LEARNED_END):
            if marker in self.text:
                raise ValueError(f"hand-written text may not contain the learned-block marker {marker}")
        return self

