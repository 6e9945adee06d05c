"""Every stream, group, key and TTL name in one place, so producers, consumers and tests cannot disagree.

Keys are `{prefix}:{name}`; the prefix (default `pheromone`) comes from settings so that several
installations, or every test, can share one server.

Stream entries carry exactly one field, `FIELD` (`e`), whose value is the envelope's JSON.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_PREFIX: Final = "pheromone"
FIELD: Final = "e"
"""The single stream-entry field that holds an envelope's JSON."""

# Streams
INGEST: Final = "ingest"
"""Durable families: executions, patterns, applications, recoveries, escalations, trajectory, entropy, budget."""
RATELIMITS: Final = "ratelimits"
"""Rate-limit reports; each carries its own expiry."""
DISCOVERIES: Final = "discoveries"
"""Pattern discoveries; each carries its own expiry."""
BROADCAST: Final = "broadcast"
"""Fan-out to every job: discoveries, rate-limit announcements, entropy responses, drift alerts."""
DEAD: Final = "dead"
"""Dead letters: entries that could not be parsed or applied, with their error."""

# Consumer groups
GROUP_STORE: Final = "store"
GROUP_COORDINATOR: Final = "coordinator"
GROUP_BROADCASTER: Final = "broadcaster"
GROUP_ENTROPY: Final = "entropy"

STREAM_GROUPS: Final[dict[str, tuple[str, ...]]] = {
    INGEST: (GROUP_STORE, GROUP_ENTROPY),
    RATELIMITS: (GROUP_STORE, GROUP_COORDINATOR),
    DISCOVERIES: (GROUP_STORE, GROUP_BROADCASTER),
}
"""Which groups read which stream. The store group reads all three: every event reaches the ledger."""

ROUTES: Final[dict[str, str]] = {"rate_limit": RATELIMITS, "pattern_discovery": DISCOVERIES}
"""Payload type -> stream, for the TTL'd families; every other type goes to INGEST."""

# TTLs and retention (seconds); settings may override the retention ones.
DISCOVERY_TTL_S: Final = 300.0
"""Seed 000's discovery broadcasts expire after 5 minutes by default."""
INGEST_RETENTION_S: Final = 24 * 3600.0
DEAD_RETENTION_S: Final = 7 * 24 * 3600.0
BROADCAST_RETENTION_S: Final = 3600.0


def stream_for(payload_type: str) -> str:
    return ROUTES.get(payload_type, INGEST)


@dataclass(frozen=True, slots=True)
class Keys:
    """Full key names under one prefix."""

    prefix: str = DEFAULT_PREFIX

    def stream(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    @property
    def ingest(self) -> str:
        return self.stream(INGEST)

    @property
    def ratelimits(self) -> str:
        return self.stream(RATELIMITS)

    @property
    def discoveries(self) -> str:
        return self.stream(DISCOVERIES)

    @property
    def broadcast(self) -> str:
        return self.stream(BROADCAST)

    @property
    def dead(self) -> str:
        return self.stream(DEAD)

    @property
    def queries(self) -> str:
        """List of pending query requests (request/reply to the query service)."""
        return f"{self.prefix}:queries"

    def heartbeat(self, service: str) -> str:
        return f"{self.prefix}:alive:{service}"
