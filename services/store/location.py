"""Which store backend a location names, and the one place that opens it.

A location is a PostgreSQL URL (`PHEROMONE_STORE_URL=postgresql://…`) or the path of a SQLite file (the
embedded default). Services, the CLI and the benches open the store through these functions, never a backend
class, so every reader and writer follows the one setting. The PostgreSQL backend (`services.store.pg`) is
imported only when a URL names it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from pheromone.services.settings import POSTGRES_SCHEMES, LearningSettings, StoreLocation

if TYPE_CHECKING:
    from pheromone.services.store.backend import StoreBackend
    from pheromone.services.store.reads import StoreReads
    from pheromone.services.store.session_store import SessionStore

__all__ = [
    "StoreLocation", "describe", "ensure_store", "is_postgres", "open_backend", "open_reader", "open_sessions",
]


def is_postgres(location: StoreLocation) -> bool:
    return isinstance(location, str) and location.startswith(POSTGRES_SCHEMES)


def describe(location: StoreLocation) -> str:
    """The location for messages: a URL without its password."""
    if not is_postgres(location):
        return str(location)
    parts = urlsplit(str(location))
    if parts.password is None:
        return str(location)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def open_backend(
    location: StoreLocation, *, learning: LearningSettings | None = None, on_loop: bool = False
) -> StoreBackend:
    """The writer's backend (not opened yet: `await backend.open()` or `async with`)."""
    if is_postgres(location):
        from pheromone.services.store.pg.store import PgStore

        return PgStore(str(location), learning=learning)
    from pheromone.services.store.db import Store

    return Store(Path(location), learning=learning, on_loop=on_loop)


def open_reader(location: StoreLocation) -> StoreReads:
    """A read-only `StoreReads` (not opened yet: `async with open_reader(loc) as reader:`)."""
    if is_postgres(location):
        from pheromone.services.store.pg.reader import PgReader

        return PgReader(str(location))
    from pheromone.services.store.reader import Reader

    return Reader(Path(location))


def open_sessions(location: StoreLocation) -> SessionStore:
    """The consolidator's and review CLI's synchronous session store (connects on first use; `close()`)."""
    if is_postgres(location):
        from pheromone.services.store.pg.session_store import PgSessionStore

        return PgSessionStore(str(location))
    from pheromone.services.store.session_store import SessionStore

    return SessionStore(Path(location))


async def ensure_store(location: StoreLocation) -> None:
    """Make an empty, migrated store if there is none: a reader (query, entropy, consolidator) may start before
    the store service ever ran, and must find the tables it reads."""
    if is_postgres(location):
        from pheromone.services.store.pg.store import PgStore

        async with PgStore(str(location)):  # migrating is idempotent and safe when processes race
            return
    from pheromone.services.store.db import ensure_store as ensure_sqlite

    await ensure_sqlite(Path(location))
