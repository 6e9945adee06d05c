"""Success factors (seed 000, v22): WHY a pattern works, aggregated per pattern.

Each application adds one observation per factor value present (`factor_rows`): the store keeps
(applications, successes) per (pattern, factor, value) as upsert increments (`services.store.patterns`), so
concurrent producers never lose an update. Factors: every validation type and error category, the prior
sheet status, the time-of-day bucket (the producer's, else the event's UTC hour), the retry iteration, whether
an escalation was pending, and the grounding confidence (summed, for its mean).

`summarise` turns the aggregate into the seed's `SuccessFactors` (conditions present when it *succeeded*:
unions of types and categories, the most common status/bucket/retry, the mean grounding); `why` is the
seed's `analyze_pattern_why` plus the lift of each factor value (its success rate against the pattern's).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pheromone.contracts import SuccessFactors, TimeOfDayBucket

if TYPE_CHECKING:
    from pheromone.services.settings import LearningSettings

GROUNDING = "grounding"
LIST_FACTORS = ("validation_type", "error_category")
MODE_FACTORS = ("prior_sheet_status", "time_of_day", "retry_iteration", "escalation_pending")


def time_bucket(hour: int, s: LearningSettings) -> TimeOfDayBucket:
    """Morning [5, 12), afternoon [12, 17), evening [17, 21), night otherwise (hours from settings)."""
    if not 0 <= hour <= 23:
        raise ValueError(f"hour must be 0-23, got {hour}")
    if s.morning_start_hour <= hour < s.afternoon_start_hour:
        return TimeOfDayBucket.MORNING
    if s.afternoon_start_hour <= hour < s.evening_start_hour:
        return TimeOfDayBucket.AFTERNOON
    if s.evening_start_hour <= hour < s.night_start_hour:
        return TimeOfDayBucket.EVENING
    return TimeOfDayBucket.NIGHT


def factor_rows(
    factors: SuccessFactors | None, event_hour: int, s: LearningSettings
) -> list[tuple[str, str]]:
    """The (factor, value) observations one application contributes (deduplicated, in a stable order)."""
    bucket = (
        factors.time_of_day_bucket if factors and factors.time_of_day_bucket else time_bucket(event_hour, s)
    )
    rows: list[tuple[str, str]] = [("time_of_day", bucket.value)]
    if factors is not None:
        rows += [("validation_type", v) for v in sorted(set(factors.validation_types))]
        rows += [("error_category", v) for v in sorted(set(factors.error_categories))]
        if factors.prior_sheet_status is not None:
            rows.append(("prior_sheet_status", factors.prior_sheet_status))
        rows.append(("retry_iteration", str(factors.retry_iteration)))
        rows.append(("escalation_pending", "true" if factors.escalation_was_pending else "false"))
    return rows


def grounding_of(factors: SuccessFactors | None, grounding: float | None) -> float | None:
    """The application's grounding: the event's own, else the one inside its success factors."""
    if grounding is not None:
        return grounding
    return factors.grounding_confidence if factors is not None else None


@dataclass(frozen=True, slots=True)
class FactorCount:
    factor: str
    value: str
    applications: int
    successes: int
    grounding_sum: float = 0.0
    grounding_n: int = 0


def _mode(rows: Iterable[FactorCount]) -> str | None:
    # Most successes; ties go to the smaller value, so the summary is the same whatever the arrival order.
    best = sorted((r for r in rows if r.successes > 0), key=lambda r: (-r.successes, r.value))
    return best[0].value if best else None


def summarise(rows: Sequence[FactorCount], successes: int, failures: int) -> SuccessFactors | None:
    """The seed's SuccessFactors from the aggregate; None before the first successful observation."""
    by: dict[str, list[FactorCount]] = {}
    for r in rows:
        by.setdefault(r.factor, []).append(r)
    observed = sum(r.successes for r in by.get("time_of_day", []))
    if observed == 0:
        return None
    g = next(iter(by.get(GROUNDING, [])), None)
    retry = _mode(by.get("retry_iteration", []))
    pending = _mode(by.get("escalation_pending", []))
    n = successes + failures
    return SuccessFactors.model_validate(
        {
            "validation_types": sorted(r.value for r in by.get("validation_type", []) if r.successes)[:256],
            "error_categories": sorted(r.value for r in by.get("error_category", []) if r.successes)[:256],
            "prior_sheet_status": _mode(by.get("prior_sheet_status", [])),
            "time_of_day_bucket": _mode(by.get("time_of_day", [])),
            "retry_iteration": int(retry) if retry is not None else 0,
            "escalation_was_pending": pending == "true",
            "grounding_confidence": (g.grounding_sum / g.grounding_n) if g and g.grounding_n else None,
            "occurrence_count": observed,
            "success_rate": successes / n if n else 1.0,
        },
        strict=False,
    )


