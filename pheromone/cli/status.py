"""`pheromone status` and `pheromone health`: what an operator (or an orchestrator) asks of a running install.

Both only read: Redis (streams, groups, liveness keys), the store file and the local spool directory
(`services.status`). Neither starts the embedded server: with no Redis URL configured they look for the one
the data directory's `serve` runs. Every Redis call is bounded by `--timeout`; a URL is only ever shown
redacted (`pheromone.plumbing.connection.redact`).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from rich.markup import escape

from pheromone.cli.common import (
    CliError,
    DataDirOpt,
    DbOpt,
    JsonOpt,
    PrefixOpt,
    RedisUrlOpt,
    Table,
    console,
    err,
    print_json,
    settings,
)
from pheromone.contracts.streams import Keys
from pheromone.plumbing import connection
from pheromone.services import status as observe
from pheromone.services.settings import Settings

TimeoutOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for Redis (connect and each reply)")
]
SpoolOpt = Annotated[
    Path | None, typer.Option("--spool-dir", help="Client spool directory to count (default <data-dir>/spool)")
]


class Unreachable(Exception):
    """Redis could not be asked: the message says which server and why, never a password."""


def _url(s: Settings) -> str:
    """The configured Redis URL, or the data directory's running embedded server's; never starts one."""
    url = connection.settings_url(s)
    if url is not None:
        return url
    from pheromone.plumbing.embedded import STATE_FILE

    state = s.data_dir / STATE_FILE
    try:
        return str(json.loads(state.read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        raise Unreachable(
            f"no Redis configured (--redis-url / PHEROMONE_REDIS_URL) and no embedded server running for {s.data_dir}"
        ) from None


def _check_timeout(timeout: float) -> None:
    if not 0 < timeout <= 300:
        raise CliError(f"--timeout must be between 0 and 300 seconds, not {timeout:g}")


async def _ask(url: str, timeout: float, what: Any) -> Any:
    """Run `what(redis)` against `url` within `timeout` seconds; Unreachable with a one-line reason if not."""
    r = connection.redis_client(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                retry=Retry(NoBackoff(), 0))
    try:
        async with asyncio.timeout(timeout):
            return await what(r)
    except (RedisError, OSError, TimeoutError) as exc:
        raise Unreachable(connection.describe(exc, url)) from None
    finally:
        await r.aclose()


# -- status -------------------------------------------------------------------------------------------------


def status(
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
    prefix: PrefixOpt = None,
    spool_dir: SpoolOpt = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Streams, consumer groups, dead letters, service liveness, the store and the local spool backlog.

    Exit status 1 when Redis cannot be reached (what is local, the store and the spool, is still shown).
    """
    _check_timeout(timeout)
    s = settings(redis_url, data_dir, db, prefix)
    keys = Keys(s.prefix)
    report: dict[str, Any]
    url: str | None = None
    try:
        url = _url(s)
        report = {"redis": {"url": connection.redact(url), "reachable": True}}
        report.update(asyncio.run(_ask(
            url, timeout, lambda r: observe.snapshot(r, keys, s.store, spool_dir or s.data_dir / "spool"))))
    except Unreachable as exc:
        report = {
            "redis": {"url": None if url is None else connection.redact(url), "reachable": False,
                      "error": str(exc)},
            "prefix": s.prefix, "store": asyncio.run(observe.store(s.store)),
            "spool": observe.spool(spool_dir or s.data_dir / "spool"),
        }
    if as_json:
        print_json(report)
    else:
        _render(report)
    if not report["redis"]["reachable"]:
        raise typer.Exit(1)


