"""Request/reply to the query service over Redis.

A request is LPUSHed onto `{prefix}:queries` as JSON `{"op", "args", "reply"}`; a query service replica pops
it, answers on the one-off list `reply` (which expires), and the client BLPOPs that list. No polling, no
pub/sub subscription per request, and any number of query replicas share the work.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import redis.asyncio as aioredis
from pydantic import TypeAdapter

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
        await self._redis.lpush(self._keys.queries, request)
        answer = await self._redis.blpop([reply], timeout=timeout)
        if answer is None:
            raise QueryTimeout(f"no query service answered {op!r} within {timeout:g}s (is it running?)")
        body = json.loads(answer[1])
        if not body.get("ok"):
            raise QueryError(body.get("error", "query failed"))
        return body["result"]

    async def events(self, query: EventQuery, *, timeout: float = 10.0) -> list[Envelope]:
        result = await self.call("events", query.model_dump(mode="json"), timeout=timeout)
        # Strict contracts take times from JSON strings only: re-validate as JSON, not as Python objects.
        return _ENVELOPES.validate_json(json.dumps(result))
