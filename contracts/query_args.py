"""The arguments of every query operation (docs/WIRE.md, "Queries"), one model per operation.

The client builds these and sends their JSON as a request's `args`; the query service validates `args` with the
same model; `pheromone schema --queries` prints their JSON Schemas. `QUERY_ARGS` names the model of each
operation, `events` (seed 003's `EventQuery`) included.

Unlike the event contracts these are lax (not `strict`): a request's arguments arrive as parsed JSON, so an enum
or a number is validated from its JSON value; unknown arguments are still refused.
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pheromone.contracts.queries import EventQuery
from pheromone.contracts.records import QuarantineStatus
from pheromone.contracts.types import Identifier, NonNegInt

_Limit = Annotated[int, Field(ge=1, le=1_000)]
_Unit = Annotated[float, Field(ge=0.0, le=1.0)]
_Text = Annotated[str, Field(min_length=1, max_length=256)]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoArgs(BaseModel):
    """`counts` takes no arguments."""

    model_config = ConfigDict(extra="forbid", title="counts")


class PatternsArgs(Args):
    """`patterns`: filters, sorted by priority (highest first). Retired patterns only when asked by status."""

    pattern_type: _Text | None = None
    tags: Annotated[list[_Text], Field(max_length=64)] = Field(default_factory=list)
    match_all_tags: bool = False
    status: Annotated[list[QuarantineStatus], Field(max_length=4)] = Field(default_factory=list)
    min_trust: _Unit = 0.0
    min_priority: _Unit = 0.0
    instrument: _Text | None = None
    limit: _Limit = 20


class PatternArgs(Args):
    """`pattern`: one pattern by id or unique id prefix, with its history and "why" analysis."""

    id: Annotated[str, Field(min_length=3, max_length=128)]
    transitions: _Limit = 50
    applications: _Limit = 10


class EntropyArgs(Args):
    history: bool = False
    limit: _Limit = 20


class BudgetArgs(Args):
    job_hash: _Text | None = None
    limit: _Limit = 20


class DriftArgs(Args):
    epistemic: bool = False
    include_stable: bool = False
    """Also list patterns whose drift is below the threshold."""
    pattern_id: _Text | None = None
    limit: _Limit = 20


class WaitArgs(Args):
    error_code: _Text
    model: _Text | None = None
    static_seconds: Annotated[float, Field(gt=0.0, le=86_400.0)] | None = None


class EscalationArgs(Args):
    confidence: _Unit
    validation_pass_rate: _Unit
    limit: Annotated[int, Field(ge=1, le=100)] = 5


class ExecutionStatsArgs(Args):
    workspace: Identifier | None = None
    """The tenant: only executions (and recoveries) this workspace reported (the envelope's workspace)."""
    workspace_hash: _Text | None = None
    """The record's own `workspace_hash` field, as its producer wrote it (seed 000); not a boundary."""
    job_hash: _Text | None = None
    model: _Text | None = None
    by: Literal["workspace", "job", "model"] | None = None
    error_code: _Text | None = None
    """Optimal window: only recoveries from this error code."""
    limit: _Limit = 50


class TrajectoryArgs(Args):
    # The records' own bound (NonNegInt, <= 2**53): an unbounded int would overflow SQLite's INTEGER.
    start_cycle: NonNegInt | None = None
    end_cycle: NonNegInt | None = None
    window_cycles: Annotated[int, Field(ge=1, le=10_000)] | None = None
    min_occurrences: Annotated[int, Field(ge=1, le=10_000)] | None = None
    limit: _Limit = 50

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start_cycle is not None and self.end_cycle is not None and self.start_cycle > self.end_cycle:
            raise ValueError(f"the first cycle ({self.start_cycle}) is after the last ({self.end_cycle})")
        return self


_Workspace = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+=-]+$")]


class PlaybookArgs(Args):
    """`playbook`: a workspace's playbook (learning sessions, docs/SESSIONS.md)."""

    workspace: _Workspace


class GuidanceArgs(Args):
    """`guidance`: what a workspace's jobs running `model` are served."""

    workspace: _Workspace
    model: _Text | None = None
    limit: _Limit = 20


QUERY_ARGS: dict[str, type[BaseModel]] = {
    "events": EventQuery, "counts": NoArgs, "patterns": PatternsArgs, "pattern": PatternArgs,
    "entropy": EntropyArgs, "budget": BudgetArgs, "drift": DriftArgs, "wait": WaitArgs,
    "escalations_similar": EscalationArgs, "execution_stats": ExecutionStatsArgs, "trajectory": TrajectoryArgs,
    "playbook": PlaybookArgs, "guidance": GuidanceArgs,
}
"""Every query operation's argument model, by operation name: the query service answers exactly these."""
