"""A pattern's state as the projections hold it: the row (`PatternState`), the batch's live copy (`Live`), and
the scores stored from them. Shared by `patterns` (the rules' writes) and `batch` (the write-back)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pheromone.contracts import QuarantineStatus
from pheromone.services.learning.scores import days_between, priority, trust, variance
from pheromone.services.settings import LearningSettings

Window = list[tuple[int, str, int, "float | None"]]
"""(applied_us, event_id, success, grounding_confidence), newest first: what `patterns.WINDOW` selects."""


@dataclass(slots=True)
class PatternState:
    """What `patterns.refresh` needs of a pattern row."""

    id: str
    name: str
    occurrences: int
    successes: int
    failures: int
    last_confirmed_us: int | None
    last_applied_us: int | None
    status: QuarantineStatus
    grace_until: int
    base_apps: int = 0
    """Applications and successes when the pattern last entered or left quarantine: the lifecycle's evidence
    is what came after."""
    base_successes: int = 0

    @classmethod
    def from_row(cls, pid: str, row: Sequence[Any]) -> PatternState:
        name, occ, ok, bad, conf, applied, status, grace, base_apps, base_ok = row
        return cls(pid, name, occ, ok, bad, conf, applied, QuarantineStatus(status), grace, base_apps, base_ok)


@dataclass(slots=True)
class Live:
    """One pattern's state for the rest of the batch. `state` is None while it has no pattern row."""

    id: str
    applications: int
    successes: int
    last_confirmed_us: int | None
    last_applied_us: int | None
    state: PatternState | None
    window: Window
    settings: LearningSettings
    effectiveness: float | None = None
    """The last application's effectiveness (set once the pattern has a row). The other scores are functions of
    the state the batch leaves, so they are computed once, when the pattern is written (`scores`), not after
    every application."""


def scores(st: PatternState, eff: float, s: LearningSettings) -> dict[str, Any]:
    """A pattern's stored scores given its state and effectiveness (after any transition the rule made)."""
    var = variance(st.successes, st.failures)
    days = days_between(st.last_confirmed_us, st.last_applied_us)
    return {
        "eff": eff,
        "var": var,
        "pri": priority(eff, st.occurrences, var, s),
        "trust": trust(st.successes, st.failures, days, st.status, s),
        "at": st.last_applied_us,
    }
