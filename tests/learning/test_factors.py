"""Success factors: time buckets, the observations an application contributes, the summary and "why"."""

from __future__ import annotations

import pytest

from pheromone.contracts import SuccessFactors, TimeOfDayBucket
from pheromone.contracts import time_bucket as contract_bucket
from pheromone.services.learning.factors import (
    GROUNDING,
    FactorCount,
    factor_rows,
    grounding_of,
    summarise,
    time_bucket,
    why,
)
from pheromone.services.settings import LearningSettings

S = LearningSettings()


@pytest.mark.parametrize(
    ("hour", "bucket"),
    [
        (0, "night"),
        (4, "night"),
        (5, "morning"),
        (11, "morning"),
        (12, "afternoon"),
        (16, "afternoon"),
        (17, "evening"),
        (20, "evening"),
        (21, "night"),
        (23, "night"),
    ],
)
def test_time_buckets(hour: int, bucket: str) -> None:
    assert time_bucket(hour, S) == TimeOfDayBucket(bucket)


def test_default_buckets_agree_with_the_contract_helper() -> None:
    assert [time_bucket(h, S) for h in range(24)] == [contract_bucket(h) for h in range(24)]


def test_bad_hour() -> None:
    with pytest.raises(ValueError):
        time_bucket(24, S)


def test_factor_rows() -> None:
    f = SuccessFactors(
        validation_types=["regex", "file", "file"],
        error_categories=["auth"],
        prior_sheet_status="failed",
        retry_iteration=2,
        escalation_was_pending=True,
    )
    assert factor_rows(f, 13, S) == [
        ("time_of_day", "afternoon"),
        ("validation_type", "file"),
        ("validation_type", "regex"),
        ("error_category", "auth"),
        ("prior_sheet_status", "failed"),
        ("retry_iteration", "2"),
        ("escalation_pending", "true"),
    ]
    # the producer's bucket wins over the event's hour; without factors only the bucket is known
    assert factor_rows(SuccessFactors(time_of_day_bucket="evening"), 3, S)[0] == ("time_of_day", "evening")
    assert factor_rows(None, 3, S) == [("time_of_day", "night")]


def test_grounding_of() -> None:
    assert grounding_of(SuccessFactors(grounding_confidence=0.3), 0.9) == 0.9
    assert grounding_of(SuccessFactors(grounding_confidence=0.3), None) == 0.3
    assert grounding_of(None, None) is None


ROWS = [
    FactorCount("time_of_day", "morning", 6, 5),
    FactorCount("time_of_day", "night", 4, 1),
    FactorCount("validation_type", "file", 8, 6),
    FactorCount("validation_type", "regex", 2, 0),
    FactorCount("error_category", "auth", 3, 2),
    FactorCount("retry_iteration", "0", 5, 3),
    FactorCount("retry_iteration", "1", 5, 3),
    FactorCount("escalation_pending", "false", 10, 6),
    FactorCount(GROUNDING, "", 10, 6, grounding_sum=4.8, grounding_n=6),
]


def test_summary_from_the_aggregate() -> None:
    summary = summarise(ROWS, successes=6, failures=4)
    assert summary is not None
    assert summary.validation_types == ["file"]  # regex never co-occurred with a success
    assert summary.error_categories == ["auth"]
    assert summary.time_of_day_bucket == TimeOfDayBucket.MORNING
    assert summary.retry_iteration == 0  # a 3-3 tie goes to the smaller value
    assert summary.escalation_was_pending is False
    assert summary.grounding_confidence == pytest.approx(0.8)
    assert summary.occurrence_count == 6
    assert summary.success_rate == pytest.approx(0.6)


def test_no_summary_before_a_success() -> None:
    assert summarise([FactorCount("time_of_day", "night", 3, 0)], 0, 3) is None
    assert why([], 0, 0, S)["has_factors"] is False


def test_why_analysis() -> None:
    w = why(ROWS, 6, 4, S)
    assert w["has_factors"]
    assert "typically succeeds in: morning" in w["factors_summary"]
    assert "High grounding confidence (0.80)" in w["key_conditions"]
    assert w["confidence"] == pytest.approx(min(1, 6 / 10) * 0.6)
    # factor lift: regex (0/2 vs 0.6) is the strongest signal
    top = w["factor_lift"][0]
    assert (top["factor"], top["value"], top["lift"]) == ("validation_type", "regex", pytest.approx(-0.6))


def recommended(rows: list[FactorCount], successes: int, failures: int) -> list[str]:
    return [r for r in why(rows, successes, failures, S)["recommendations"] if r.startswith("Best applied")]


def test_a_time_of_day_is_recommended_only_with_a_lift_over_enough_applications() -> None:
    # ROWS: morning 5/6 against the pattern's 6/10, a lift of +0.233 over 6 applications.
    assert recommended(ROWS, 6, 4) == [
        "Best applied during morning (success +0.23 against the pattern's, over 6 applications)"]
    # Every application in one bucket: its rate is the pattern's own, a lift of 0.
    assert recommended([FactorCount("time_of_day", "night", 10, 7)], 7, 3) == []
    # A lift below why_min_lift (10/16 against 0.6 is +0.025) is noise.
    assert recommended([FactorCount("time_of_day", "night", 16, 10), FactorCount("time_of_day", "morning", 4, 2)],
                       12, 8) == []
    # A strong lift from fewer than why_min_observations applications is not enough.
    few = [FactorCount("time_of_day", "night", 4, 4), FactorCount("time_of_day", "morning", 16, 8)]
    assert S.why_min_observations > 4 and recommended(few, 12, 8) == []


def test_too_few_observations_recommend_nothing_but_more_data() -> None:
    rows = [FactorCount("time_of_day", "night", 3, 3)]
    assert why(rows, 3, 0, S)["recommendations"] == ["Need more observations for reliable analysis"]
