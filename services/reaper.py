"""Dead consumers removed from their groups: nothing else removes a consumer that is gone.

Redis keeps a group's consumer until someone deletes it, so every service process that ever ran (a restart
takes a new `<service>-<host>-<pid>` name) would stay in `XINFO GROUPS`'s consumer count forever. The rule, for
each group a runtime reads:

    a consumer is deleted (XGROUP DELCONSUMER) when, atomically on the server,
        it holds no pending entries
        and it has been idle (no read, no claim, no ack) at least `consumer_expiry_s`
        and its liveness key `{prefix}:alive:<service>:<consumer>` does not exist (no live heartbeat)

A consumer that still holds pending entries is never deleted: DELCONSUMER would drop those entries from the
group's pending list, and nobody would ever retry them. The retrier (`GroupWorker.claim_pending`) claims them
once they are idle `claim_idle_ms`; with nothing left, the dead consumer is deleted at the next round. Deleting
a live consumer by mistake would cost nothing either: the check and the delete are one script, so it held
nothing, and its next XREADGROUP creates it again.

`reap()` runs when a runtime starts and every `trim_interval_s`; on a clean stop a runtime deletes its own
consumers when they hold nothing (`retire()`).
"""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

DELETE_IF_DEAD = """
local rows = redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
for _, row in ipairs(rows) do
  local f = {}
  for i = 1, #row, 2 do f[row[i]] = row[i + 1] end
  if f['name'] == ARGV[2] then
    if f['pending'] ~= 0 or f['idle'] < tonumber(ARGV[3]) then return 0 end
    if #KEYS > 1 and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
    return 1
  end
end
return 0
"""
"""KEYS: stream[, the consumer's liveness key]. ARGV: group, consumer, minimum idle ms.
Returns 1 if the consumer was deleted, 0 if it is alive, busy, holds entries, or is not there."""


async def reap(
    r: aioredis.Redis, stream: str, group: str, *, idle_ms: int, keep: str,
    heartbeat_of: Callable[[str], str | None],
) -> list[str]:
    """Delete the dead consumers of `group` on `stream` (the module's rule); returns their names.

    `keep` is the caller's own consumer; `heartbeat_of(name)` is a consumer's liveness key, or None for a
    name no pheromone service makes (such a consumer is judged by its pending entries and idle time alone).
    """
    try:
        rows = await r.xinfo_consumers(stream, group)
    except ResponseError as exc:
        if "NOGROUP" in str(exc) or "no such key" in str(exc).lower():
            return []  # a flushed server: the watchdog recreates the group, with no consumers to delete
        raise
    deleted = []
    for row in rows:
        name = row["name"].decode() if isinstance(row["name"], bytes) else str(row["name"])
        if name == keep or row["pending"] or row["idle"] < idle_ms:
            continue  # read without the script first: most consumers are alive, and one call says so
        if await _delete_if_dead(r, stream, group, name, idle_ms, heartbeat_of(name)):
            deleted.append(name)
    return deleted


async def retire(r: aioredis.Redis, stream: str, group: str, consumer: str) -> bool:
    """Delete the caller's own consumer if it holds nothing (a clean stop); True if it was deleted."""
    return await _delete_if_dead(r, stream, group, consumer, 0, None)


async def _delete_if_dead(
    r: aioredis.Redis, stream: str, group: str, consumer: str, idle_ms: int, heartbeat: str | None
) -> bool:
    keys = [stream] if heartbeat is None else [stream, heartbeat]
    return bool(await r.eval(DELETE_IF_DEAD, len(keys), *keys, group, consumer, idle_ms))
