"""How values are written to SQLite: times as integer microseconds UTC, lists as canonical JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime


def us(value: datetime) -> int:
    """Microseconds since the epoch, UTC: the store's one representation of time."""
    return round(value.timestamp() * 1_000_000)


def from_us(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1_000_000, UTC)


_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)


def dumps(value: object) -> str:
    # What `json.dumps(value, separators=(",", ":"), sort_keys=True)` returns, without building an encoder per
    # call (any non-default argument makes `json.dumps` build one).
    if type(value) is list and not value:  # most executions' error codes: the encoder is not needed
        return "[]"
    return _ENCODER.encode(value)
