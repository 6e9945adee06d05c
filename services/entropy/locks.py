"""Redis locks that every replica of a service shares: SET NX PX to take, compare-and-delete to give back.

A lock's TTL is also its cooldown: the entropy response lock is held for `entropy_cooldown_s`, so whichever
replica takes it responds and no replica responds again until it expires. A holder that fails before its
work is recorded releases the lock (only its own: the token is compared), so the next evaluation retries.
"""

from __future__ import annotations

import uuid

import redis.asyncio as aioredis

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Locks:
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self._release = redis.register_script(RELEASE)

    async def take(self, key: str, ttl_s: float) -> str | None:
        """The lock's token if this caller took it, None if someone holds it."""
        token = uuid.uuid4().hex
        taken = await self._redis.set(key, token, nx=True, px=max(1, int(ttl_s * 1000)))
        return token if taken else None

    async def release(self, key: str, token: str) -> bool:
        return bool(await self._release(keys=[key], args=[token]))
