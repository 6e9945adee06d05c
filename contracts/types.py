"""Field types shared by every contract.

Each type states its bounds once, so a producer in any language can check its events against the JSON Schema
(`pheromone schema`) before sending; the 2000-01-01 floor on timestamps is enforced by pydantic only:

- text fields have a maximum length (oversized input is rejected, never truncated);
- numbers are bounded, so every value a contract accepts can be stored and printed as standard JSON: integers
  lie in [-MAX_INT, MAX_INT] (2**53: exact in a JSON reader's double, and a sum of 1,024 of them still fits
  SQLite's signed 64 bits), floats are finite and lie in [-MAX_FLOAT, MAX_FLOAT] (1e12: a sum or mean over any
  number of rows a store can hold stays finite). `tests/contracts/test_numbers.py` checks every numeric field;
- floats are finite (NaN and infinities are rejected by `allow_inf_nan=False` on every model);
- timestamps are timezone-aware, normalised to UTC, and later than 2000-01-01 (seed 003's system defaulted
  to 1970: a placeholder epoch is a bug, not a time);
- seed 000 clamps some scores instead of rejecting them (`__post_init__` in its models); those fields use the
  `Clamped*` types and clamp exactly where the seed does.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

MAX_TEXT = 8_192
MAX_NAME = 256
MAX_LIST = 256
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_INT = 2**53
"""The largest integer any field accepts (see the module docstring)."""
MAX_FLOAT = 1e12
"""The largest magnitude any float field accepts: seconds (31,700 years), lines of code, entropies."""


def _utc(value: datetime) -> datetime:
    try:
        value = value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 9999-12-31T23:59-01:00 has no UTC datetime
        raise ValueError(f"timestamp {value.isoformat()} is out of range in UTC") from exc
    if value < MIN_TIME:
        raise ValueError(f"timestamp {value.isoformat()} is before 2000-01-01: a placeholder, not a time")
    return value


def _clamp01(value: float) -> float:
    return max(0.0, min(1.0, value))


def _clamp_nonneg(value: float) -> float:
    return max(0.0, value)


def _clamp_nonneg_int(value: int) -> int:
    return max(0, value)


def _clamp_min1(value: int) -> int:
    return max(1, value)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_utc)]
"""An aware timestamp, converted to UTC. Naive datetimes are rejected."""

Identifier = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:@/+=-]+$")]
"""Ids and hashes: printable, no whitespace, at most 128 characters."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Tag = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], Field(max_length=64)]
ShortList = Annotated[list[Name], Field(max_length=MAX_LIST)]

Ratio = Annotated[float, Field(ge=0.0, le=1.0)]
"""A fraction that must already be in [0, 1] (rejected otherwise)."""

Clamped01 = Annotated[float, AfterValidator(_clamp01)]
"""A score the seed clamps to [0, 1]."""

# The seed clamps the low end only; the high end is rejected like any other bound (`le` is checked before the
# clamp, so a value below the floor is still clamped, never rejected).
ClampedNonNeg = Annotated[float, Field(le=MAX_FLOAT), AfterValidator(_clamp_nonneg)]
ClampedNonNegInt = Annotated[int, Field(le=MAX_INT), AfterValidator(_clamp_nonneg_int)]
ClampedMin1Int = Annotated[int, Field(le=MAX_INT), AfterValidator(_clamp_min1)]

NonNegInt = Annotated[int, Field(ge=0, le=MAX_INT)]
PositiveInt = Annotated[int, Field(ge=1, le=MAX_INT)]
NonNegFloat = Annotated[float, Field(ge=0.0, le=MAX_FLOAT)]


class Contract(BaseModel):
    """Base of every wire model: unknown fields, wrong types and non-finite floats are errors."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)
