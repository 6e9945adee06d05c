"""The query service: answers jobs' request/reply queries from the store.

Subscriber (FastStream list subscriber):
  - reads requests from the list `{prefix}:queries` (BLPOP; clients RPUSH, so requests are answered oldest
    first; replicas share requests and each is answered once);
  - writes the answer to the request's one-off reply list, which expires after `REPLY_TTL_S`;
  - ack policy: none (a list pop is the receipt); a request that cannot be parsed is answered with an error
    when it names a valid reply key, else logged and dropped: queries are not durable events;
  - idempotency: queries are read-only.
The reply key must be `{prefix}:reply:<32 hex>`: a request cannot make the service write any other key.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from faststream.redis import ListSub
from pydantic import ValidationError

from pheromone.contracts import EventQuery
from pheromone.contracts.queries import MAX_REQUEST_BYTES
from pheromone.plumbing.refusals import invalid, one_line
from pheromone.services.context import ServiceContext, ServiceParts
from pheromone.services.query import finite
from pheromone.services.query.learning import LEARNING_OPS
from pheromone.services.query.sessions import SESSION_OPS
from pheromone.services.store.location import ensure_store, open_reader
from pheromone.services.store.reads import StoreReads

log = logging.getLogger(__name__)
REPLY_TTL_S = 60
_REPLY_MEMBER = re.compile(rb'"reply"\s*:\s*"([^"\\]{1,256})"')

Op = Callable[[StoreReads, dict[str, Any]], Awaitable[Any]]


async def _events(reader: StoreReads, args: dict[str, Any]) -> Any:
    # Validate as JSON: strict contracts take times from JSON strings, not from Python strings.
    query = EventQuery.model_validate_json(json.dumps(args))
    return [json.loads(body) for body in await reader.events(query)]


async def _counts(reader: StoreReads, args: dict[str, Any]) -> Any:
    if args:  # fleet-wide: a `workspace` (or any) argument must be refused, not silently ignored
        raise ValueError(f"counts takes no arguments (it counts the whole ledger); got {', '.join(sorted(args))}")
    return await reader.counts()


OPS: dict[str, Op] = {"events": _events, "counts": _counts}
"""Query operations by name; later issues add theirs here."""
OPS.update(LEARNING_OPS)  # the learning model's queries (issue 3)
OPS.update(SESSION_OPS)  # what learning sessions edited: playbook, guidance (issue 6)


async def answer(reader: StoreReads, raw: bytes, reply_pattern: re.Pattern[str]) -> tuple[str | None, dict[str, Any]]:
    """Parse and run one request; returns (reply key or None, response)."""
    if len(raw) > MAX_REQUEST_BYTES:
        # Not parsed, but answered if it names a reply key (one regex pass; JSON escapes quotes in strings, so
        # only a real "reply" member matches): the client gets this error at once instead of timing out.
        found = [m.decode(errors="replace") for m in _REPLY_MEMBER.findall(raw)]
        reply = next((r for r in reversed(found) if reply_pattern.fullmatch(r)), None)
        return reply, {"ok": False, "error": f"request is {len(raw)} bytes, over the {MAX_REQUEST_BYTES}-byte limit"}
    try:
        request = json.loads(raw)
        reply = request.get("reply") if isinstance(request, dict) else None
    except (ValueError, UnicodeDecodeError):
        return None, {"ok": False, "error": "request is not JSON"}
    if not isinstance(reply, str) or not reply_pattern.fullmatch(reply):
        return None, {"ok": False, "error": "request has no valid reply key"}
    op, args = request.get("op"), request.get("args", {})
    if not isinstance(op, str) or op not in OPS:
        shown = op if isinstance(op, str) else type(op).__name__
        return reply, {"ok": False, "error": f"unknown query {shown!r}; known: {', '.join(sorted(OPS))}"}
    if not isinstance(args, dict):
        return reply, {"ok": False, "error": "args must be an object"}
    try:
        return reply, {"ok": True, "result": await OPS[op](reader, args)}
    except ValidationError as exc:
        return reply, {"ok": False, "error": invalid(exc, "query")}
    except Exception as exc:  # a failed query is answered, never left to time out
        error = one_line(f"{type(exc).__name__}: {exc}")
        log.warning("query %s failed: %s", op, error)
        return reply, {"ok": False, "error": f"query failed: {error}"}


def reply_json(response: dict[str, Any]) -> str:
    """The response as standard JSON: a non-finite aggregate is null, never `Infinity` (services.query.finite)."""
    return finite.dumps(response)


async def build(ctx: ServiceContext) -> ServiceParts:
    await ensure_store(ctx.settings.store)
    reader = await open_reader(ctx.settings.store).__aenter__()
    pattern = re.compile(ctx.keys.reply_pattern())
    redis = ctx.redis

    async def handle(body: bytes) -> None:
        reply, response = await answer(reader, body, pattern)
        if reply is None:
            log.warning("dropped a query request: %s", response["error"])
            return
        async with redis.pipeline(transaction=True) as pipe:
            pipe.lpush(reply, reply_json(response))
            pipe.expire(reply, REPLY_TTL_S)
            await pipe.execute()

    async def close() -> None:
        await reader.__aexit__()

    return ServiceParts(
        name="query",
        subscriptions=[(ListSub(ctx.keys.queries), handle)],
        close=close,
    )
