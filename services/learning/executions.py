"""Execution rules (seed 000): an execution's confidence score and the optimal execution window.

confidence = clamp(validation_pass_rate - 0.1 x min(retry_count, 5) + (0.1 if success without retry))
  (the reference's `_calculate_confidence`; the store keeps it next to the producer's own score).

Optimal window, from recoveries per hour of day: an hour with >= 3 samples is measured, `optimal` at a success
rate >= 0.7 and `avoid` at <= 0.3; confidence = min(total samples / 50, 1) x measured hours / 24, since an hour
never measured could be the best one. With fewer than `window_min_hours` (2) measured hours there is no window
to choose from: no optimal or avoid hours, confidence 0, `enough_data` false.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pheromone.services.settings import LearningSettings


def execution_confidence(
    validation_pass_rate: float, retry_count: int, success_without_retry: bool, s: LearningSettings
) -> float:
    value = validation_pass_rate - s.confidence_retry_penalty * min(
        max(retry_count, 0), s.confidence_retry_cap
    )
    if success_without_retry:
        value = min(1.0, value + s.confidence_first_try_bonus)
    return max(0.0, min(1.0, value))


def optimal_window(hours: Mapping[int, tuple[int, int]], s: LearningSettings) -> dict[str, Any]:
    """From {hour: (successes, total)}: optimal and avoid hours, confidence and sample count."""
    optimal, avoid = [], []
    samples = measured = 0
    for hour, (ok, total) in sorted(hours.items()):
        samples += total
        if total >= s.window_min_samples:
            measured += 1
            rate = ok / total
            if rate >= s.window_good_rate:
                optimal.append(hour)
            elif rate <= s.window_avoid_rate:
                avoid.append(hour)
    enough = measured >= s.window_min_hours
    return {
        "optimal_hours": optimal if enough else [],
        "avoid_hours": avoid if enough else [],
        "confidence": min(1.0, samples / s.window_full_confidence_samples) * measured / 24 if enough else 0.0,
        "enough_data": enough,
        "measured_hours": measured,
        "min_hours": s.window_min_hours,
        "min_samples_per_hour": s.window_min_samples,
        "sample_count": samples,
        "hours": {
            str(h): {"successes": ok, "total": t, "success_rate": ok / t if t else 0.0}
            for h, (ok, t) in sorted(hours.items())
        },
    }
