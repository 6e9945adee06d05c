"""Effectiveness, variance, priority and trust: hand-computed examples and properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pheromone.contracts import QuarantineStatus
from pheromone.services.learning.scores import decay_factor, effectiveness, priority, trust, variance
from pheromone.services.settings import LearningSettings

S = LearningSettings()
P, Q, V = QuarantineStatus.PENDING, QuarantineStatus.QUARANTINED, QuarantineStatus.VALIDATED


def test_fewer_than_three_applications_is_neutral() -> None:
    assert effectiveness(0, 0, [], [], None, S) == 0.55
    assert effectiveness(2, 0, [True, True], [1.0, 1.0], 0, S) == 0.55


def test_effectiveness_hand_computed() -> None:
    # recent 4/5 = 0.8; Laplace (4 + 0.5) / (5 + 1) = 0.75; grounding mean (0.9+0.8+0.7+0.6)/4 = 0.75
    # (0.7 x 0.8 + 0.3 x 0.75) x 1 x (0.7 + 0.3 x 0.75) = 0.785 x 0.925 = 0.726125
    recent, grounding = [True, True, False, True, True], [0.9, 0.8, None, 0.7, 0.6]
    assert effectiveness(4, 1, recent, grounding, 0.0, S) == pytest.approx(0.726125)
    # 30 days since the last confirmation: x 0.9; 60 days: x 0.81
    assert effectiveness(4, 1, recent, grounding, 30.0, S) == pytest.approx(0.726125 * 0.9)
    assert effectiveness(4, 1, recent, grounding, 60.0, S) == pytest.approx(0.726125 * 0.81)


def test_effectiveness_without_grounding_uses_the_default_and_only_the_last_window() -> None:
    # 10 successes then the window (newest first) holds 3 failures of 5: recent 0.4; Laplace 7.5/11
    recent = [False, False, False, True, True, True, True]  # longer than the window: only 5 count
    value = effectiveness(7, 3, recent, [None] * 7, None, S)
    assert value == pytest.approx((0.7 * 0.4 + 0.3 * 7.5 / 11) * 1.0 * (0.7 + 0.3 * 1.0))


def test_decay_factor() -> None:
    assert decay_factor(None, S) == 1.0
    assert decay_factor(-3, S) == 1.0
    assert decay_factor(15, S) == pytest.approx(0.9**0.5)


def test_variance_is_computed() -> None:
    assert variance(0, 0) == 0.0
    assert variance(5, 0) == 0.0
    assert variance(3, 1) == pytest.approx(0.1875)
    assert variance(2, 2) == pytest.approx(0.25)


def test_priority_hand_computed() -> None:
    # occurrences 9: log10(10)/2 = 0.5 -> floor 0.6; 0.8 x 0.6 x (1 - 0.1875) = 0.39
    assert priority(0.8, 9, 0.1875, S) == pytest.approx(0.39)
    # occurrences 99: log10(100)/2 = 1.0; 999: capped at 1.0
    assert priority(0.8, 99, 0.1875, S) == pytest.approx(0.65)
    assert priority(0.8, 999, 0.0, S) == pytest.approx(0.8)
    # occurrences 30: log10(31)/2 = 1.491362/2 = 0.745681
    assert priority(1.0, 30, 0.0, S) == pytest.approx(0.745681, abs=1e-6)


def test_trust_of_a_new_pattern_is_neutral() -> None:
    assert trust(0, 0, None, P, S) == 0.5
    assert trust(0, 0, None, V, S) == pytest.approx(0.6)
    assert trust(0, 0, None, Q, S) == pytest.approx(0.3)


def test_trust_hand_computed() -> None:
    # evidence 4/7; signal 0.3 x 0.75 - 0.4 x 0.25 + 0.2 x 1.0 = 0.325
    assert trust(3, 1, 0.0, P, S) == pytest.approx(0.5 + 4 / 7 * 0.325)
    # never confirmed: recency 0; evidence 3/6; signal -0.4
    assert trust(0, 3, None, P, S) == pytest.approx(0.5 - 0.5 * 0.4)
    assert trust(0, 3, None, Q, S) == pytest.approx(0.1)
    assert trust(100, 0, 0.0, V, S) == 1.0  # clamped


counts = st.integers(0, 500)
window = st.lists(st.booleans(), max_size=10)
groundings = st.lists(st.none() | st.floats(0, 1), max_size=10)
days = st.none() | st.floats(-10, 10_000)


@given(counts, counts, window, groundings, days)
def test_effectiveness_is_bounded(
    s: int, f: int, recent: list[bool], g: list[float | None], d: float | None
) -> None:
    assert 0.0 <= effectiveness(s, f, recent, g, d, S) <= 1.0


@given(
    st.integers(3, 300),
    st.lists(st.booleans(), min_size=5, max_size=5),
    st.integers(0, 4),
    st.lists(st.floats(0, 1), min_size=5, max_size=5),
    st.floats(0, 1000),
)
def test_a_success_instead_of_a_failure_never_lowers_effectiveness(
    n: int, recent: list[bool], i: int, g: list[float], d: float
) -> None:
    if recent[i]:
        return
    failures = max(sum(not r for r in recent), 1)
    s = max(0, n - failures)
    better = [*recent[:i], True, *recent[i + 1 :]]
    assert (
        effectiveness(s + 1, n - s - 1, better, g, d, S) >= effectiveness(s, n - s, recent, g, d, S) - 1e-12
    )


@given(counts, counts, window, st.floats(0, 1000), st.floats(0, 1000))
def test_older_confirmation_never_raises_effectiveness(
    s: int, f: int, recent: list[bool], d1: float, d2: float
) -> None:
    lo, hi = sorted((d1, d2))
    assert effectiveness(s, f, recent, [], hi, S) <= effectiveness(s, f, recent, [], lo, S) + 1e-12


@given(counts, counts, window, st.floats(0, 1), st.floats(0, 1))
def test_more_grounding_never_lowers_effectiveness(
    s: int, f: int, recent: list[bool], g1: float, g2: float
) -> None:
    lo, hi = sorted((g1, g2))
    assert effectiveness(s, f, recent, [hi] * 5, 0, S) >= effectiveness(s, f, recent, [lo] * 5, 0, S) - 1e-12


@given(counts, counts)
def test_variance_bounds(s: int, f: int) -> None:
    assert 0.0 <= variance(s, f) <= 0.25


@given(st.floats(0, 1), st.integers(0, 10**7), st.floats(0, 0.25))
def test_priority_is_bounded_and_never_above_effectiveness(e: float, occ: int, var: float) -> None:
    p = priority(e, occ, var, S)
    assert 0.0 <= p <= e + 1e-12
    assert p >= e * 0.6 * (1 - var) - 1e-12  # the frequency floor


@given(st.floats(0, 1), st.floats(0, 1), st.integers(0, 10**6), st.integers(0, 10**6), st.floats(0, 0.25))
def test_priority_is_monotone(e1: float, e2: float, o1: int, o2: int, var: float) -> None:
    (elo, ehi), (olo, ohi) = sorted((e1, e2)), sorted((o1, o2))
    assert priority(elo, olo, var, S) <= priority(ehi, olo, var, S) + 1e-12
    assert priority(elo, olo, var, S) <= priority(elo, ohi, var, S) + 1e-12
    assert priority(ehi, ohi, 0.25, S) <= priority(ehi, ohi, 0.0, S) + 1e-12


@given(counts, counts, days, st.sampled_from(list(QuarantineStatus)))
def test_trust_is_bounded(s: int, f: int, d: float | None, status: QuarantineStatus) -> None:
    assert 0.0 <= trust(s, f, d, status, S) <= 1.0


@given(counts, st.integers(1, 500), days)
def test_trust_rewards_successes_and_status(s: int, f: int, d: float | None) -> None:
    assert trust(s + 1, f - 1, d, P, S) >= trust(s, f, d, P, S) - 1e-12
    assert trust(s, f, d, V, S) >= trust(s, f, d, P, S) >= trust(s, f, d, Q, S)
