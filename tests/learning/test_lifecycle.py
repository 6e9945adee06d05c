"""The quarantine state machine: every legal and illegal transition, the automatic rules and the grace."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pheromone.contracts import QuarantineStatus
from pheromone.services.learning.lifecycle import (
    ALLOWED_TRANSITIONS,
    IllegalTransition,
    automatic_transition,
    check_transition,
    is_revisit,
    resets_evidence,
    wilson_bounds,
)
from pheromone.services.settings import LearningSettings

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


def test_wilson_bounds_match_the_published_interval() -> None:
    # 8 of 10 at 95 % two-sided (each bound 97.5 % one-sided): 0.490 to 0.943 (Wilson 1927; Newcombe 1998)
    low, high = wilson_bounds(8, 10, 0.975)
    assert (round(low, 3), round(high, 3)) == (0.490, 0.943)
    assert wilson_bounds(0, 0, 0.9) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("status", "n", "eff", "evidence", "expected"),
    [
        (P, 2, 0.99, (2, 2), None),  # too few applications
        (P, 50, 0.01, (0, 5), None),  # too little evidence since the last quarantine move: no bound decides
        (P, 6, 0.01, (0, 6), Q),  # upper bound 0.215 < 0.5
        (P, 6, 0.01, (2, 6), None),  # upper bound 0.568: 2 of 6 does not say it is bad
        (P, 6, 0.60, (6, 6), V),  # lower bound 0.785 > 0.5 and effectiveness >= 0.60
        (P, 6, 0.5999, (6, 6), None),  # the seed's effectiveness threshold still applies
        (P, 6, 0.90, (4, 6), None),  # lower bound 0.432: not yet evidence that it is good
        (V, 20, 0.10, (6, 20), Q),  # upper bound 0.442 < 0.45
        (V, 20, 0.10, (7, 20), None),  # upper bound 0.488
        (Q, 30, 0.10, (8, 10), P),  # probation: lower bound 0.60 > 0.5 since quarantine
        (Q, 30, 0.99, (5, 10), None),
        (R, 30, 0.99, (30, 30), None),  # retired never moves on its own
        (R, 30, 0.01, (0, 30), None),
    ],
)
def test_automatic_rules(
    status: QuarantineStatus, n: int, eff: float, evidence: tuple[int, int], expected: QuarantineStatus | None
) -> None:
    move = automatic_transition(status, n, eff, 0, S, evidence=evidence)
    assert (move[0] if move else None) == expected
    if move:
        assert move[1]  # always a reason


def test_grace_blocks_requarantine_but_not_validation() -> None:
    # revisited at 10 applications with a grace of 5: no automatic quarantine before 15
    assert automatic_transition(P, 14, 0.1, 15, S, evidence=(0, 8)) is None
    after = automatic_transition(P, 15, 0.1, 15, S, evidence=(0, 8))
    assert after is not None and after[0] == Q
    during = automatic_transition(P, 12, 0.9, 15, S, evidence=(8, 8))
    assert during is not None and during[0] == V
    assert automatic_transition(V, 12, 0.1, 15, S, evidence=(0, 8)) is None


def test_only_moves_into_or_out_of_quarantine_restart_the_evidence() -> None:
    assert {pair for pair in ALL_PAIRS if resets_evidence(*pair)} == {
        (a, b) for a, b in ALL_PAIRS if Q in (a, b)
    }


@given(
    st.sampled_from(list(QuarantineStatus)), st.integers(0, 1000), st.floats(0, 1), st.integers(0, 1000),
    st.integers(0, 200), st.integers(0, 200),
)
def test_automatic_moves_are_always_legal_and_need_evidence(
    status: QuarantineStatus, n: int, eff: float, grace: int, ok: int, more: int
) -> None:
    evidence = (ok, ok + more)
    move = automatic_transition(status, n, eff, grace, S, evidence=evidence)
    if move is not None:
        check_transition(status, move[0])
        assert n >= S.min_applications and evidence[1] >= S.lifecycle_min_evidence
        low, high = wilson_bounds(*evidence, S.lifecycle_confidence)
        if move[0] == Q:
            assert high < max(S.quarantine_threshold, S.requarantine_threshold)  # evidence says bad
        else:
            assert low > S.release_threshold  # evidence says good


@given(st.integers(0, 500), st.integers(0, 500), st.floats(0.51, 0.999))
def test_the_observed_rate_is_inside_its_interval(ok: int, more: int, confidence: float) -> None:
    """What lets the rule skip the interval when the observed rate cannot pass a bound."""
    n = ok + more
    low, high = wilson_bounds(ok, n, confidence)
    if n:
        assert low - 1e-12 <= ok / n <= high + 1e-12
