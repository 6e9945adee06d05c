"""Learned wait per error code (and model), from recent successful recoveries (seed 000, Evolution #3).

learned = (mean + min) / 2 of the last `wait_recent_samples` (20) successful waits: the mean pulled toward
the shortest wait that still worked. None below `wait_min_samples` (3) samples.
confidence = min(successful samples / wait_full_confidence_samples (10), 1).
floor = wait_fallback_floor (0.5) x static fallback: a learned wait never undercuts half the static one.
  confidence >= wait_min_confidence (0.7): max(learned, floor)                  -> "global_learned"
  otherwise: weight = confidence / 0.7; weight x max(learned, floor) + (1 - weight) x static
                                                                                -> "global_learned_blend"
  no learned value: static                                                      -> "static_fallback"
Finally clamped to [wait_min_s, wait_max_s] (the reference had no bounds: a 6-hour outlier could stall jobs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pheromone.services.settings import LearningSettings


@dataclass(frozen=True, slots=True)
class LearnedWait:
    error_code: str
    model: str | None
    wait_seconds: float
    confidence: float
    strategy: str
    learned_seconds: float | None
    static_seconds: float
    samples: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def static_wait(error_code: str, s: LearningSettings) -> float:
    return s.wait_static_by_code.get(error_code, s.wait_static_s)


def learned_value(recent_successful_waits: Sequence[float], s: LearningSettings) -> float | None:
    waits = list(recent_successful_waits)[: s.wait_recent_samples]
    if len(waits) < s.wait_min_samples:
        return None
    return (sum(waits) / len(waits) + min(waits)) / 2


def learned_wait(
    error_code: str,
    model: str | None,
    recent_successful_waits: Sequence[float],
    successful_samples: int,
    s: LearningSettings,
    *,
    static_seconds: float | None = None,
) -> LearnedWait:
    """The wait to use, its confidence and strategy; `successful_samples` may be capped by the caller."""
    static = static_wait(error_code, s) if static_seconds is None else static_seconds
    learned = learned_value(recent_successful_waits, s)
    if learned is None:
        value, confidence, strategy = static, 0.0, "static_fallback"
    else:
        confidence = min(1.0, successful_samples / s.wait_full_confidence_samples)
        floored = max(learned, s.wait_fallback_floor * static)
        if confidence >= s.wait_min_confidence:
            value, strategy = floored, "global_learned"
        else:
            weight = confidence / s.wait_min_confidence
            value, strategy = weight * floored + (1 - weight) * static, "global_learned_blend"
    value = max(s.wait_min_s, min(s.wait_max_s, value))
    return LearnedWait(
        error_code,
        model,
        value,
        confidence,
        strategy,
        learned,
        static,
        min(len(recent_successful_waits), s.wait_recent_samples)
        if learned is not None
        else len(recent_successful_waits),
    )
