"""What travels on the broadcast stream, and the live rate-limit state jobs read.

The broadcast stream `{prefix}:broadcast` is read by every job from its own cursor (XREAD, no group). Each
entry is one `BroadcastMessage`: who it came from, when it was published, when it expires, and a body whose
`type` says what it is. Jobs filter by `kind`:

    kind               body                      published by
    discovery          PatternDiscoveryEvent     the broadcaster (a job's discovery, fanned out)
    rate_limit         RateLimitNotice           the coordinator (a new or extended limit)
    entropy_response   EntropyResponseNotice     the entropy service (diversity fell below the threshold)
    drift_alert        DriftAlert                the entropy service (a pattern's effectiveness drifted)

Besides the message JSON under `FIELD`, an entry carries its expiry (ms since epoch) under `FIELD_EXPIRES` and
its kind under `FIELD_KIND`, so a reader skips expired or unwanted entries without parsing them.

`RateLimitState` is the JSON value of a live rate-limit key (see `contracts.streams.Keys.rate_limit`); the
client turns it into a `RateLimitStatus`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from pheromone.contracts.records import DriftMetrics, EntropyResponseRecord, PatternDiscoveryEvent
from pheromone.contracts.streams import RATE_LIMIT_EXPIRY_FACTOR
from pheromone.contracts.types import Contract, Identifier, Name, NonNegFloat, Ratio, Tags, UtcDatetime


class BroadcastKind(StrEnum):
    DISCOVERY = "discovery"
    RATE_LIMIT = "rate_limit"
    ENTROPY_RESPONSE = "entropy_response"
    DRIFT_ALERT = "drift_alert"


class RateLimitNotice(Contract):
    """A rate limit became active or was extended; `expires_at` is the limit's expiry after this report."""

    type: Literal["rate_limit_notice"] = "rate_limit_notice"
    model: Name
    error_code: Name
    expires_at: UtcDatetime
    duration_seconds: Annotated[float, Field(gt=0.0, le=86_400.0)]
    reported_by: Identifier
    """The reporting job's `source_job_hash`."""
    report_id: Identifier
    """The `RateLimitEvent.id` that set this expiry."""


class EntropyResponseNotice(Contract):
    """The fleet's pattern diversity fell below the threshold and the entropy service responded."""

    type: Literal["entropy_response_notice"] = "entropy_response_notice"
    response: EntropyResponseRecord
    diversity_index: Ratio
    budget_value: Ratio | None = None
    """The exploration budget after the response (None if it was not changed)."""


class DriftAlert(Contract):
    """A pattern's effectiveness drift crossed its threshold."""

    type: Literal["drift_alert"] = "drift_alert"
    drift: DriftMetrics
    context_tags: Tags = Field(default_factory=list)
    """The pattern's tags, so subscribers can filter alerts like discoveries."""


BroadcastBody = Annotated[
    PatternDiscoveryEvent | RateLimitNotice | EntropyResponseNotice | DriftAlert, Field(discriminator="type")
]

KIND_OF_BODY: dict[str, BroadcastKind] = {
    "pattern_discovery": BroadcastKind.DISCOVERY,
    "rate_limit_notice": BroadcastKind.RATE_LIMIT,
    "entropy_response_notice": BroadcastKind.ENTROPY_RESPONSE,
    "drift_alert": BroadcastKind.DRIFT_ALERT,
}


class BroadcastMessage(Contract):
    """One entry of the broadcast stream. `id` is unique per message: it is published at most once."""

    # A strict int bounded to 1, not Literal[1], which would take True (as the envelope's, contracts.events).
    schema_version: Annotated[int, Field(strict=True, ge=1, le=1)] = 1
    id: Identifier
    published_at: UtcDatetime
    expires_at: UtcDatetime
    workspace: Identifier
    """Where the message came from (a job's workspace, or the system's for service-made messages)."""
    job: Identifier
    body: BroadcastBody

    @property
    def kind(self) -> BroadcastKind:
        return KIND_OF_BODY[self.body.type]

    @property
    def tags(self) -> list[str]:
        """Context tags of a discovery or a drift alert; empty for other kinds."""
        if isinstance(self.body, PatternDiscoveryEvent | DriftAlert):
            return list(self.body.context_tags)
        return []

    @property
    def effectiveness(self) -> float | None:
        """A discovery's effectiveness score; None for other kinds."""
        return self.body.effectiveness_score if isinstance(self.body, PatternDiscoveryEvent) else None

    def expired(self, now: datetime) -> bool:
        return self.expires_at <= now


class RateLimitState(Contract):
    """The value of a live rate-limit key: the report whose expiry is the latest for that key."""

    model: Name
    error_code: Name
    recorded_at: UtcDatetime
    expires_at: UtcDatetime
    duration_seconds: Annotated[float, Field(gt=0.0, le=86_400.0)]
    reported_by: Identifier
    workspace: Identifier
    report_id: Identifier


class RateLimitStatus(Contract):
    """The answer to "is this model rate-limited?": never active once the limit has expired."""

    model: str
    error_code: str | None
    """None: any error code for this model."""
    active: bool
    seconds_left: NonNegFloat = 0.0
    expires_at: UtcDatetime | None = None
    reported_by: Identifier | None = None
    workspace: Identifier | None = None
    duration_seconds: NonNegFloat | None = None
    recorded_at: UtcDatetime | None = None
    reported_error_code: Name | None = None
    """The error code of the report behind this answer (useful when `error_code` is None)."""


def rate_limit_expiry(recorded_at: datetime, duration_seconds: float,
                      factor: float = RATE_LIMIT_EXPIRY_FACTOR) -> datetime:
    """When a reported limit expires: `recorded_at + factor x duration` (docs/COORDINATION.md: why 1.0)."""
    return recorded_at + timedelta(seconds=duration_seconds * factor)
