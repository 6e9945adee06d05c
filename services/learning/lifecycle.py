"""The quarantine lifecycle (seed 000, v19/v25): legal transitions and the automatic rules.

    pending ──▶ validated ──▶ quarantined ──▶ pending (a revisit, or probation earned by evidence)
       │  └──────────────────▶    │   └─────▶ validated (manual review)
       └──────────▶ retired ◀─────┴── (from any non-retired state; retired is terminal)

Automatic moves need evidence both ways (a deviation from the reference, docs/LEARNING.md). The evidence is
the pattern's (successes, applications) since it last entered or left quarantine (all of them if it never
did), and its Wilson score interval at one-sided level `lifecycle_confidence`; no bound decides before
`lifecycle_min_evidence` such applications:
  - pending, effectiveness >= validate_threshold and lower bound > release_threshold  -> validated
  - pending, upper bound < quarantine_threshold                                       -> quarantined
  - validated, upper bound < requarantine_threshold                                   -> quarantined
  - quarantined, lower bound > release_threshold                                      -> pending (probation)
A pattern is quarantined only when the evidence says it fails more often than the threshold allows, and it
leaves quarantine only when the evidence since says it does not. A move to pending from quarantined (a revisit
or probation) opens `revisit_grace_applications` of grace against automatic re-quarantine. Retired patterns
never move automatically.
"""

from __future__ import annotations

from functools import lru_cache
from math import sqrt
from statistics import NormalDist
from typing import TYPE_CHECKING

from pheromone.contracts import QuarantineStatus

if TYPE_CHECKING:
    from pheromone.services.settings import LearningSettings

P, Q, V, R = (
    QuarantineStatus.PENDING,
    QuarantineStatus.QUARANTINED,
    QuarantineStatus.VALIDATED,
    QuarantineStatus.RETIRED,
)

ALLOWED_TRANSITIONS: dict[QuarantineStatus, frozenset[QuarantineStatus]] = {
    P: frozenset({V, Q, R}),
    V: frozenset({Q, R}),
    Q: frozenset({P, V, R}),
    R: frozenset(),
}
"""The lifecycle's legal moves. Retired is terminal; quarantined -> pending is a revisit; no self-loops."""


class IllegalTransition(ValueError):
    """A transition the lifecycle does not allow."""


def check_transition(current: QuarantineStatus, to: QuarantineStatus) -> None:
    """Raise IllegalTransition with a one-line reason unless current -> to is allowed."""
    if to not in ALLOWED_TRANSITIONS[current]:
        allowed = ", ".join(sorted(x.value for x in ALLOWED_TRANSITIONS[current])) or "none: it is terminal"
        raise IllegalTransition(
            f"illegal transition {current.value} -> {to.value} (from {current.value}: {allowed})"
        )


def is_revisit(current: QuarantineStatus, to: QuarantineStatus) -> bool:
    return current == Q and to == P


def resets_evidence(current: QuarantineStatus, to: QuarantineStatus) -> bool:
    """Does a move start the evidence over? Entering or leaving quarantine does: the question changes."""
    return Q in (current, to)


@lru_cache(maxsize=16)
def _quantile(confidence: float) -> float:
    return NormalDist().inv_cdf(confidence)


def wilson_bounds(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """The Wilson score interval of a success rate, each bound one-sided at `confidence` ((0, 1) if n = 0)."""
    if n <= 0:
        return 0.0, 1.0
    z = _quantile(confidence)
    p, z2 = successes / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def automatic_transition(
    status: QuarantineStatus,
    applications: int,
    effectiveness_score: float,
    grace_until: int,
    s: LearningSettings,
    *,
    evidence: tuple[int, int],
) -> tuple[QuarantineStatus, str] | None:
    """The automatic move after an application, with its reason, or None.

    `applications`: all of the pattern's; `evidence`: (successes, applications) since it last entered or left
    quarantine; `grace_until`: the application count before which automatic quarantine is suppressed.
    """
    ok, n = evidence
    if applications < s.min_applications or n < s.lifecycle_min_evidence or status == R:
        return None
    # This runs after every application: the interval is computed only when the observed rate could pass a
    # bound (the lower bound is below it, the upper above it), and a reason is formatted only for a move.
    rate, in_grace = ok / n, applications < grace_until
    if status == P:
        if effectiveness_score >= s.validate_threshold and rate > s.release_threshold:
            low = wilson_bounds(ok, n, s.lifecycle_confidence)[0]
            if low > s.release_threshold:
                return V, (f"effectiveness {effectiveness_score:.3f} >= {s.validate_threshold:.2f}, "
                           f"{_low(ok, n, low, s)}")
        if rate < s.quarantine_threshold and not in_grace:
            high = wilson_bounds(ok, n, s.lifecycle_confidence)[1]
            if high < s.quarantine_threshold:
                return Q, _high(ok, n, high, s.quarantine_threshold, s)
    elif status == V:
        if rate < s.requarantine_threshold and not in_grace:
            high = wilson_bounds(ok, n, s.lifecycle_confidence)[1]
            if high < s.requarantine_threshold:
                return Q, f"validated pattern degraded: {_high(ok, n, high, s.requarantine_threshold, s)}"
    elif rate > s.release_threshold:
        low = wilson_bounds(ok, n, s.lifecycle_confidence)[0]
        if low > s.release_threshold:
            return P, f"probation since quarantine: {_low(ok, n, low, s)}"
    return None


def _low(ok: int, n: int, low: float, s: LearningSettings) -> str:
    level = f"{s.lifecycle_confidence:.0%}"
    return f"{ok}/{n} successes: success >= {low:.3f} > {s.release_threshold:.2f} ({level} bound)"


def _high(ok: int, n: int, high: float, threshold: float, s: LearningSettings) -> str:
    return f"{ok}/{n} successes: success <= {high:.3f} < {threshold:.2f} ({s.lifecycle_confidence:.0%} bound)"
