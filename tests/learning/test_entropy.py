"""Entropy metrics: hand-computed cases, degenerate populations, and properties."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pheromone.services.learning.entropy import entropy_metrics, shannon_entropy

AT = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def metrics(counts: dict[str, int], threshold: float = 0.3):  # type: ignore[no-untyped-def]
    return entropy_metrics(counts, calculated_at=AT, alert_threshold=threshold)


def test_even_population_has_full_diversity() -> None:
    m = metrics({"a": 5, "b": 5, "c": 5, "d": 5})
    assert m.shannon_entropy == pytest.approx(2.0)
    assert m.max_possible_entropy == pytest.approx(2.0)
    assert m.diversity_index == pytest.approx(1.0)
    assert m.dominant_pattern_share == pytest.approx(0.25)
    assert (m.unique_pattern_count, m.effective_pattern_count, m.total_applications) == (4, 4, 20)
    assert not m.threshold_exceeded


def test_hand_computed_skewed_population() -> None:
    # p = (3/4, 1/4): H = -(0.75 log2 0.75 + 0.25 log2 0.25) = 0.811278; Hmax = log2 3 (c is known, unused).
    m = metrics({"a": 3, "b": 1, "c": 0})
    assert m.shannon_entropy == pytest.approx(0.8112781244591328)
    assert m.max_possible_entropy == pytest.approx(math.log2(3))
    assert m.diversity_index == pytest.approx(0.8112781244591328 / math.log2(3))
    assert m.dominant_pattern_share == pytest.approx(0.75)
    assert (m.unique_pattern_count, m.effective_pattern_count, m.total_applications) == (3, 2, 4)


def test_collapse_alerts_below_the_threshold() -> None:
    m = metrics({"a": 97, "b": 1, "c": 1, "d": 1}, threshold=0.3)
    assert m.diversity_index < 0.3
    assert m.threshold_exceeded


@pytest.mark.parametrize("counts", [{}, {"a": 0, "b": 0}, {"only": 12}])
def test_degenerate_populations_have_zero_diversity(counts: dict[str, int]) -> None:
    m = metrics(counts)
    assert m.shannon_entropy == 0.0
    assert m.diversity_index == 0.0
    assert m.threshold_exceeded


def test_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        metrics({"a": -1})


counts_st = st.dictionaries(st.text(min_size=1, max_size=5), st.integers(0, 10_000), max_size=30)


@given(counts_st, st.floats(0, 1))
def test_bounds(counts: dict[str, int], threshold: float) -> None:
    m = metrics(counts, threshold)
    assert 0.0 <= m.shannon_entropy <= m.max_possible_entropy + 1e-9
    assert 0.0 <= m.diversity_index <= 1.0
    assert 0.0 <= m.dominant_pattern_share <= 1.0
    assert m.effective_pattern_count <= m.unique_pattern_count
    assert m.threshold_exceeded == (m.diversity_index < threshold)
    if m.total_applications:
        assert m.dominant_pattern_share >= 1 / m.effective_pattern_count - 1e-12


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=20), st.integers(1, 50))
def test_scaling_counts_keeps_entropy(values: list[int], k: int) -> None:
    assert shannon_entropy([v * k for v in values]) == pytest.approx(shannon_entropy(values), abs=1e-9)
