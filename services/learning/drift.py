"""Effectiveness drift (v12) and epistemic drift (v21) of one pattern, from its last 2 x window applications.

Both compare the older window (applications N-2W..N-W) with the recent one (N-W..N), by event time.

Effectiveness drift: each window's effectiveness is its Laplace-smoothed success rate (s + 0.5) / (w + 1);
magnitude = |after - before|; the alert weighs it by grounding: magnitude / max(mean grounding, 0.5) >
threshold (low grounding amplifies the signal). Mean grounding over both windows, 1.0 when none reported.

Epistemic drift: over the last 2W applications *that reported a grounding confidence*, belief change =
mean(recent) - mean(older); belief entropy = the coefficient of variation of all 2W confidences
(population std / mean, capped at 1; 0 when the mean is 0): 0 means consistent beliefs, 1 very unstable;
the alert is |belief change| x (1 + belief entropy) > threshold.

Direction is `stable` within +/- `drift_direction_band` (0.05), as in the reference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pheromone.contracts import DriftMetrics, EpistemicDriftMetrics

if TYPE_CHECKING:
    from pheromone.services.settings import LearningSettings


def _laplace(outcomes: Sequence[bool]) -> float:
    return (sum(outcomes) + 0.5) / (len(outcomes) + 1)


def effectiveness_drift(
    pattern_id: str,
    pattern_name: str,
    outcomes_newest_first: Sequence[tuple[bool, float | None]],
    s: LearningSettings,
) -> DriftMetrics | None:
    """DriftMetrics from (success, grounding) pairs, newest first; None with fewer than 2 x window."""
    w = s.drift_window
    apps = list(outcomes_newest_first)[: 2 * w]
    if len(apps) < 2 * w:
        return None
    recent, older = apps[:w], apps[w:]
    after, before = _laplace([ok for ok, _ in recent]), _laplace([ok for ok, _ in older])
    grounded = [g for _, g in apps if g is not None]
    grounding = sum(grounded) / len(grounded) if grounded else 1.0
    change = after - before
    magnitude = abs(change)
    weighted = magnitude / max(grounding, s.drift_grounding_floor)
    return DriftMetrics(
        pattern_id=pattern_id,
        pattern_name=pattern_name,
        window_size=w,
        effectiveness_before=before,
        effectiveness_after=after,
        grounding_confidence_avg=grounding,
        drift_magnitude=magnitude,
        drift_direction=_direction(change, s, "positive", "negative"),
        applications_analyzed=len(apps),
        threshold_exceeded=weighted > s.drift_threshold,
    )


def belief_entropy(confidences: Sequence[float]) -> float:
    """Coefficient of variation of the confidences, capped at 1 (0 for an empty or all-zero list)."""
    if not confidences:
        return 0.0
    mean = sum(confidences) / len(confidences)
    if mean <= 0:
        return 0.0
    var = sum((c - mean) ** 2 for c in confidences) / len(confidences)
    return min(1.0, math.sqrt(var) / mean)


def epistemic_drift(
    pattern_id: str,
    pattern_name: str,
    confidences_newest_first: Sequence[float],
    s: LearningSettings,
) -> EpistemicDriftMetrics | None:
    """EpistemicDriftMetrics from grounding confidences, newest first; None with fewer than 2 x window."""
    w = s.epistemic_window
    values = list(confidences_newest_first)[: 2 * w]
    if len(values) < 2 * w:
        return None
    recent, older = values[:w], values[w:]
    after, before = sum(recent) / w, sum(older) / w
    change = max(-1.0, min(1.0, after - before))
    entropy = belief_entropy(values)
    return EpistemicDriftMetrics(
        pattern_id=pattern_id,
        pattern_name=pattern_name,
        window_size=w,
        confidence_before=before,
        confidence_after=after,
        belief_change=change,
        belief_entropy=entropy,
        applications_analyzed=len(values),
        threshold_exceeded=abs(change) * (1 + entropy) > s.epistemic_threshold,
        drift_direction=_direction(change, s, "strengthening", "weakening"),
    )


def _direction(change: float, s: LearningSettings, up: str, down: str) -> Any:
    if change > s.drift_direction_band:
        return up
    if change < -s.drift_direction_band:
        return down
    return "stable"
