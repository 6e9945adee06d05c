"""pheromone: a shared, message-driven learning store for fleets of concurrent AI-agent jobs.

Jobs use `Pheromone`; records and queries come from `contracts` and are re-exported here.
"""

from contracts import EventQuery, TimeRange
from pheromone.client import ClientStats, Pheromone
from pheromone.errors import ClientClosedError, ClientError, FlushTimeout, QueryError, QueryTimeout

__all__ = [
    "ClientClosedError",
    "ClientError",
    "ClientStats",
    "EventQuery",
    "FlushTimeout",
    "Pheromone",
    "QueryError",
    "QueryTimeout",
    "TimeRange",
]
