"""Request/reply to the query service over Redis.

A request is RPUSHed onto `{prefix}:queries` as JSON `{"op", "args", "reply"}`; a query service replica pops
it from the head (FastStream's list subscriber BLPOPs, so requests are answered oldest first), answers on the
one-off list `reply` (which expires), and the client BLPOPs that list. No polling, no pub/sub subscription per
request, and any number of query replicas share the work.

Each method builds its operation's argument model (`contracts.query_args`), the one the service validates
with, so arguments a service would refuse are refused here, before the round trip, with the same error.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis
from pydantic import BaseModel, TypeAdapter, ValidationError
from redis.exceptions import RedisError

from pheromone.contracts import Envelope, EventQuery
from pheromone.contracts.queries import MAX_REQUEST_BYTES
from pheromone.contracts.query_args import QUERY_ARGS
from pheromone.contracts.streams import Keys
from pheromone.errors import QueryError, QueryTimeout
from pheromone.plumbing.refusals import invalid

_ENVELOPES = TypeAdapter(list[Envelope])
NOT_RUNNING = "is `pheromone serve` running against this server and prefix?"
"""What a `QueryTimeout` suggests: queries are answered by the query service, which `pheromone serve` runs."""


class QueryClient:
    def __init__(self, redis: aioredis.Redis, keys: Keys, *, unanswered: str = NOT_RUNNING) -> None:
        self._redis = redis
        self._keys = keys
        self._unanswered = unanswered

    async def call(self, op: str, args: BaseModel | Mapping[str, Any], *, timeout: float = 10.0) -> Any:
        """Ask the query service `op` with `args`: the operation's argument model, or its JSON as a dict
        (sent as is: the service validates it). A model sends the arguments it was given, as JSON."""
        if isinstance(args, BaseModel):
            args = args.model_dump(mode="json", exclude_unset=True)
        reply = self._keys.reply(uuid.uuid4().hex)
        request = json.dumps({"op": op, "args": dict(args), "reply": reply})
        if (size := len(request.encode())) > MAX_REQUEST_BYTES:
            # The query service would refuse it unread: say so now, without the round trip.
            raise QueryError(f"query {op!r} is {size} bytes, over the {MAX_REQUEST_BYTES}-byte limit")
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
                raise QueryTimeout(f"no query service answered {op!r} within {timeout:g}s: {self._unanswered}")
        except RedisError as exc:
            raise QueryError(f"query {op!r} failed: {type(exc).__name__}: {exc}") from exc
        body = json.loads(answer[1])
        if not body.get("ok"):
            raise QueryError(body.get("error", "query failed"))
        return body["result"]

    async def ask(self, op: str, args: dict[str, Any], *, timeout: float = 10.0) -> Any:
        """`call` with `args` validated by the operation's model first: QueryError if it refuses them."""
        try:
            model = QUERY_ARGS[op].model_validate(args)
        except ValidationError as exc:
            raise QueryError(invalid(exc, "query")) from exc
        return await self.call(op, model, timeout=timeout)

    async def events(self, query: EventQuery, *, timeout: float = 10.0) -> list[Envelope]:
        result = await self.call("events", query.model_dump(mode="json"), timeout=timeout)
        # Strict contracts take times from JSON strings only: re-validate as JSON, not as Python objects.
        return _ENVELOPES.validate_json(json.dumps(result))

    # -- the learning model (issue 3; docs/LEARNING.md). Results are the query service's JSON, as dicts. --

    async def patterns(
        self,
        *,
        pattern_type: str | None = None,
        tags: list[str] | None = None,
        match_all_tags: bool = False,
        status: list[str] | None = None,
        min_trust: float = 0.0,
        min_priority: float = 0.0,
        instrument: str | None = None,
        limit: int = 20,
        timeout: float = 10.0,
    ) -> list[dict[str, Any]]:
        """Best patterns first (by priority): e.g. `patterns(tags=["rate_limit"], min_trust=0.6)`."""
        args = {"pattern_type": pattern_type, "tags": tags or [], "match_all_tags": match_all_tags,
                "status": status or [], "min_trust": min_trust, "min_priority": min_priority,
                "instrument": instrument, "limit": limit}
        return await self.ask("patterns", args, timeout=timeout)  # type: ignore[no-any-return]

    async def pattern(self, pattern_id: str, *, timeout: float = 10.0) -> dict[str, Any]:
        """One pattern with provenance, transitions, success factors and its "why" analysis."""
        return await self.ask("pattern", {"id": pattern_id}, timeout=timeout)  # type: ignore[no-any-return]

    async def learned_wait(self, error_code: str, *, model: str | None = None, static_seconds: float | None = None,
                           timeout: float = 10.0) -> dict[str, Any]:
        """`{"wait_seconds", "confidence", "strategy", ...}` for an error code (and model)."""
        args = {"error_code": error_code, "model": model, "static_seconds": static_seconds}
        return await self.ask("wait", args, timeout=timeout)  # type: ignore[no-any-return]

    async def similar_escalations(self, confidence: float, validation_pass_rate: float, *, limit: int = 5,
                                  timeout: float = 10.0) -> dict[str, Any]:
        """`{"suggestion", "similar"}`: past decisions near this confidence and pass rate, best outcome first."""
        args = {"confidence": confidence, "validation_pass_rate": validation_pass_rate, "limit": limit}
        return await self.ask("escalations_similar", args, timeout=timeout)  # type: ignore[no-any-return]

    async def execution_stats(self, *, workspace: str | None = None, workspace_hash: str | None = None,
                              job_hash: str | None = None, model: str | None = None, by: str | None = None,
                              error_code: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """`{"stats", "optimal_window"}`, overall or grouped `by` workspace hash, job or model. `workspace` scopes
        to what that workspace reported; `workspace_hash` filters on the records' own field."""
        args = {"workspace": workspace, "workspace_hash": workspace_hash, "job_hash": job_hash, "model": model,
                "by": by, "error_code": error_code}
        return await self.ask("execution_stats", args, timeout=timeout)  # type: ignore[no-any-return]

    async def entropy(self, *, history: bool = False, timeout: float = 10.0) -> dict[str, Any]:
        """The pattern population's current entropy (`current`), and its recorded `history` if asked."""
        return await self.ask("entropy", {"history": history}, timeout=timeout)  # type: ignore[no-any-return]

    async def exploration_budget(self, *, job_hash: str | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """`{"current", "history", "statistics", "rules"}` of the exploration budget."""
        return await self.ask("budget", {"job_hash": job_hash}, timeout=timeout)  # type: ignore[no-any-return]

    async def drift(self, *, epistemic: bool = False, include_stable: bool = False,
                    timeout: float = 10.0) -> dict[str, Any]:
        """Patterns whose effectiveness (or, `epistemic`, belief) drift crosses its threshold."""
        args = {"epistemic": epistemic, "include_stable": include_stable}
        return await self.ask("drift", args, timeout=timeout)  # type: ignore[no-any-return]

    async def trajectory(self, *, window_cycles: int | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Evolution trajectory entries and the recurring issue classes over the last `window_cycles`."""
        return await self.ask("trajectory", {"window_cycles": window_cycles},  # type: ignore[no-any-return]
                               timeout=timeout)
