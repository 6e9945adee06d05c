"""Reading the live rate-limit state the coordinator keeps in Redis (docs/COORDINATION.md).

A check is one GET of the key of (model, error code), or of the model for any code. The key expires with
the limit on the server (PEXPIREAT), and the answer is active only while the key exists *and* the stored
expiry is still ahead of the client's clock, so an expired limit is never reported active by either clock.
(One GET rather than GET+PTTL: the stored expiry already gives the time left, and a pipeline costs
redis-py more than a single command; bench/RESULTS.md, "Real-time coordination".)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime

import redis.asyncio as aioredis

from pheromone.contracts import Envelope, RateLimitEvent
from pheromone.contracts.broadcast import RateLimitState, RateLimitStatus
from pheromone.contracts.streams import Keys

_MAX_SLEEP_S = 1.0
"""wait_until_free() re-checks at least this often, so a limit reported meanwhile is noticed."""


def _status(model: str, error_code: str | None, raw: bytes | str | None, now: float) -> RateLimitStatus:
    """Active only while the key exists (the server expires it) *and* its expiry is ahead of our clock."""
    if raw is not None:
        state = RateLimitState.model_validate_json(raw)
        left = state.expires_at.timestamp() - now
        if left > 0:
            # model_construct: every value comes from a state that was validated just above.
            return RateLimitStatus.model_construct(
                model=model, error_code=error_code, active=True, seconds_left=left,
                expires_at=state.expires_at, reported_by=state.reported_by, workspace=state.workspace,
                duration_seconds=state.duration_seconds, recorded_at=state.recorded_at,
                reported_error_code=state.error_code,
            )
    return RateLimitStatus.model_construct(model=model, error_code=error_code, active=False)


async def status(
    redis: aioredis.Redis, keys: Keys, model: str, error_code: str | None = None
) -> RateLimitStatus:
    """Is `model` rate-limited (for `error_code`, or for any code when None)? One GET."""
    raw = await redis.get(keys.rate_limit(model, error_code))
    return _status(model, error_code, raw, time.time())


async def active(redis: aioredis.Redis, keys: Keys) -> list[RateLimitStatus]:
    """Every active (model, error code) limit, soonest expiry first. Two round trips."""
    now_ms = int(time.time() * 1000)
    members: Sequence[bytes] = await redis.zrangebyscore(  # type: ignore[assignment]
        keys.rate_limit_index, now_ms, "+inf"
    )
    if not members:
        return []
    replies = await redis.mget(members)
    now = time.time()
    out = []
    for raw in replies:
        if raw is not None:
            state = RateLimitState.model_validate_json(raw)
            if (found := _status(state.model, state.error_code, raw, now)).active:
                out.append(found)
    return sorted(out, key=lambda s: s.seconds_left)


async def apply_now(redis: aioredis.Redis, keys: Keys, env: Envelope) -> None:
    """A reporter's fast path: its report applied to the live keys (and announced) by the coordinator's own
    script, without waiting for the coordinator to read the stream. Idempotent with the coordinator's run."""
    from pheromone.plumbing.limits import LimitBook

    assert isinstance(env.payload, RateLimitEvent)
    await LimitBook(redis, keys).record([(env, env.payload)], datetime.now(UTC))


async def wait_until_free(
    redis: aioredis.Redis, keys: Keys, model: str, timeout: float, error_code: str | None = None
) -> bool:
    """Sleep until `model` is not limited; True when free, False if still limited after `timeout` seconds.

    Sleeps until the current limit's expiry (re-checking at least every second, so an extension reported
    meanwhile is seen); no polling loop on a database.
    """
    deadline = time.monotonic() + timeout
    while True:
        current = await status(redis, keys, model, error_code)
        if not current.active:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        # A hair past the expiry: the key is gone on the server by the time we look again.
        await asyncio.sleep(min(current.seconds_left + 0.001, left, _MAX_SLEEP_S))
