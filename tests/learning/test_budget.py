"""Exploration budget steps: initial, boost, decay, floor and ceiling."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pheromone.contracts import AdjustmentType
from pheromone.services.learning.budget import next_budget
from pheromone.services.settings import LearningSettings

S = LearningSettings()


def test_initial() -> None:
    value, kind, reason = next_budget(None, entropy=0.9, low_entropy=False, s=S)
    assert (value, kind) == (0.15, AdjustmentType.INITIAL)
    assert "initial" in reason


def test_boost_and_ceiling() -> None:
    assert next_budget(0.15, entropy=0.1, low_entropy=True, s=S)[:2] == (
        pytest.approx(0.25),
        AdjustmentType.BOOST,
    )
    assert next_budget(0.45, entropy=0.1, low_entropy=True, s=S)[:2] == (
        0.50,
        AdjustmentType.CEILING_ENFORCED,
    )


def test_decay_and_floor() -> None:
    assert next_budget(0.2, entropy=0.9, low_entropy=False, s=S)[:2] == (
        pytest.approx(0.19),
        AdjustmentType.DECAY,
    )
    # 0.052 x 0.95 = 0.0494 < 0.05: the floor holds.
    assert next_budget(0.052, entropy=0.9, low_entropy=False, s=S)[:2] == (
        0.05,
        AdjustmentType.FLOOR_ENFORCED,
    )


def test_sequence_from_initial_reaches_the_floor_and_stays() -> None:
    value, _, _ = next_budget(None, entropy=None, low_entropy=False, s=S)
    kinds = []
    for _ in range(60):
        value, kind, _ = next_budget(value, entropy=0.8, low_entropy=False, s=S)
        kinds.append(kind)
    assert value == 0.05
    assert kinds[-1] == AdjustmentType.FLOOR_ENFORCED
    # 0.15 x 0.95^n >= 0.05 while n <= 21: 21 decays, then the floor.
    assert kinds.count(AdjustmentType.DECAY) == 21


@given(st.none() | st.floats(0, 1), st.booleans(), st.none() | st.floats(0, 20))
def test_always_within_floor_and_ceiling(current: float | None, low: bool, entropy: float | None) -> None:
    value, _, reason = next_budget(current, entropy=entropy, low_entropy=low, s=S)
    assert S.budget_floor <= value <= S.budget_ceiling
    assert reason


@given(st.floats(0.05, 0.5))
def test_boost_never_lowers_and_decay_never_raises(current: float) -> None:
    assert next_budget(current, entropy=0.0, low_entropy=True, s=S)[0] >= current
    assert next_budget(current, entropy=1.0, low_entropy=False, s=S)[0] <= current
