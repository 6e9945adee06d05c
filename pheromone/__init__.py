"""pheromone: a shared, message-driven learning store for fleets of concurrent AI-agent jobs.

Jobs use `Pheromone` (asyncio) or `SyncPheromone` (blocking, for code without an event loop); records and
queries come from `contracts` and are re-exported here.
"""

from contracts import EventQuery, TimeRange
from contracts.broadcast import BroadcastKind, BroadcastMessage, RateLimitStatus
from pheromone.client import ClientStats, Pheromone
from pheromone.errors import ClientClosedError, ClientError, FlushTimeout, QueryError, QueryTimeout
from pheromone.subscriptions import Subscription
from pheromone.sync import SyncPheromone, SyncSubscription

__all__ = [
    "BroadcastKind",
    "BroadcastMessage",
    "ClientClosedError",
    "ClientError",
    "ClientStats",
    "EventQuery",
    "FlushTimeout",
    "Pheromone",
    "QueryError",
    "QueryTimeout",
    "RateLimitStatus",
    "Subscription",
    "SyncPheromone",
    "SyncSubscription",
    "TimeRange",
]
