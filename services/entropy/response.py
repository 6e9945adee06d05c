"""The entropy response and the drift alert as data: pure functions from what was measured to what is emitted.

A routine evaluation emits nothing (the store's aggregate already holds the state it measured). A response to
low diversity (seed 000, v23) is three ledger events and one broadcast, sharing a correlation id:
  - `PatternEntropyMetrics` with `threshold_exceeded` (the measurement that triggered it);
  - `ExplorationBudgetRecord`: the budget boosted by learning's `next_budget` (floor and ceiling respected);
    with no budget recorded yet, the boost starts from `budget_initial`;
  - `EntropyResponseRecord` listing the quarantined patterns to revisit; the store's projection moves each one
    that is still quarantined to pending with its grace period (docs/LEARNING.md), in the same transaction
    that records the response, so a response and its revisits are applied together or not at all;
  - an `entropy_response` broadcast (`EntropyResponseNotice`) for jobs.
`entropy_at_trigger` and `entropy_at_time` are the diversity index, the value the one threshold
(`LearningSettings.entropy_alert_threshold`) is compared with.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pheromone.contracts import (
    AdjustmentType,
    DriftMetrics,
    EntropyResponseRecord,
    Envelope,
    ExplorationBudgetRecord,
    PatternEntropyMetrics,
    new_id,
)
from pheromone.contracts.broadcast import BroadcastMessage, DriftAlert, EntropyResponseNotice
from pheromone.contracts.streams import ENTROPY_JOB, SYSTEM_WORKSPACE
from pheromone.contracts.types import MAX_LIST
from pheromone.services.learning.budget import next_budget
from pheromone.services.settings import LearningSettings

BOOSTED = (AdjustmentType.BOOST, AdjustmentType.CEILING_ENFORCED)
MAX_TAGS = 64


@dataclass(frozen=True, slots=True)
class Planned:
    """What one response (or alert) emits: ledger events in order, and the broadcast."""

    events: list[Envelope]
    broadcast: BroadcastMessage


def envelope(payload: object, correlation_id: str, now: datetime) -> Envelope:
    return Envelope(workspace=SYSTEM_WORKSPACE, job=ENTROPY_JOB, correlation_id=correlation_id,
                    occurred_at=now, payload=payload)  # type: ignore[arg-type]


def plan_response(
    metrics: PatternEntropyMetrics, current_budget: float | None, quarantined: list[str],
    learning: LearningSettings, now: datetime, ttl_s: float,
) -> Planned:
    base = current_budget if current_budget is not None else learning.budget_initial
    diversity = metrics.diversity_index
    value, adjustment, reason = next_budget(base, entropy=diversity, low_entropy=True, s=learning)
    boosted = adjustment in BOOSTED and value > base
    revisits = quarantined[:MAX_LIST]
    actions = (["budget_boost"] if boosted else []) + (["quarantine_revisit"] if revisits else [])
    correlation = new_id()
    budget = ExplorationBudgetRecord(
        job_hash=ENTROPY_JOB, recorded_at=now, budget_value=value, entropy_at_time=metrics.diversity_index,
        adjustment_type=adjustment, adjustment_reason=reason,
    )
    response = EntropyResponseRecord(
        job_hash=ENTROPY_JOB, recorded_at=now, entropy_at_trigger=metrics.diversity_index,
        threshold_used=learning.entropy_alert_threshold, actions_taken=actions, budget_boosted=boosted,
        quarantine_revisits=len(revisits), patterns_revisited=revisits,
    )
    events = [envelope(p, correlation, now) for p in (metrics, budget, response)]
    notice = EntropyResponseNotice(response=response, diversity_index=diversity, budget_value=value)
    return Planned(events, BroadcastMessage(
        id=events[-1].event_id, published_at=now, expires_at=now + timedelta(seconds=ttl_s),
        workspace=SYSTEM_WORKSPACE, job=ENTROPY_JOB, body=notice,
    ))


def drift_alert(drift: DriftMetrics, tags: list[str], now: datetime, ttl_s: float) -> BroadcastMessage:
    """A `drift_alert` broadcast. Broadcast only: the store derives each pattern's drift itself (its
    `pattern_drift` projection), so a ledger copy would record nothing new."""
    alert = DriftAlert(drift=drift, context_tags=sorted(set(tags))[:MAX_TAGS])
    return BroadcastMessage(
        id=new_id(), published_at=now, expires_at=now + timedelta(seconds=ttl_s),
        workspace=SYSTEM_WORKSPACE, job=ENTROPY_JOB, body=alert,
    )
