"""Request/reply to the query service over Redis.

A request is RPUSHed onto `{prefix}:queries` as JSON `{"op", "args", "reply"}`; a query service replica pops
it from the head (FastStream's list subscriber BLPOPs, so requests are answered oldest first), answers on the
one-off list `reply` (which expires), and the client BLPOPs that list. No polling, no pub/sub subscription per
request, and any number of query replicas share the work.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import redis.asyncio as aioredis
from pydantic import TypeAdapter
from redis.exceptions import RedisError

from contracts import Envelope, EventQuery
from contracts.streams import Keys
from pheromone.errors import QueryError, QueryTimeout

_ENVELOPES = TypeAdapter(list[Envelope])


class QueryClient:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def call(self, op: str, args: dict[str, Any], *, timeout: float = 10.0) -> Any:
        reply = f"{self._keys.prefix}:reply:{uuid.uuid4().hex}"
        request = json.dumps({"op": op, "args": args, "reply": reply})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        # redis-py applies the connection's socket_timeout to blocking commands too: a longer BLPOP would be
        # cut off by its own TimeoutError. Wait in slices shorter than that; the reply list keeps the answer
        # between slices. A slice is never below 10 ms, since BLPOP rounds to ms and 0 means "forever".
        read_timeout = self._redis.connection_pool.connection_kwargs.get("socket_timeout")
        step = read_timeout / 2 if read_timeout else timeout
        try:
            await self._redis.rpush(self._keys.queries, request)
            while (remaining := deadline - loop.time()) > 0:
                answer = await self._redis.blpop([reply], timeout=max(min(remaining, step), 0.01))
                if answer is not None:
                    break
            else:
                raise QueryTimeout(f"no query service answered {op!r} within {timeout:g}s (is it running?)")
        except RedisError as exc:
            raise QueryError(f"query {op!r} failed: {type(exc).__name__}: {exc}") from exc
        body = json.loads(answer[1])
        if not body.get("ok"):
            raise QueryError(body.get("error", "query failed"))
        return body["result"]

    async def events(self, query: EventQuery, *, timeout: float = 10.0) -> list[Envelope]:
        result = await self.call("events", query.model_dump(mode="json"), timeout=timeout)
        # Strict contracts take times from JSON strings only: re-validate as JSON, not as Python objects.
        return _ENVELOPES.validate_json(json.dumps(result))
