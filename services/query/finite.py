"""Answers as standard JSON, for the query service and the CLI alike.

Contracts bound every number (contracts.types), but an aggregate over rows an older version stored, or a float
overflowing in a formula, can still be infinite or NaN, which `json.dumps` prints as `Infinity`/`NaN`: a JSON
no other reader accepts. Such a value is shown as null (no value); the rest of the answer stands.
"""

from __future__ import annotations

import json
import math
from typing import Any


def finite(value: Any) -> Any:
    """`value` with every non-finite float, however deeply nested in dicts, lists and tuples, made None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def dumps(value: Any, *, indent: int | None = None) -> str:
    """Standard JSON of `value` (non-finite floats as null; other objects by `str`)."""
    return json.dumps(finite(value), indent=indent, default=str, allow_nan=False)
