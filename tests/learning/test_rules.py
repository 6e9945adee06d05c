"""Learned wait, escalation similarity, execution confidence and window, recurring issue classes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pheromone.services.learning.escalations import distance, outcome_rank, rank_key, within
from pheromone.services.learning.executions import execution_confidence, optimal_window
from pheromone.services.learning.trajectory import recurring_issues
from pheromone.services.learning.waits import learned_value, learned_wait
from pheromone.services.settings import LearningSettings

S = LearningSettings()


def test_learned_value_blends_mean_and_minimum() -> None:
    assert learned_value([10, 20], S) is None  # fewer than 3 samples
    assert learned_value([10, 20, 30], S) == pytest.approx((20 + 10) / 2)


def test_learned_wait_strategies() -> None:
    # no data: static (429's static fallback is 60 s)
    w = learned_wait("429", None, [], 0, S)
    assert (w.wait_seconds, w.confidence, w.strategy) == (60.0, 0.0, "static_fallback")
    # 10+ samples: learned (40 -> mean 40, min 40), above the floor 0.5 x 60 = 30
    w = learned_wait("429", None, [40.0] * 12, 10, S)
    assert (w.wait_seconds, w.confidence, w.strategy) == (40.0, 1.0, "global_learned")
    # floored at half the static wait
    assert learned_wait("429", None, [4.0] * 12, 10, S).wait_seconds == 30.0
    # 5 samples: confidence 0.5 < 0.7 -> blend with weight 0.5/0.7
    w = learned_wait("timeout", None, [8.0] * 5, 5, S)
    weight = 0.5 / 0.7
    assert w.strategy == "global_learned_blend"
    assert w.wait_seconds == pytest.approx(weight * 8.0 + (1 - weight) * 10.0)
    # unknown code: the generic static wait, or the caller's
    assert learned_wait("E999", "m", [], 0, S).wait_seconds == 30.0
    assert learned_wait("E999", "m", [], 0, S, static_seconds=7.0).wait_seconds == 7.0


@given(st.lists(st.floats(0, 1e6), max_size=30), st.integers(0, 100), st.none() | st.floats(0.01, 86_400))
def test_learned_wait_is_clamped(waits: list[float], samples: int, static: float | None) -> None:
    w = learned_wait("429", None, waits, samples, S, static_seconds=static)
    assert S.wait_min_s <= w.wait_seconds <= S.wait_max_s
    assert 0.0 <= w.confidence <= 1.0


def test_escalation_similarity_on_one_scale() -> None:
    assert distance(0.5, 0.5, 0.6, 0.45) == pytest.approx(0.15)
    assert within(0.5, 0.5, 0.65, 0.35, 0.15, 0.15)
    assert not within(0.5, 0.5, 0.5, 0.66, 0.15, 0.15)
    assert [outcome_rank(o) for o in ("success", "skipped", None, "failed", "aborted")] == [0, 1, 2, 3, 3]
    near_failure = rank_key(0.5, 0.5, 0.5, 0.5, "failed", 1)
    far_success = rank_key(0.5, 0.5, 0.6, 0.6, "success", 1)
    assert far_success < near_failure  # a successful outcome beats a closer failure


def test_execution_confidence() -> None:
    assert execution_confidence(0.9, 0, True, S) == pytest.approx(1.0)
    assert execution_confidence(0.9, 2, False, S) == pytest.approx(0.7)
    assert execution_confidence(0.9, 50, False, S) == pytest.approx(0.4)  # penalty capped at 5 retries
    assert execution_confidence(0.1, 3, False, S) == 0.0


@given(st.floats(0, 1), st.integers(0, 100), st.booleans())
def test_execution_confidence_bounds(rate: float, retries: int, first: bool) -> None:
    assert 0 <= execution_confidence(rate, retries, first, S) <= 1


def test_optimal_window() -> None:
    w = optimal_window({9: (3, 3), 10: (7, 10), 11: (2, 3), 14: (0, 4), 15: (1, 2), 20: (1, 4)}, S)
    assert w["optimal_hours"] == [9, 10]  # 1.0 and 0.7
    assert w["avoid_hours"] == [14, 20]  # 0.0 and 0.25; 15 has too few samples
    assert w["sample_count"] == 26
    assert w["measured_hours"] == 5 and w["enough_data"] is True
    assert w["confidence"] == pytest.approx(26 / 50 * 5 / 24)  # five of the day's 24 hours measured
    assert optimal_window({}, S)["confidence"] == 0.0


def test_one_hour_of_recoveries_is_no_window() -> None:
    # A few busy minutes: many recoveries, all in one hour. There is nothing to choose between.
    w = optimal_window({2: (1390, 1390), 3: (2, 2)}, S)
    assert (w["optimal_hours"], w["avoid_hours"], w["confidence"]) == ([], [], 0.0)
    assert w["enough_data"] is False and w["measured_hours"] == 1 and w["sample_count"] == 1392
    day = optimal_window({h: (50, 50) for h in range(24)}, S)
    assert day["confidence"] == 1.0 and day["optimal_hours"] == list(range(24))


@given(st.dictionaries(st.integers(0, 23), st.tuples(st.integers(0, 100), st.integers(0, 100))
                       .map(lambda t: (min(t), max(t)))))
def test_optimal_window_confidence_is_bounded_and_needs_enough_hours(hours: dict[int, tuple[int, int]]) -> None:
    w = optimal_window(hours, S)
    assert 0.0 <= w["confidence"] <= 1.0
    if not w["enough_data"]:
        assert w["confidence"] == 0.0 and not w["optimal_hours"] and not w["avoid_hours"]


def test_recurring_issues() -> None:
    entries = [(1, ["a", "b"]), (2, ["a"]), (3, ["b", "c", "c"]), (4, ["a", "c"])]
    assert recurring_issues(entries, min_occurrences=2) == {"a": [4, 2, 1], "b": [3, 1], "c": [4, 3]}
    assert recurring_issues(entries, min_occurrences=2, window_cycles=2) == {"c": [4, 3]}
    assert recurring_issues([], min_occurrences=1) == {}
