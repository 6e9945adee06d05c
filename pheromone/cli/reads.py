"""Reading the store file from the CLI: argument validation, the store's reader, shared table helpers.

Read commands open the store directly (operators run them next to the store) with the store's one `Reader`,
through the same query functions the query service uses (`services.query.learning`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError

from pheromone.cli.common import STORE_ERRORS, CliError, Table, invalid, require_store, settings, store_failure
from pheromone.services.query import learning as q
from pheromone.services.store.location import StoreLocation, is_postgres, open_reader
from pheromone.services.store.reader import probe
from pheromone.services.store.reads import StoreReads, UnknownId

A = TypeVar("A", bound=q.Args)
T = TypeVar("T")


FIELD_OPTIONS = {
    "job_hash": "--job", "pattern_type": "--type", "tags": "--tag", "match_all_tags": "--all-tags",
    "pattern_id": "--pattern", "include_stable": "--all", "static_seconds": "--static",
    "validation_pass_rate": "--pass-rate", "start_cycle": "--from", "end_cycle": "--to",
    "window_cycles": "--window",
}
"""The query arguments whose option is not `--field-name`, so an error names what the user typed."""


def parse_args(schema: type[A], names: Mapping[str, str] | None = None, /, **values: Any) -> A:
    """The command's arguments as the query's model; an invalid one is a one-line error naming its option
    (`names` for arguments that are no option, e.g. {"id": "pattern id"})."""
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        raise CliError(invalid(exc, {**FIELD_OPTIONS, **(names or {})})) from exc


def readable(location: StoreLocation) -> StoreLocation:
    """`location`, after a synchronous probe that a SQLite file is a store this process can read (a one-line
    error if not); a PostgreSQL store is probed by connecting to it."""
    if is_postgres(location):
        return location
    try:
        probe(Path(location))
    except sqlite3.Error as exc:
        raise CliError(f"cannot read the store at {location}: {exc}") from exc
    return location


def read_store(location: StoreLocation, fn: Callable[[StoreReads], Awaitable[T]]) -> T:
    """Run `fn` on a reader of the store at `location`; a store error or an unknown id is a one-line error."""
    readable(location)

    async def run() -> T:
        try:
            async with open_reader(location) as reader:
                return await fn(reader)
        except UnknownId as exc:
            raise CliError(str(exc)) from exc
        except STORE_ERRORS as exc:
            raise store_failure(location, exc) from exc

    return asyncio.run(run())


def query_store(db: Path | None, data_dir: Path | None, fn: Any, args: q.Args) -> Any:
    """A learning query's answer, from the store named by --db / --data-dir, with the settings it recorded."""
    path = require_store(settings(data_dir=data_dir, db=db))

    async def run(reads: StoreReads) -> Any:
        return await fn(reads, args, await reads.settings())

    return read_store(path, run)


def fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def kv_table(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, fmt(value) if isinstance(value, float) else "" if value is None else str(value))
    return table
