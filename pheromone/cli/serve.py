"""`pheromone serve`: run every service (or `--only` some) in this process until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Annotated

import typer

from pheromone.cli.common import (
    CliError,
    DataDirOpt,
    DbOpt,
    PrefixOpt,
    RedisUrlOpt,
    err,
    redis_url_for,
    settings,
)
from services.runtime import Runtime, service_names


def serve(
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only this service (repeatable)", show_default=False)
    ] = None,
    redis_url: RedisUrlOpt = None,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
    prefix: PrefixOpt = None,
    verbose: Annotated[
        bool, typer.Option("--verbose/--quiet", "-v/-q", help="Log lifecycle events at INFO, or warnings only")
    ] = True,
) -> None:
    """Run the worker services (store, query, …) against Redis and the SQLite store."""
    known = service_names()
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise CliError(f"unknown service {', '.join(unknown)}; choose from: {', '.join(known)}")
    s = settings(redis_url, data_dir, db, prefix)
    if verbose:
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("faststream").setLevel(logging.WARNING)
    with redis_url_for(s) as url:
        asyncio.run(_serve(s, url, only or None))


async def _serve(s: object, url: str, only: list[str] | None) -> None:
    runtime = Runtime(s, url, only)  # type: ignore[arg-type]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await runtime.start()
    err.print(f"[green]serving[/green] {', '.join(runtime.names)} — Ctrl-C to stop")
    try:
        await stop.wait()
    finally:
        await runtime.stop()
