"""Shannon entropy of the pattern population's applications (seed 000's PatternEntropyMetrics).

H = -sum(p_i x log2 p_i) over patterns with at least one application, p_i = applications_i / total.
Hmax = log2(unique patterns). Diversity index = H / Hmax, defined for the degenerate populations as:
  - no applications at all (any number of patterns): H = 0, diversity 0.0 (nothing is being explored);
  - exactly one known pattern: Hmax = 0; diversity 0.0 (one pattern is total reliance, the collapse the alert
    exists to flag), even though a one-pattern population is trivially "even".
`threshold_exceeded` is `diversity_index < alert_threshold` (the one threshold in settings), so both
degenerate cases alert: read an alert together with `total_applications` (0 means nothing to diversify yet).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime

from pheromone.contracts import PatternEntropyMetrics


def shannon_entropy(counts: Mapping[str, int] | list[int]) -> float:
    """Entropy in bits of the distribution given by non-negative counts (zeros ignored)."""
    values = [c for c in (counts.values() if isinstance(counts, Mapping) else counts) if c > 0]
    total = sum(values)
    if total == 0:
        return 0.0
    h = -sum((c / total) * math.log2(c / total) for c in values)
    return max(0.0, h)  # -0.0 and rounding dust for a single pattern


def entropy_metrics(
    counts: Mapping[str, int], *, calculated_at: datetime, alert_threshold: float
) -> PatternEntropyMetrics:
    """The population's entropy metrics from application counts per pattern id (all known patterns)."""
    if any(c < 0 for c in counts.values()):
        raise ValueError("application counts must be non-negative")
    unique = len(counts)
    applied = [c for c in counts.values() if c > 0]
    total = sum(applied)
    h = shannon_entropy(applied)
    h_max = math.log2(unique) if unique > 1 else 0.0
    diversity = min(1.0, h / h_max) if h_max > 0 else 0.0
    dominant = max(applied) / total if total else 0.0
    return PatternEntropyMetrics(
        calculated_at=calculated_at,
        shannon_entropy=h,
        max_possible_entropy=h_max,
        diversity_index=diversity,
        unique_pattern_count=unique,
        effective_pattern_count=len(applied),
        total_applications=total,
        dominant_pattern_share=dominant,
        threshold_exceeded=diversity < alert_threshold,
    )


def c_log2_c(count: int) -> float:
    """count x log2(count), 0 for 0: the per-pattern term the store sums incrementally."""
    return count * math.log2(count) if count > 0 else 0.0


def entropy_from_aggregate(
    *,
    total: int,
    sum_c_log2_c: float,
    unique: int,
    effective: int,
    max_count: int,
    calculated_at: datetime,
    alert_threshold: float,
) -> PatternEntropyMetrics:
    """The same metrics from the store's running aggregate, in O(1).

    With T applications and S = sum(c_i log2 c_i): H = -sum(c_i/T log2(c_i/T)) = log2 T - S / T. The store
    keeps T, S, the pattern counts and the largest count up to date in each batch, so entropy never rescans
    the applications (or even the per-pattern counts).
    """
    if total <= 0:
        h = 0.0
    else:
        h = math.log2(total) - sum_c_log2_c / total
    h_max = math.log2(unique) if unique > 1 else 0.0
    h = max(0.0, min(h, h_max)) if effective > 1 else 0.0
    diversity = min(1.0, h / h_max) if h_max > 0 else 0.0
    return PatternEntropyMetrics(
        calculated_at=calculated_at,
        shannon_entropy=h,
        max_possible_entropy=h_max,
        diversity_index=diversity,
        unique_pattern_count=unique,
        effective_pattern_count=effective,
        total_applications=max(0, total),
        dominant_pattern_share=max_count / total if total > 0 else 0.0,
        threshold_exceeded=diversity < alert_threshold,
    )
