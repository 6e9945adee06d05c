"""The quarantine state machine: every legal and illegal transition, the automatic rules and the grace."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import QuarantineStatus
from services.learning.lifecycle import (
    ALLOWED_TRANSITIONS,
    IllegalTransition,
    automatic_transition,
    check_transition,
    is_revisit,
)
from services.settings import LearningSettings

S = LearningSettings()
P, Q, V, R = (
    QuarantineStatus.PENDING,
    QuarantineStatus.QUARANTINED,
    QuarantineStatus.VALIDATED,
    QuarantineStatus.RETIRED,
)
LEGAL = {(P, V), (P, Q), (P, R), (V, Q), (V, R), (Q, P), (Q, V), (Q, R)}
ALL_PAIRS = list(itertools.product(QuarantineStatus, repeat=2))


def test_the_table_is_exactly_the_documented_lifecycle() -> None:
    assert {(a, b) for a, targets in ALLOWED_TRANSITIONS.items() for b in targets} == LEGAL


@pytest.mark.parametrize(("current", "to"), sorted(LEGAL), ids=lambda x: x.value)
def test_legal_transitions_pass(current: QuarantineStatus, to: QuarantineStatus) -> None:
    check_transition(current, to)


@pytest.mark.parametrize(("current", "to"), sorted(set(ALL_PAIRS) - LEGAL), ids=lambda x: x.value)
def test_illegal_transitions_are_refused_with_a_clear_error(
    current: QuarantineStatus, to: QuarantineStatus
) -> None:
    with pytest.raises(IllegalTransition, match=f"illegal transition {current.value} -> {to.value}"):
        check_transition(current, to)


def test_only_quarantined_to_pending_is_a_revisit() -> None:
    assert [pair for pair in ALL_PAIRS if is_revisit(*pair)] == [(Q, P)]


@pytest.mark.parametrize(
    ("status", "n", "eff", "expected"),
    [
        (P, 2, 0.99, None),  # too few applications
        (P, 2, 0.01, None),
        (P, 3, 0.60, V),  # >= 0.60 validates (inclusive)
        (P, 3, 0.5999, None),
        (P, 3, 0.35, None),  # < 0.35 quarantines (exclusive)
        (P, 3, 0.3499, Q),
        (V, 3, 0.30, None),  # validated degrades below 0.30
        (V, 3, 0.2999, Q),
        (V, 50, 0.99, None),
        (Q, 10, 0.99, None),  # quarantined and retired never move on their own
        (Q, 10, 0.01, None),
        (R, 10, 0.99, None),
    ],
)
def test_automatic_rules(
    status: QuarantineStatus, n: int, eff: float, expected: QuarantineStatus | None
) -> None:
    move = automatic_transition(status, n, eff, 0, S)
    assert (move[0] if move else None) == expected
    if move:
        assert move[1]  # always a reason


def test_grace_blocks_requarantine_but_not_validation() -> None:
    # revisited at 10 applications with a grace of 5: no automatic quarantine before 15
    assert automatic_transition(P, 14, 0.1, 15, S) is None
    after = automatic_transition(P, 15, 0.1, 15, S)
    assert after is not None and after[0] == Q
    during = automatic_transition(P, 12, 0.9, 15, S)
    assert during is not None and during[0] == V
    assert automatic_transition(V, 12, 0.1, 15, S) is None


@given(st.sampled_from(list(QuarantineStatus)), st.integers(0, 1000), st.floats(0, 1), st.integers(0, 1000))
def test_automatic_moves_are_always_legal(status: QuarantineStatus, n: int, eff: float, grace: int) -> None:
    move = automatic_transition(status, n, eff, grace, S)
    if move is not None:
        check_transition(status, move[0])
        assert n >= S.min_applications
