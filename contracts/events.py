"""The event envelope (seed 003) and the payloads it carries.

An envelope is what travels on a stream and what the ledger stores: a producer-made `event_id` (a ULID, so
ids sort by creation time), the producer's aware UTC `occurred_at`, the tenant (`workspace`), the `job`, an
optional `correlation_id`, a `schema_version`, and a payload discriminated by its `type` field.

Corrections and lifecycle transitions are new events (seed 003's axiom): `PatternTransitioned` and
`EscalationOutcomeRecorded` never edit an earlier event, they add one.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, get_args

from pydantic import ConfigDict, Field, ValidationError

from pheromone.contracts.records import (
    DriftMetrics,
    EntropyResponseRecord,
    EpistemicDriftMetrics,
    ErrorRecoveryRecord,
    EscalationDecisionRecord,
    EscalationOutcome,
    EvolutionTrajectoryEntry,
    ExecutionRecord,
    ExplorationBudgetRecord,
    PatternDiscoveryEvent,
    PatternEntropyMetrics,
    QuarantineStatus,
    RateLimitEvent,
    SuccessFactors,
    new_id,
    utcnow,
)
from pheromone.contracts.sessions import EditTransitioned, PlaybookWritten, SessionTransitioned, SessionTrigger
from pheromone.contracts.types import Contract, Identifier, Name, NonNegInt, Ratio, Tags, Text, UtcDatetime

SCHEMA_VERSION = 1
MAX_ENTRY_BYTES = 64 * 1024
"""Largest envelope accepted on a stream; larger entries are dead-lettered unread."""

EventId = Annotated[
    str, Field(pattern=r"^[0-7][0-9A-HJKMNP-TV-Z]{25}$", description="ULID (Crockford base32, 128 bits)")
]


class PatternObserved(Contract):
    """A job saw a pattern (new or known). The store upserts it by type + normalised name; tags merge."""

    type: Literal["pattern_observed"] = "pattern_observed"
    pattern_type: Name
    pattern_name: Name
    description: Text = ""
    suggested_action: Text | None = None
    context_tags: Tags = Field(default_factory=list)
    provenance_job_hash: Identifier | None = None
    provenance_sheet_num: NonNegInt | None = None
    instrument_name: Name | None = None


class PatternApplied(Contract):
    """A job applied a known pattern; `success` is the outcome that drives effectiveness."""

    type: Literal["pattern_applied"] = "pattern_applied"
    pattern_id: Identifier
    success: bool
    grounding_confidence: Ratio | None = None
    success_factors: SuccessFactors | None = None
    execution_id: Identifier | None = None
    model: Name | None = None


class PatternTransitioned(Contract):
    """A quarantine-lifecycle transition, made by a person, a rule or an entropy response."""

    type: Literal["pattern_transition"] = "pattern_transition"
    pattern_id: Identifier
    to_status: Annotated[QuarantineStatus, Field(strict=False)]
    reason: Text
    actor: Name
    from_status: Annotated[QuarantineStatus, Field(strict=False)] | None = None
    """The status the sender saw the pattern in. The store applies the event only from it: from a status that
    can still lead there the event is early and waits; from one that cannot, it is refused. None: the sender
    does not say (the move is checked against whatever status the pattern has)."""


class EscalationOutcomeRecorded(Contract):
    """What happened after an escalation decision, recorded after the fact."""

    type: Literal["escalation_outcome"] = "escalation_outcome"
    escalation_id: Identifier
    outcome: EscalationOutcome


Payload = Annotated[
    ExecutionRecord
    | PatternObserved
    | PatternApplied
    | PatternTransitioned
    | ErrorRecoveryRecord
    | RateLimitEvent
    | EscalationDecisionRecord
    | EscalationOutcomeRecorded
    | PatternDiscoveryEvent
    | EvolutionTrajectoryEntry
    | PatternEntropyMetrics
    | ExplorationBudgetRecord
    | EntropyResponseRecord
    | DriftMetrics
    | EpistemicDriftMetrics
    | SessionTrigger
    | SessionTransitioned
    | EditTransitioned
    | PlaybookWritten,
    Field(discriminator="type"),
]

PAYLOAD_TYPES: tuple[type[Contract], ...] = get_args(get_args(Payload)[0])

class EventKind(StrEnum):
    """Every payload `type`, for queries by kind (seed 003's ExperienceEventKind); kept equal to
    PAYLOAD_TYPES by a test."""

    EXECUTION = "execution"
    PATTERN_OBSERVED = "pattern_observed"
    PATTERN_APPLIED = "pattern_applied"
    PATTERN_TRANSITION = "pattern_transition"
    ERROR_RECOVERY = "error_recovery"
    RATE_LIMIT = "rate_limit"
    ESCALATION = "escalation"
    ESCALATION_OUTCOME = "escalation_outcome"
    PATTERN_DISCOVERY = "pattern_discovery"
    EVOLUTION_ENTRY = "evolution_entry"
    ENTROPY_METRICS = "entropy_metrics"
    BUDGET = "budget"
    ENTROPY_RESPONSE = "entropy_response"
    DRIFT = "drift"
    EPISTEMIC_DRIFT = "epistemic_drift"
    SESSION_TRIGGER = "session_trigger"
    SESSION_TRANSITION = "session_transition"
    EDIT_TRANSITION = "edit_transition"
    PLAYBOOK_WRITTEN = "playbook_written"


class Envelope(Contract):
    """One append-only event: stable metadata plus a typed payload."""

    # Not Literal[1]: a Literal compares by equality and True == 1; a strict int bounded to 1 refuses bools.
    schema_version: Annotated[int, Field(strict=True, ge=SCHEMA_VERSION, le=SCHEMA_VERSION)] = SCHEMA_VERSION
    event_id: EventId = Field(default_factory=new_id)
    occurred_at: UtcDatetime = Field(default_factory=utcnow)
    workspace: Identifier
    job: Identifier
    correlation_id: Identifier | None = None
    payload: Payload

    @property
    def kind(self) -> str:
        return self.payload.type


class WireEnvelope(Envelope):
    """The envelope's wire schema: `event_id` and `occurred_at` are required.

    The defaults on `Envelope` serve Python producers; on the wire a default would mint a new id and time on
    every parse of the same bytes, and break exactly-once, so `parse_envelope` refuses input without them.
    `pheromone schema Envelope` prints this schema.
    """

    model_config = ConfigDict(title="Envelope")

    event_id: EventId
    occurred_at: UtcDatetime


_PRODUCER_MADE = ("event_id", "occurred_at")


def parse_envelope(raw: bytes | str) -> Envelope:
    """Validate one envelope from JSON; raises pydantic.ValidationError or ValueError (oversized)."""
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode(errors="surrogatepass"))
    if size > MAX_ENTRY_BYTES:
        raise ValueError(f"envelope is {size} bytes, over the {MAX_ENTRY_BYTES}-byte limit")
    env = Envelope.model_validate_json(raw)
    given = env.model_fields_set
    # See WireEnvelope: on the wire these must come from the producer. The list of missing names is built only
    # on failure, since every event the store applies passes through here.
    if "event_id" not in given or "occurred_at" not in given:
        missing = [name for name in _PRODUCER_MADE if name not in given]
        raise ValidationError.from_exception_data(
            "Envelope", [{"type": "missing", "loc": (name,), "input": None} for name in missing]
        )
    return env


def occurred(envelope: Envelope) -> datetime:
    return envelope.occurred_at
