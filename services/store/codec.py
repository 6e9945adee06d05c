"""How values are written to SQLite: times as integer microseconds UTC, lists as canonical JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime


def us(value: datetime) -> int:
    """Microseconds since the epoch, UTC: the store's one representation of time."""
    return round(value.timestamp() * 1_000_000)


def from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


def dumps(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)
