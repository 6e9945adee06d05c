"""Running one Lua script many times in one round trip, for the services and the client alike.

`run_batch` sends many calls of one script in one pipeline of EVALSHA. redis-py's `Script` in a pipeline sends
SCRIPT EXISTS before every execute (one more round trip per batch); here the script is loaded once and only
reloaded when the server answers NOSCRIPT (restarted or flushed). Every script run this way is idempotent, so
retrying the whole batch after a reload is safe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

__all__ = ["run_batch"]


async def run_batch(
    redis: aioredis.Redis, script: AsyncScript, calls: Sequence[tuple[Sequence[str], Sequence[Any]]]
) -> list[Any]:
    """Run `script` once per (keys, args) in one pipeline; returns each call's result."""
    if not calls:
        return []
    for attempt in (1, 2):
        try:
            async with redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
                return list(await pipe.execute())
        except NoScriptError:
            if attempt == 2:
                raise
            script.sha = await redis.script_load(script.script)
    raise AssertionError("unreachable")
