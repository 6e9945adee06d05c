"""Effectiveness and epistemic drift: hand-computed windows and properties."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pheromone.services.learning.drift import belief_entropy, effectiveness_drift, epistemic_drift
from pheromone.services.settings import LearningSettings

S = LearningSettings()


def test_needs_two_full_windows() -> None:
    assert effectiveness_drift("p", "n", [(True, None)] * 9, S) is None
    assert epistemic_drift("p", "n", [0.5] * 9, S) is None


def test_effectiveness_drift_hand_computed() -> None:
    # newest first: recent window 1/5 successes, older window 5/5
    apps = [(False, 0.5)] * 4 + [(True, 0.5)] + [(True, 0.5)] * 5
    d = effectiveness_drift("p", "name", apps, S)
    assert d is not None
    assert d.effectiveness_after == pytest.approx(1.5 / 6)  # (1 + 0.5) / (5 + 1)
    assert d.effectiveness_before == pytest.approx(5.5 / 6)
    assert d.drift_magnitude == pytest.approx(4 / 6)
    assert d.drift_direction == "negative"
    assert d.grounding_confidence_avg == pytest.approx(0.5)
    assert d.applications_analyzed == 10 and d.window_size == 5
    assert d.threshold_exceeded


def test_grounding_amplifies_small_drift() -> None:
    # one more success in the recent window: magnitude 1/6 = 0.1667 < 0.2 ...
    apps = [(True, None)] * 3 + [(False, None)] * 2 + [(True, None)] * 2 + [(False, None)] * 3
    confident = effectiveness_drift("p", "n", [(ok, 1.0) for ok, _ in apps], S)
    doubtful = effectiveness_drift("p", "n", [(ok, 0.6) for ok, _ in apps], S)
    assert confident is not None and doubtful is not None
    assert confident.drift_magnitude == pytest.approx(1 / 6)
    assert not confident.threshold_exceeded  # 0.1667 / 1.0 <= 0.2
    assert doubtful.threshold_exceeded  # 0.1667 / 0.6 = 0.278 > 0.2
    assert confident.drift_direction == "positive"


def test_epistemic_drift_hand_computed() -> None:
    values = [0.4] * 5 + [0.8] * 5  # newest first: belief fell from 0.8 to 0.4
    e = epistemic_drift("p", "n", values, S)
    assert e is not None
    assert (e.confidence_before, e.confidence_after) == (pytest.approx(0.8), pytest.approx(0.4))
    assert e.belief_change == pytest.approx(-0.4)
    # mean 0.6, population std 0.2: coefficient of variation 1/3
    assert e.belief_entropy == pytest.approx(1 / 3)
    assert e.drift_direction == "weakening"
    assert e.threshold_exceeded


def test_belief_entropy_edges() -> None:
    assert belief_entropy([]) == 0.0
    assert belief_entropy([0.0, 0.0]) == 0.0
    assert belief_entropy([0.7] * 10) == pytest.approx(0.0, abs=1e-12)
    assert belief_entropy([0.0, 1.0]) == 1.0  # std 0.5 / mean 0.5


def test_stable_band() -> None:
    e = epistemic_drift("p", "n", [0.74] * 5 + [0.7] * 5, S)
    assert e is not None and e.drift_direction == "stable" and not e.threshold_exceeded


apps_st = st.lists(st.tuples(st.booleans(), st.none() | st.floats(0, 1)), min_size=10, max_size=20)


@given(apps_st)
def test_effectiveness_drift_bounds(apps: list[tuple[bool, float | None]]) -> None:
    d = effectiveness_drift("p", "n", apps, S)
    assert d is not None
    assert 0 < d.effectiveness_before < 1 and 0 < d.effectiveness_after < 1
    assert d.drift_magnitude == pytest.approx(abs(d.effectiveness_after - d.effectiveness_before))
    assert d.drift_magnitude <= 5 / 6 + 1e-12  # Laplace keeps windows inside [1/12, 11/12]


@given(st.lists(st.floats(0, 1), min_size=10, max_size=20))
def test_epistemic_drift_bounds(values: list[float]) -> None:
    e = epistemic_drift("p", "n", values, S)
    assert e is not None
    assert -1 <= e.belief_change <= 1 and 0 <= e.belief_entropy <= 1
    assert e.threshold_exceeded == (abs(e.belief_change) * (1 + e.belief_entropy) > S.epistemic_threshold)
    assert not math.isnan(e.belief_entropy)
