"""Queries over the ledger (seed 003's EventQuery and TimeRange)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from pheromone.contracts.events import EventKind
from pheromone.contracts.streams import REPLY_KEY_PATTERN
from pheromone.contracts.types import Contract, Identifier, UtcDatetime

MAX_QUERY_LIMIT = 10_000
MAX_REQUEST_BYTES = 64 * 1024
"""A query request's largest JSON: the query service answers a larger one with an error, unparsed, and the
client refuses to send one (`pheromone.queries.QueryClient.call`)."""


class TimeRange(Contract):
    """Inclusive time range; either end may be open."""

    start: UtcDatetime | None = None
    end: UtcDatetime | None = None

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.start and self.end and self.start > self.end:
            raise ValueError("time range start is after its end")
        return self


class EventQuery(Contract):
    """Ledger query: by tenant, time, kinds and correlation id, newest last, at most `limit` events."""

    workspace: Identifier | None = None
    time_range: TimeRange | None = None
    kinds: Annotated[list[Annotated[EventKind, Field(strict=False)]], Field(max_length=32)] = Field(
        default_factory=list
    )
    correlation_id: Identifier | None = None
    job: Identifier | None = None
    limit: Annotated[int, Field(ge=1, le=MAX_QUERY_LIMIT)] = 100


class QueryRequest(Contract):
    """The JSON a client RPUSHes onto `{prefix}:queries` (docs/WIRE.md); at most MAX_REQUEST_BYTES."""

    op: Annotated[str, Field(min_length=1, max_length=64,
                             description="The operation (`pheromone schema --queries` lists them and their arguments)")]
    args: dict[str, Any] = Field(default_factory=dict, description="The operation's arguments")
    reply: Annotated[str, Field(pattern=REPLY_KEY_PATTERN, description=(
        "The one-off list the answer is pushed to: `{prefix}:reply:` and 32 lowercase hex digits, new per request; "
        "it expires 60 s after the answer"))]


class QueryReply(Contract):
    """The JSON the query service LPUSHes onto the request's `reply` list: a result, or a one-line error."""

    ok: bool
    result: Any = Field(default=None, description="The operation's result, when `ok`")
    error: str | None = Field(default=None, description="Why the query failed, when not `ok`")
