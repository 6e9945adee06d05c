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
    # What `json.dumps(value, separators=(",", ":"), sort_keys=True)` returns: that call builds an encoder
    # each time (any non-default argument does): ~10k instructions per call (callgrind).
    if type(value) is list and not value:  # most executions' error codes: skip the encoder (~5k instructions)
        return "[]"
    return _ENCODER.encode(value)
