"""Escalation learning (seed 000, v11): the most similar past decision for a new escalation.

Confidence and validation pass rate are both fractions in [0, 1] (the reference mixed a 0-1 confidence with
a 0-100 pass rate and divided one by 100 in the ordering but not in the tolerance). A past decision is
similar when |confidence diff| <= 0.15 and |pass-rate diff| <= 0.15; candidates are ranked by outcome
(success, then skipped, then unknown, then failed/aborted) and then by distance |dc| + |dv|, then newest.
"""

from __future__ import annotations

OUTCOME_RANK: dict[str | None, int] = {"success": 0, "skipped": 1, None: 2, "failed": 3, "aborted": 3}


def outcome_rank(outcome: str | None) -> int:
    return OUTCOME_RANK.get(outcome, 3)


def distance(confidence: float, pass_rate: float, other_confidence: float, other_pass_rate: float) -> float:
    return abs(confidence - other_confidence) + abs(pass_rate - other_pass_rate)


def within(
    confidence: float,
    pass_rate: float,
    other_confidence: float,
    other_pass_rate: float,
    confidence_tolerance: float,
    pass_rate_tolerance: float,
) -> bool:
    return (
        abs(confidence - other_confidence) <= confidence_tolerance + 1e-12
        and abs(pass_rate - other_pass_rate) <= pass_rate_tolerance + 1e-12
    )


def rank_key(
    confidence: float,
    pass_rate: float,
    other_confidence: float,
    other_pass_rate: float,
    outcome: str | None,
    recorded_us: int,
) -> tuple[int, float, int]:
    """Sort key of a candidate: better outcome, then closer, then newer."""
    return (
        outcome_rank(outcome),
        distance(confidence, pass_rate, other_confidence, other_pass_rate),
        -recorded_us,
    )
