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
from pheromone.services.runtime import Runtime, service_names
from pheromone.services.settings import Settings
from pheromone.services.web.routes import HttpSide


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
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus metrics on this port, at /metrics "
                     "(env PHEROMONE_METRICS_PORT; 0: off)", show_default=False),
    ] = None,
    http_port: Annotated[
        int | None,
        typer.Option("--http-port", help="Serve /healthz, /readyz, /metrics, /asyncapi.json and the dashboard at / "
                     "on this port (env PHEROMONE_HTTP_PORT; 0: off)", show_default=False),
    ] = None,
) -> None:
    """Run the worker services (store, query, …) against Redis and the SQLite store."""
    known = service_names()
    unknown = sorted(set(only or ()) - set(known))
    if unknown:
        raise CliError(f"unknown service {', '.join(unknown)}; choose from: {', '.join(known)}")
    s = settings(redis_url, data_dir, db, prefix)
    if metrics_port is not None:
        if not 0 <= metrics_port <= 65_535:
            raise CliError(f"--metrics-port must be 0 (off) or a TCP port up to 65535, not {metrics_port}")
        s = s.model_copy(update={"metrics_port": metrics_port})
    if http_port is not None:
        if not 0 <= http_port <= 65_535:
            raise CliError(f"--http-port must be 0 (off) or a TCP port up to 65535, not {http_port}")
        s = s.model_copy(update={"http_port": http_port})
    if verbose:
        logging.getLogger().setLevel(logging.INFO)
        logging.getLogger("faststream").setLevel(logging.WARNING)
    with redis_url_for(s) as url:
        asyncio.run(_serve(s, url, only or None))


async def _serve(s: Settings, url: str, only: list[str] | None) -> None:
    runtime = Runtime(s, url, only)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    http: HttpSide | None = None
    if s.http_port:  # first: probes get "not ready" while the services start, and a port in use fails at once
        http = HttpSide(runtime)
        await http.start()
    try:
        await runtime.start()
        where = f"; http://{s.http_addr}:{http.port}/" if http else ""
        err.print(f"[green]serving[/green] {', '.join(runtime.names)}{where} — Ctrl-C to stop")
        await stop.wait()
    finally:
        await runtime.stop()
        if http is not None:
            await http.close()
