"""`pheromone events`: query the ledger (seed 003's EventQuery) from the store file."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from pheromone.cli.common import (
    STORE_ERRORS,
    CliError,
    DataDirOpt,
    DbOpt,
    JsonOpt,
    Table,
    console,
    invalid,
    print_json,
    require_store,
    settings,
    store_failure,
)
from pheromone.contracts import EventQuery
from pheromone.services.store.location import is_postgres, open_reader

QUERY_OPTIONS = {"kinds": "--kind", "correlation_id": "--correlation", "time_range": "--since/--until",
                 "time_range.start": "--since", "time_range.end": "--until"}
"""EventQuery's fields by the options that fill them."""


def events(
    workspace: Annotated[str | None, typer.Option("--workspace", "-w", help="Only this workspace")] = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job")] = None,
    kind: Annotated[list[str] | None, typer.Option("--kind", "-k", help="Only these kinds (repeatable)")] = None,
    correlation: Annotated[str | None, typer.Option("--correlation", help="Only this correlation id")] = None,
    since: Annotated[datetime | None, typer.Option("--since", help="From this time (ISO 8601, UTC if naive)")] = None,
    until: Annotated[datetime | None, typer.Option("--until", help="Up to this time (ISO 8601)")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many (newest; with --after, oldest)")] = 50,
    after: Annotated[
        int | None,
        typer.Option("--after", min=0, show_default=False,
                     help="Page through the ledger: the oldest events after this cursor (0: from the start); "
                          "prints the next cursor"),
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """Show ledger events, newest last; `--after CURSOR` pages forward through all of them.

    With `--after`, `--json` prints `{"events": [...], "next_after": N, "more": bool}`; pass `next_after` to
    the next call (the cursor is the ledger's position, so pages neither skip nor repeat while events arrive).
    """
    from datetime import UTC

    def aware(value: datetime | None) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value

    try:
        query = EventQuery.model_validate(
            {
                "workspace": workspace,
                "job": job,
                "kinds": kind or [],
                "correlation_id": correlation,
                "time_range": {"start": aware(since), "end": aware(until)} if since or until else None,
                "limit": limit,
            },
            strict=False,
        )
    except ValidationError as exc:
        raise CliError(invalid(exc, QUERY_OPTIONS)) from exc
    path = require_store(settings(data_dir=data_dir, db=db))
    if not is_postgres(path) and not Path(path).is_file():  # aiosqlite would print its thread's traceback
        raise CliError(f"cannot read the store {path}: not a file")

    async def run() -> tuple[list[tuple[int, str]], bool]:
        async with open_reader(path) as reader:
            if after is not None:
                return await reader.page(query, after)
            return [(0, body) for body in await reader.events(query)], False

    try:
        rows, more = asyncio.run(run())
    except STORE_ERRORS as exc:
        raise store_failure(path, exc) from exc
    bodies = [body for _, body in rows]
    next_after = rows[-1][0] if rows else after
    if as_json and after is not None:
        print_json({"events": [json.loads(b) for b in bodies], "next_after": next_after, "more": more})
        return
    if as_json:
        print_json([json.loads(b) for b in bodies])
        return
    table = Table("occurred_at", "kind", "workspace", "job", "event_id", "correlation")
    for body in bodies:
        e = json.loads(body)
        table.add_row(e["occurred_at"], e["payload"]["type"], e["workspace"], e["job"], e["event_id"],
                      e.get("correlation_id") or "")
    console.print(table)
    console.print(f"[dim]{len(bodies)} event(s)[/dim]")
    if after is not None:
        console.print(f"[dim]next page: --after {next_after}{'' if more else ' (none yet)'}[/dim]")
