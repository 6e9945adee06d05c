"""The errors of the services, as a drawn tree under the one root every pheromone error shares.

    PheromoneError                 defined in `pheromone.errors` (with the client's and the plumbing's branches)
    ├── StoreError                 the store (SQLite or PostgreSQL) refused or failed
    │   └── StoreBusyError         retryable: the database is locked, unwritable or unreachable for now
    │       └── StoreNotMigrated   a table the code reads is missing: the store is not set up or not upgraded
    └── EventRejected              this one event cannot be applied: dead-letter it, unless `retryable`
                                   (it names a record not stored yet: retried until max_deliveries)

Subscribers map them: retryable errors leave the entry pending for the retrier; permanent ones go to the
dead-letter stream at once with their message. A handler reports the events it refuses as `Refused` (the store
and the consumer both speak it, so it lives here, below both).
"""

from __future__ import annotations

from typing import NamedTuple

from pheromone.errors import PheromoneError

__all__ = ["EventRejected", "PheromoneError", "Refused", "StoreBusyError", "StoreError", "StoreNotMigrated"]


class StoreError(PheromoneError):
    pass


class StoreBusyError(StoreError):
    """Retryable: the database was locked, read-only, out of space or unreachable for now."""


class StoreNotMigrated(StoreBusyError):
    """A table the code reads does not exist: the store service has not created or upgraded the store yet
    (it migrates it when it starts), so a reader may wait for it, and a command says how to upgrade it."""


class EventRejected(PheromoneError):
    """The event is valid on the wire but cannot be applied (e.g. a duplicate evolution cycle).

    `retryable=True` when it refers to a record that is not in the store yet: after a crash, redelivery can
    bring an escalation outcome before its escalation, so such an event is retried (up to max_deliveries)
    rather than dead-lettered at once.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class Refused(NamedTuple):
    """An event the handler would not apply: dead-lettered, or left pending when `retry` (see EventRejected)."""

    index: int  # type: ignore[assignment]  # shadows tuple.index on purpose: the entry's place in the batch
    reason: str
    retry: bool = False

