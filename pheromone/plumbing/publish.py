"""Publishing onto the broadcast stream: each message at most once, never once it has expired.

Every service that broadcasts (broadcaster, coordinator, entropy) uses `PUBLISH_ONCE_LUA`, atomically on the
server, per message:

    if the message has expired (server clock)          -> publish nothing
    SET {prefix}:bc-once:<message id> NX PXAT <expiry> -> if it was already set, publish nothing
    XADD {prefix}:broadcast * e <json> x <expiry ms> k <kind>

so a source entry delivered twice (a retry after a crash between publishing and acking) is broadcast once,
and the marker disappears with the message it guards. The coordinator runs the same lines at the end of its
own script (`pheromone.plumbing.limits`), so a limit is set and announced in one atomic call. It lives in
the plumbing because that script also runs in a job (a rate-limit reporter's fast path, `pheromone.ratelimits`).

`Publisher` runs the script over a batch of messages in one round trip (`pheromone.plumbing.scripts`).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from pheromone.contracts.broadcast import BroadcastMessage
from pheromone.contracts.streams import FIELD, FIELD_EXPIRES, FIELD_KIND, Keys
from pheromone.plumbing.scripts import run_batch

NOW_MS_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""


def publish_once_lua(once: str, stream: str, expiry: str, body: str, kind: str) -> str:
    """The publish-once lines over the given KEYS/ARGV expressions; they `return` the entry id or false."""
    return f"""
if tonumber({expiry}) <= now then return false end
if not redis.call('SET', {once}, '1', 'NX', 'PXAT', {expiry}) then return false end
return redis.call('XADD', {stream}, '*',
                  '{FIELD}', {body}, '{FIELD_EXPIRES}', {expiry}, '{FIELD_KIND}', {kind})
"""


PUBLISH_ONCE = NOW_MS_LUA + publish_once_lua("KEYS[1]", "KEYS[2]", "ARGV[1]", "ARGV[2]", "ARGV[3]")
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
        keys = self._keys
        calls = [
            ([keys.broadcast_once(m.id), keys.broadcast], [expiry_ms(m), m.model_dump_json(), m.kind.value])
            for m in messages
        ]
        results = await run_batch(self._redis, self._script, calls)
        return sum(1 for r in results if r)
