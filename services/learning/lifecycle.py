"""The quarantine lifecycle (seed 000, v19/v25): legal transitions and the automatic rules.

    pending ──▶ validated ──▶ quarantined ──▶ pending (a revisit)
       │  └──────────────────▶    │   └─────▶ validated (manual review)
       └──────────▶ retired ◀─────┴── (from any non-retired state; retired is terminal)

Automatic transitions need at least `min_applications` applications:
  - pending & effectiveness >= validate_threshold (0.60)   -> validated
  - pending & effectiveness <  quarantine_threshold (0.35) -> quarantined
  - validated & effectiveness < requarantine_threshold (0.30) -> quarantined
A revisited pattern (quarantined -> pending) is not automatically re-quarantined until it has had
`revisit_grace_applications` further applications (the reference undid every revisit at its next promotion
run). Quarantined and retired patterns never move automatically.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts import QuarantineStatus

if TYPE_CHECKING:
    from services.settings import LearningSettings

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


def automatic_transition(
    status: QuarantineStatus,
    applications: int,
    effectiveness_score: float,
    grace_until: int,
    s: LearningSettings,
) -> tuple[QuarantineStatus, str] | None:
    """The automatic move after an application, with its reason, or None.

    `grace_until`: the application count before which automatic quarantine is suppressed (a revisit's grace).
    """
    if applications < s.min_applications:
        return None
    eff = f"{effectiveness_score:.3f}"
    in_grace = applications < grace_until
    if status == P:
        if effectiveness_score >= s.validate_threshold:
            return V, f"effectiveness {eff} >= {s.validate_threshold:.2f} after {applications} applications"
        if effectiveness_score < s.quarantine_threshold and not in_grace:
            return Q, f"effectiveness {eff} < {s.quarantine_threshold:.2f} after {applications} applications"
    elif status == V and effectiveness_score < s.requarantine_threshold and not in_grace:
        return Q, f"validated pattern degraded: effectiveness {eff} < {s.requarantine_threshold:.2f}"
    return None
