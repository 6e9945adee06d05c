"""The exploration budget (seed 000, v23): how much of pattern selection goes to exploring.

One step from the current budget:
  - no budget yet                   -> `budget_initial` (INITIAL);
  - low entropy (below the alert)   -> current + `budget_boost`, at most `budget_ceiling`
                                       (BOOST, or CEILING_ENFORCED when the ceiling cut it);
  - healthy entropy                 -> current x `budget_decay`, at least `budget_floor`
                                       (DECAY, or FLOOR_ENFORCED when the floor held it up).
The caller decides what "low entropy" is (diversity index below `entropy_alert_threshold`), so the threshold
lives in one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pheromone.contracts import AdjustmentType

if TYPE_CHECKING:
    from pheromone.services.settings import LearningSettings


def clamp_budget(value: float, s: LearningSettings) -> float:
    return max(s.budget_floor, min(s.budget_ceiling, value))


def next_budget(
    current: float | None, *, entropy: float | None, low_entropy: bool, s: LearningSettings
) -> tuple[float, AdjustmentType, str]:
    """(new budget, adjustment type, human reason) for one adjustment step."""
    shown = "unknown" if entropy is None else f"{entropy:.3f}"
    if current is None:
        value = clamp_budget(s.budget_initial, s)
        return value, AdjustmentType.INITIAL, f"initial budget {value:.3f} (entropy {shown})"
    if low_entropy:
        proposed = current + s.budget_boost
        if proposed > s.budget_ceiling:
            return (
                s.budget_ceiling,
                AdjustmentType.CEILING_ENFORCED,
                f"boost to {proposed:.3f} capped at ceiling {s.budget_ceiling:.3f} (entropy {shown} low)",
            )
        value = max(s.budget_floor, proposed)
        return (
            value,
            AdjustmentType.BOOST,
            (
                f"entropy {shown} below threshold {s.entropy_alert_threshold:.3f}: boost "
                f"{current:.3f} + {s.budget_boost:.3f} -> {value:.3f}"
            ),
        )
    proposed = current * s.budget_decay
    if proposed < s.budget_floor:
        return (
            s.budget_floor,
            AdjustmentType.FLOOR_ENFORCED,
            f"decay to {proposed:.3f} held at floor {s.budget_floor:.3f} (entropy {shown} healthy)",
        )
    value = min(s.budget_ceiling, proposed)
    return (
        value,
        AdjustmentType.DECAY,
        (f"entropy {shown} healthy: decay {current:.3f} x {s.budget_decay:.2f} -> {value:.3f}"),
    )
