"""The errors of the services, as a drawn tree.

    PheromoneError
    ├── StoreError                 the SQLite store refused or failed
    │   └── StoreBusyError         retryable: the database is locked or unwritable for now
    ├── EventRejected              permanent: this one event cannot be applied (dead-letter it)
    └── TransportError             retryable: Redis is unreachable or answered with an error

Subscribers map them: retryable errors leave the entry pending for the retrier; permanent ones go to the
dead-letter stream at once with their message.
"""

from __future__ import annotations


class PheromoneError(Exception):
    """Root of every error pheromone raises on purpose."""


class StoreError(PheromoneError):
    pass


class StoreBusyError(StoreError):
    """Retryable: the database was locked, read-only or out of space for now."""


class EventRejected(PheromoneError):
    """Permanent: the event is valid on the wire but cannot be applied (e.g. a duplicate evolution cycle)."""


class TransportError(PheromoneError):
    pass
