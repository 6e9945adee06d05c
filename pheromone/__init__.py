"""pheromone: a shared, message-driven learning store for fleets of concurrent AI-agent jobs.

Jobs use `Pheromone` (asyncio) or `SyncPheromone` (blocking, for code without an event loop); records and
queries come from `pheromone.contracts` and the most used are re-exported here.

The names below are imported when first used (PEP 562), so `import pheromone.contracts` in a process that
only reads the wire schemas does not load the client and its Redis stack.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from pheromone.client import ClientStats, Pheromone
    from pheromone.contracts import EventQuery, TimeRange
    from pheromone.contracts.broadcast import BroadcastKind, BroadcastMessage, RateLimitStatus
    from pheromone.errors import (
        ClientClosedError,
        ClientError,
        FlushTimeout,
        PheromoneError,
        QueryError,
        QueryTimeout,
    )
    from pheromone.subscriptions import Subscription
    from pheromone.sync import SyncPheromone, SyncSubscription

_HOMES = {
    "BroadcastKind": "pheromone.contracts.broadcast",
    "BroadcastMessage": "pheromone.contracts.broadcast",
    "ClientClosedError": "pheromone.errors",
    "ClientError": "pheromone.errors",
    "ClientStats": "pheromone.client",
    "EventQuery": "pheromone.contracts",
    "FlushTimeout": "pheromone.errors",
    "Pheromone": "pheromone.client",
    "PheromoneError": "pheromone.errors",
    "QueryError": "pheromone.errors",
    "QueryTimeout": "pheromone.errors",
    "RateLimitStatus": "pheromone.contracts.broadcast",
    "Subscription": "pheromone.subscriptions",
    "SyncPheromone": "pheromone.sync",
    "SyncSubscription": "pheromone.sync",
    "TimeRange": "pheromone.contracts",
}

__all__ = [
    "BroadcastKind",
    "BroadcastMessage",
    "ClientClosedError",
    "ClientError",
    "ClientStats",
    "EventQuery",
    "FlushTimeout",
    "Pheromone",
    "PheromoneError",
    "QueryError",
    "QueryTimeout",
    "RateLimitStatus",
    "Subscription",
    "SyncPheromone",
    "SyncSubscription",
    "TimeRange",
]
assert sorted(_HOMES) == __all__


def __getattr__(name: str) -> _typing.Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'pheromone' has no attribute {name!r}")
    value = getattr(_importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