def _line(text: str) -> None:
    """One plain line on stdout: never wrapped, no markup (paths and ids may hold brackets)."""
    console.print(text, highlight=False, soft_wrap=True, markup=False)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _render(report: dict[str, Any]) -> None:
    redis = report["redis"]
    if not redis["reachable"]:
        err.print(f"[red]redis unreachable:[/red] {escape(redis['error'])}", highlight=False, soft_wrap=True)
    else:
        _line(f"redis {redis['url']}  prefix {report['prefix']}  at {report['time']}")
        table = Table("stream", "length", "oldest", "newest", title="streams")
        for row in report["streams"]:
            table.add_row(row["name"], str(row["length"]), _age(row["oldest_age_s"]), _age(row["newest_age_s"]))
        console.print(table)
        table = Table("stream", "group", "consumers", "lag", "pending", title="consumer groups")
        for row in report["groups"]:
            lag = "?" if row["lag"] is None else str(row["lag"])
            table.add_row(row["stream"], row["group"], str(row["consumers"]), lag, str(row["pending"]))
        console.print(table)
        console.print(f"dead letters: {report['dead_letters']}")
        table = Table("service", "consumer", "host", "pid", "last beat", "started", title="services alive")
        for row in report["services"]:
            table.add_row(row["service"], row["consumer"], row["host"] or "?", str(row["pid"] or "?"),
                          _age(row["beat_age_s"]), row["started_at"] or "?")
        console.print(table)
        console.print(f"store writer: {report['store_writer'] or 'none (no store holds the writer lease)'}")
    st = report["store"]
    if st["exists"]:
        last = st["last_event"]
        shown = "none" if last is None else f"#{last['seq']} {last['event_id']} {last['kind']} at {last['stored_at']}"
        _line(f"store {st['path']}: {st['bytes']:,} bytes + {st['wal_bytes']:,} WAL; "
              f"ledger {st['ledger']:,} events; last applied {shown}")
    else:
        _line(f"store {st['path']}: not on this machine")
    sp = report["spool"]
    _line(f"spool {sp['path']}: {sp['events']:,} events ({sp['bytes']:,} bytes) in {sp['files']} file(s) "
          "not yet sent")


# -- health -------------------------------------------------------------------------------------------------


def health(
    service: Annotated[
        list[str] | None,
        typer.Option("--service", help="Expect this service (repeatable); default: every service", show_default=False),
    ] = None,
    max_lag: Annotated[
        int | None, typer.Option("--max-lag", show_default=False,
                                 help="Most unread entries a group may have (env PHEROMONE_HEALTH_MAX_LAG)")
    ] = None,
    max_pending: Annotated[
        int | None, typer.Option("--max-pending", show_default=False,
                                 help="Most unacknowledged entries a group may have (env PHEROMONE_HEALTH_MAX_PENDING)")
    ] = None,
    local: Annotated[
        bool, typer.Option("--local", help="Count only services running on this host (a container's healthcheck)")
    ] = False,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    data_dir: DataDirOpt = None,
    prefix: PrefixOpt = None,
    timeout: TimeoutOpt = 5.0,
) -> None:
    """Exit 0 when every expected service beats and its groups' lag and pending are within bounds, else 1.

    Each problem is one line on stderr; so is an unreachable Redis (also exit 1). For compose healthchecks
    and orchestrators' probes.
    """
    from pheromone.services.runtime import service_names

    known = service_names()
    unknown = sorted(set(service or ()) - set(known))
    if unknown:
        raise CliError(f"unknown service {', '.join(unknown)}; choose from: {', '.join(known)}")
    for flag, value in (("--max-lag", max_lag), ("--max-pending", max_pending)):
        if value is not None and value < 0:
            raise CliError(f"{flag} must be 0 or more, not {value}")
    _check_timeout(timeout)
    s = settings(redis_url, data_dir, prefix=prefix)
    keys = Keys(s.prefix)
    expected = tuple(dict.fromkeys(service or known))

    async def probe(r: Any) -> list[str]:
        beats = await observe.heartbeats(r, keys)
        rows = await observe.groups(r, keys)
        return observe.problems(
            beats, rows, expected,
            max_lag=s.health_max_lag if max_lag is None else max_lag,
            max_pending=s.health_max_pending if max_pending is None else max_pending,
            host=os.uname().nodename if local else None,
        )

    try:
        problems = asyncio.run(_ask(_url(s), timeout, probe))
    except Unreachable as exc:
        problems = [str(exc)]
    if as_json:
        print_json({"healthy": not problems, "services": list(expected), "problems": problems})
    elif problems:
        for line in problems:
            sys.stderr.write(f"unhealthy: {line}\n")
    else:
        _line(f"healthy: {', '.join(expected)}")
    if problems:
        raise typer.Exit(1)
