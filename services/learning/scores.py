"""A pattern's scores: effectiveness, variance, priority and trust (seed 000's PatternRecord fields).

All four are functions of the pattern's applications only (counts, the last window by event time, the last
confirmation), never of the order in which events arrived nor of the wall clock: the store computes them as
of the pattern's latest application, so concurrent producers and a sequential replay reach the same values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pheromone.contracts import QuarantineStatus

if TYPE_CHECKING:
    from pheromone.services.settings import LearningSettings

US_PER_DAY = 86_400 * 1_000_000


def clamp01(value: float) -> float:
    return max(0.0, min(1.0, value))


def decay_factor(days: float | None, s: LearningSettings) -> float:
    """decay_base ^ (days / decay_period_days); 1.0 when never confirmed or confirmed "in the future"."""
    if days is None or days <= 0:
        return 1.0
    return float(s.decay_base ** (days / s.decay_period_days))


def days_between(earlier_us: int | None, later_us: int | None) -> float | None:
    if earlier_us is None or later_us is None:
        return None
    return (later_us - earlier_us) / US_PER_DAY


def effectiveness(
    successes: int,
    failures: int,
    recent: Sequence[int],
    recent_grounding: Sequence[float | None],
    days_since_confirmed: float | None,
    s: LearningSettings,
) -> float:
    """Seed 000's effectiveness after an application.

    n < min_applications -> neutral_effectiveness (0.55); else
    (recent_weight x success rate of `recent` + prior_weight x (s + 0.5) / (n + 1))
      x decay_base ^ (days since last confirmed / decay_period_days)
      x (grounding_base + grounding_weight x mean grounding of the window, default_grounding if none)
    clamped to [0, 1]. `recent` and `recent_grounding` are the last `effectiveness_window` applications.
    """
    n = successes + failures
    if n < s.min_applications:
        return s.neutral_effectiveness
    window = list(recent)[: s.effectiveness_window]
    recent_rate = sum(window) / len(window) if window else successes / n
    smoothed = (successes + s.laplace_successes) / (n + s.laplace_trials)
    grounded = [g for g in list(recent_grounding)[: s.effectiveness_window] if g is not None]
    grounding = sum(grounded) / len(grounded) if grounded else s.default_grounding
    value = (
        (s.recent_weight * recent_rate + s.prior_weight * smoothed)
        * decay_factor(days_since_confirmed, s)
        * (s.grounding_base + s.grounding_weight * grounding)
    )
    return clamp01(value)


def variance(successes: int, failures: int) -> float:
    """Population variance of the outcomes (1 = success, 0 = failure): p(1 - p), in [0, 0.25]; 0 if none."""
    n = successes + failures
    if n == 0:
        return 0.0
    p = successes / n
    return p * (1.0 - p)


def priority(
    effectiveness_score: float, occurrences: int, variance_value: float, s: LearningSettings
) -> float:
    """clamp(effectiveness x max(floor, min(1, log10(occurrences + 1) / divisor)) x (1 - variance)).

    The one priority formula (the reference had two). Frequency can lower priority by at most the floor.
    """
    frequency = max(s.priority_floor, min(1.0, math.log10(max(occurrences, 0) + 1) / s.priority_log_divisor))
    return clamp01(effectiveness_score * frequency * (1.0 - variance_value))


def trust(
    successes: int,
    failures: int,
    days_since_confirmed: float | None,
    status: QuarantineStatus,
    s: LearningSettings,
) -> float:
    """Trust in [0, 1], `trust_neutral` (0.5) for a pattern with no applications.

    The reference's terms (0.3 x success share - 0.4 x failure share + 0.2 x recency, +0.1 validated,
    -0.2 quarantined) scaled by the evidence n / (n + k), so a brand-new pattern reads neutral instead of
    0.7. Recency is the effectiveness decay since the last confirmed success (0 if never confirmed).
    """
    n = successes + failures
    if n == 0:
        base = s.trust_neutral
    else:
        evidence = n / (n + s.trust_evidence_k)
        recency = decay_factor(days_since_confirmed, s) if days_since_confirmed is not None else 0.0
        signal = (
            s.trust_success_weight * successes / n
            - s.trust_failure_weight * failures / n
            + s.trust_recency_weight * recency
        )
        base = s.trust_neutral + evidence * signal
    if status == QuarantineStatus.VALIDATED:
        base += s.trust_validated_bonus
    elif status == QuarantineStatus.QUARANTINED:
        base -= s.trust_quarantined_penalty
    return clamp01(base)
