"""`pheromone ratelimits`: the rate limits every job sees right now, read from the coordinator's live keys."""

from __future__ import annotations

import asyncio

from rich.markup import escape

from pheromone import ratelimits as live
from pheromone.cli.common import (
    DataDirOpt,
    JsonOpt,
    PrefixOpt,
    RedisUrlOpt,
    Table,
    console,
    print_json,
    redis_url_for,
    settings,
)
from pheromone.contracts.broadcast import RateLimitStatus
from pheromone.contracts.streams import Keys
from pheromone.plumbing.connection import redis_client


def ratelimits(
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    data_dir: DataDirOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """List active rate limits (model, error code, time left, who reported them), soonest expiry first."""
    s = settings(redis_url, data_dir, prefix=prefix)
    with redis_url_for(s) as url:
        limits = asyncio.run(_active(url, Keys(s.prefix)))
    if as_json:
        print_json([limit.model_dump(mode="json") for limit in limits])
        return
    table = Table("model", "error code", "seconds left", "expires at (UTC)", "reported by", "workspace")
    for limit in limits:
        # Names are user data: escaped, so `[red]` in a model name prints as written.
        table.add_row(escape(limit.model), escape(limit.error_code or ""), f"{limit.seconds_left:.1f}",
                      limit.expires_at.isoformat(timespec="seconds") if limit.expires_at else "",
                      escape(limit.reported_by or ""), escape(limit.workspace or ""))
    console.print(table)
    console.print(f"[dim]{len(limits)} active rate limit(s)[/dim]")


async def _active(url: str, keys: Keys) -> list[RateLimitStatus]:
    r = redis_client(url, socket_connect_timeout=5)
    try:
        return await live.active(r, keys)
    finally:
        await r.aclose()
