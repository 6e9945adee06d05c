"""Telling a lifecycle event that arrived early from one that can never apply.

Sessions, their edits and patterns move through lifecycles (`services.sessions.states`,
`services.learning.lifecycle`). A transition event may say which status its sender moved the entity from
(`from_status`). The store compares it with the entity's current status before applying the event:

    from_status == current                      apply, if current -> to is a legal move (else refused)
    from_status reachable from current          early: a predecessor is not applied yet; retryable
    anything else                               stale or conflicting: refused at once

"Reachable" follows the legal moves from the current status (an entity not recorded yet reaches its first statuses
and everything after them). For the same reason, a move other than a first one of an entity not recorded yet is
early whether or not it says where it comes from: its first event may be on its way. An early event is refused
with `EventRejected(retryable=True)`: the store leaves it pending, the retrier offers it again every
`claim_idle_ms`, and after `max_deliveries` deliveries it is dead-lettered with the last reason
(docs/RELIABILITY.md, "Ordered entities"). A sender that does not say (`from_status` None: older producers, and
every entity's first event) gets the check it always had: the move from whatever status the entity is in.

Sessions and edits never return to a status, so `from_status` names an event's place in its entity's history.
The pattern lifecycle has a cycle (quarantined -> pending, a revisit): there a status names the predecessor only
up to the cycle. That is a safety net, not the ordering itself: the store applies a stream in its order
(docs/RELIABILITY.md, "One writer, in stream order"), and only a redelivery out of it reaches this check.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from pheromone.services.errors import EventRejected

S = TypeVar("S", bound=str)


def reachable(moves: Mapping[S, frozenset[S]], start: S | None, first: frozenset[S]) -> frozenset[S]:
    """Every status an entity in `start` (None: not recorded) can still reach by one or more legal moves."""
    seen: set[S] = set()
    todo = list(first if start is None else moves[start])
    while todo:
        status = todo.pop()
        if status not in seen:
            seen.add(status)
            todo.extend(moves[status])
    return frozenset(seen)


def check_predecessor(
    what: str, current: S | None, expected: S | None, moves: Mapping[S, frozenset[S]], first: frozenset[S]
) -> None:
    """Raise EventRejected unless an event sent from `expected` may be applied to `what` in `current` now:
    retryable when `expected` is still ahead of `current`, permanent when it never can be again."""
    if expected is None or expected == current:
        return
    now = "not recorded yet" if current is None else f"{current}"
    if expected in reachable(moves, current, first):
        raise EventRejected(f"{what}: sent from {expected}, but it is {now}: waits for the move to {expected}",
                            retryable=True)
    raise EventRejected(f"{what}: sent from {expected}, but it is {now} and can no longer be {expected}")