def best_time(lifts: Sequence[dict[str, Any]], s: LearningSettings) -> dict[str, Any] | None:
    """The time of day to recommend: the bucket with the highest lift of at least `why_min_lift` over at least
    `why_min_observations` applications; None when no bucket beats the pattern's own rate by that much (with
    every application in one bucket, its lift is exactly 0)."""
    candidates = [
        d for d in lifts
        if d["factor"] == "time_of_day" and d["applications"] >= s.why_min_observations
        and d["lift"] >= s.why_min_lift
    ]
    return max(candidates, key=lambda d: (d["lift"], d["value"]), default=None)


def why(rows: Sequence[FactorCount], successes: int, failures: int, s: LearningSettings) -> dict[str, Any]:
    """The "why" analysis: summary, key conditions, confidence, recommendations and per-factor lift."""
    summary = summarise(rows, successes, failures)
    n = successes + failures
    base = successes / n if n else 0.0
    lifts: list[dict[str, Any]] = sorted(
        (
            {
                "factor": r.factor,
                "value": r.value,
                "applications": r.applications,
                "success_rate": round(r.successes / r.applications, 4),
                "lift": round(r.successes / r.applications - base, 4),
            }
            for r in rows
            if r.factor != GROUNDING and r.applications > 0
        ),
        key=lambda d: (-abs(d["lift"]), d["factor"], d["value"]),
    )
    if summary is None:
        return {
            "has_factors": False,
            "factors_summary": "No success factors captured yet",
            "key_conditions": [],
            "confidence": 0.0,
            "recommendations": ["Apply this pattern more times to capture success factors"],
            "observation_count": 0,
            "success_rate": base,
            "factor_lift": lifts,
        }
    parts = []
    if summary.validation_types:
        parts.append(f"validation types: {', '.join(summary.validation_types)}")
    if summary.error_categories:
        parts.append(f"error categories: {', '.join(summary.error_categories)}")
    if summary.time_of_day_bucket:
        parts.append(f"typically succeeds in: {summary.time_of_day_bucket.value}")
    if summary.prior_sheet_status:
        parts.append(f"prior sheet was: {summary.prior_sheet_status}")
    conditions = []
    if summary.grounding_confidence is not None and summary.grounding_confidence > 0.7:
        conditions.append(f"High grounding confidence ({summary.grounding_confidence:.2f})")
    conditions.append(
        "Succeeds on first attempt"
        if summary.retry_iteration == 0
        else f"Often succeeds after {summary.retry_iteration} retries"
    )
    if summary.validation_types:
        conditions.append(f"Works with {len(summary.validation_types)} validation types")
    if not summary.escalation_was_pending:
        conditions.append("Succeeds without escalation")
    recommendations = []
    if summary.occurrence_count < s.why_min_observations:
        recommendations.append("Need more observations for reliable analysis")
    else:
        if summary.success_rate > 0.8:
            recommendations.append("High confidence pattern - consider for auto-apply")
        if summary.success_rate < 0.5:
            recommendations.append("Low success rate - review pattern relevance")
        best = best_time(lifts, s)
        if best is not None:
            recommendations.append(f"Best applied during {best['value']} (success {best['lift']:+.2f} against "
                                   f"the pattern's, over {best['applications']} applications)")
    confidence = (
        min(1.0, summary.occurrence_count / s.why_full_confidence_observations) * summary.success_rate
    )
    return {
        "has_factors": True,
        "factors_summary": "; ".join(parts) or "Context captured",
        "key_conditions": conditions,
        "confidence": confidence,
        "recommendations": recommendations,
        "observation_count": summary.occurrence_count,
        "success_rate": summary.success_rate,
        "success_factors": summary.model_dump(mode="json"),
        "factor_lift": lifts,
    }
