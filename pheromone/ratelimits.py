"""Reading the live rate-limit state the coordinator keeps in Redis (docs/COORDINATION.md).

A check is one round trip (GET and PTTL pipelined) on the key of (model, error code), or of the model for
any code. The answer is active only while the key lives, and the key expires with the limit on the server
(PEXPIREAT), so an expired limit is never reported active, whatever the client's clock says.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import redis.asyncio as aioredis

from contracts.broadcast import RateLimitState, RateLimitStatus
from contracts.streams import Keys

_MAX_SLEEP_S = 1.0
"""wait_until_free() re-checks at least this often, so a limit reported meanwhile is noticed."""


def _status(model: str, error_code: str | None, raw: bytes | None, pttl: int) -> RateLimitStatus:
    if raw is None or pttl <= 0:
        return RateLimitStatus(model=model, error_code=error_code, active=False)
    state = RateLimitState.model_validate_json(raw)
    return RateLimitStatus(
        model=model, error_code=error_code, active=True, seconds_left=pttl / 1000,
        expires_at=state.expires_at, reported_by=state.reported_by, workspace=state.workspace,
        duration_seconds=state.duration_seconds, recorded_at=state.recorded_at,
        reported_error_code=state.error_code,
    )


async def status(redis: aioredis.Redis, keys: Keys, model: str, error_code: str | None = None) -> RateLimitStatus:
    """Is `model` rate-limited (for `error_code`, or for any code when None)? One round trip."""
    key = keys.rate_limit(model, error_code)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.get(key)
        pipe.pttl(key)
        raw, pttl = await pipe.execute()
    return _status(model, error_code, raw, int(pttl))


async def active(redis: aioredis.Redis, keys: Keys) -> list[RateLimitStatus]:
    """Every active (model, error code) limit, soonest expiry first. Two round trips."""
    now_ms = int(time.time() * 1000)
    members: Sequence[bytes] = await redis.zrangebyscore(keys.rate_limit_index, now_ms, "+inf")
    if not members:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for key in members:
            pipe.get(key)
            pipe.pttl(key)
        replies = await pipe.execute()
    out = []
    for raw, pttl in zip(replies[::2], replies[1::2], strict=True):
        if raw is not None and int(pttl) > 0:
            state = RateLimitState.model_validate_json(raw)
            out.append(_status(state.model, state.error_code, raw, int(pttl)))
    return out


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
