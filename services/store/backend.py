"""The seam a store backend plugs into, on the write side: what the services ask of it, nothing SQLite-shaped.

    StoreBackend   the writer: open (create and migrate), apply a batch exactly once, rebuild the projections
                   from the ledger, and a checksum of the projections (equal state, equal digest).
                   Implemented by `services.store.db.Store` (SQLite).
    SessionIndex   the one table the consolidator writes, the list of session artifacts.
                   Implemented by `services.store.session_store.SessionStore` (SQLite).

The store service holds a `StoreBackend` and calls nothing else; `tests/services/test_backend.py` drives the
service and a rebuild through these methods alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from pheromone.contracts import Envelope
from pheromone.contracts.sessions import LearningSession
from pheromone.services.errors import Refused


@dataclass(slots=True)
class ApplyResult:
    """What one batch did: ids newly applied, ids already in the ledger, and refused events by index."""

    inserted: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Refused] = field(default_factory=list)
    """Refused events; `retry` marks those that refer to a record not stored yet (see EventRejected)."""


@runtime_checkable
class StoreBackend(Protocol):
    """The ledger and its projections. Failures are `StoreError`s (`StoreBusyError` when retryable)."""

    async def open(self) -> None:
        """Create the store if it is missing and migrate it to the code's schema."""

    async def close(self) -> None: ...

    async def __aenter__(self) -> StoreBackend:
        """`open`, for `async with`."""

    async def __aexit__(self, *exc: object) -> None:
        """`close`."""

    async def apply(self, events: Sequence[tuple[Envelope, bytes | str]]) -> ApplyResult:
        """Append a batch to the ledger and project the events it did not hold yet, atomically: each event's
        `event_id` is applied once, and an event a projection refuses leaves no trace but its `Refused`."""

    async def rebuild(self) -> int:
        """Drop every projection and replay the ledger in order; returns the number of events replayed."""

    async def checksum(self) -> str:
        """A digest over every projection's rows in key order: equal state, equal digest."""


@runtime_checkable
class SessionIndex(Protocol):
    """The session index: one row per session artifact (session.json), for listing and trigger look-ups."""

    def index(self, s: LearningSession, path: Path) -> None:
        """List (or update) one session's artifact."""

    def reindex(self, root: Path) -> tuple[int, list[str]]:
        """Rebuild the index from the artifacts under `root`; returns (indexed, unreadable files)."""
