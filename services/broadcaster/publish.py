"""Publishing onto the broadcast stream: each message at most once, never once it has expired.

Every service that broadcasts (broadcaster, coordinator, entropy) goes through `Publisher`. One Lua script per
message, run atomically on the server:

    if the message has expired (server clock)          -> publish nothing
    SET {prefix}:bc-once:<message id> NX PXAT <expiry> -> if it was already set, publish nothing
    XADD {prefix}:broadcast * e <json> x <expiry ms> k <kind>

so a source entry delivered twice (a retry after a crash between publishing and acking) is broadcast once,
and the marker disappears with the message it guards.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from contracts.broadcast import BroadcastMessage
from contracts.streams import FIELD, FIELD_EXPIRES, FIELD_KIND, Keys

PUBLISH_ONCE = f"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if tonumber(ARGV[1]) <= now then return false end
if not redis.call('SET', KEYS[1], '1', 'NX', 'PXAT', ARGV[1]) then return false end
return redis.call('XADD', KEYS[2], '*', '{FIELD}', ARGV[2], '{FIELD_EXPIRES}', ARGV[1], '{FIELD_KIND}', ARGV[3])
"""
"""KEYS: once-marker, broadcast stream. ARGV: expiry (ms since epoch), message JSON, kind."""


def expiry_ms(message: BroadcastMessage) -> int:
    return int(message.expires_at.timestamp() * 1000)


class Publisher:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._script = redis.register_script(PUBLISH_ONCE)

    async def publish(self, messages: Sequence[BroadcastMessage]) -> int:
        """Publish in one pipeline; returns how many were new and unexpired (the rest were skipped)."""
        if not messages:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for m in messages:
                await self._script(
                    keys=[self._keys.broadcast_once(m.id), self._keys.broadcast],
                    args=[expiry_ms(m), m.model_dump_json(), m.kind.value],
                    client=pipe,
                )
            results = await pipe.execute()
        return sum(1 for r in results if r)
