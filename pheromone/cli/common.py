"""What every CLI command shares: settings from flags and environment, Redis resolution, one-line errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import SecretStr, ValidationError
from redis.exceptions import RedisError
from rich import table as rich_table
from rich.cells import cell_len
from rich.console import Console

from pheromone.plumbing import connection
from pheromone.services.errors import StoreError
from pheromone.services.query import finite
from pheromone.services.settings import Settings, StoreLocation
from pheromone.services.store.location import describe, is_postgres

PIPE_WIDTH = 10_000
"""The width output gets when it is not a terminal (a pipe, a file, a log): wide enough that no line is wrapped
and no table cell is cut, since nothing there reflows text the way a terminal's reader can resize. `COLUMNS`
still wins when set."""


def _console(*, stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = PIPE_WIDTH
    return console


console = _console()
err = _console(stderr=True)


class Table(rich_table.Table):
    """rich's table, at least as wide as its title, so that a title is never wrapped over a narrow table."""

    def __init__(self, *headers: Any, **kwargs: Any) -> None:
        title = kwargs.get("title")
        if isinstance(title, str) and kwargs.get("min_width") is None:
            kwargs["min_width"] = cell_len(title)
        super().__init__(*headers, **kwargs)

RedisUrlOpt = Annotated[
    str | None, typer.Option("--redis-url", help="Redis URL (env PHEROMONE_REDIS_URL); none: embedded server")
]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (env PHEROMONE_DATA_DIR)")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="SQLite store file (default <data-dir>/store.db)")]
PrefixOpt = Annotated[str | None, typer.Option("--prefix", help="Key prefix (env PHEROMONE_PREFIX)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")]


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


_PYDANTIC_PREFIXES = ("Value error, ", "Assertion failed, ")
"""What pydantic puts before the message of a validator's ValueError or assert: noise to a user."""


def invalid(exc: ValidationError, names: Mapping[str, str] | None = None, *, what: str = "",
            show_input: bool = True) -> str:
    """A pydantic error as one sentence: `invalid --kind 'bogus': input should be …`.

    The first error is named by the option it came from (`names` maps a field path such as `time_range` to
    the options that fill it, else `--field-name`; list positions are dropped), with the value given when it
    is short enough to show and `show_input` (never for settings: a URL or a password may be among them);
    `what` replaces the option (e.g. `setting batch_size`).
    """
    first = exc.errors(include_url=False)[0]
    path = ".".join(str(p) for p in first["loc"] if not isinstance(p, int))
    name = what or (names or {}).get(path) or (f"--{path.replace('_', '-')}" if path else "arguments")
    msg = first["msg"]
    for prefix in _PYDANTIC_PREFIXES:
        msg = msg.removeprefix(prefix)
    given = first.get("input")
    shown = (f" {given!r}" if show_input and isinstance(given, str | int | float) and not isinstance(given, bool)
             and len(repr(given)) <= 60 else "")
    return f"invalid {name}{shown}: {msg[:1].lower()}{msg[1:]}"


def settings(
    redis_url: str | None = None, data_dir: Path | None = None, db: Path | None = None, prefix: str | None = None
) -> Settings:
    """Settings from the environment, overridden by whichever flags were given."""
    overrides: dict[str, Any] = {}
    if redis_url is not None:
        overrides["redis_url"] = SecretStr(redis_url)
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if db is not None:  # the flag names a SQLite file, over a PHEROMONE_STORE_URL in the environment
        overrides["db_path"] = db
        overrides["store_url"] = None
    if prefix is not None:
        overrides["prefix"] = prefix
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        where = ".".join(map(str, exc.errors(include_url=False)[0]["loc"]))  # empty: a rule across settings
        raise CliError(invalid(exc, what=f"setting {where}" if where else "settings", show_input=False)) from exc


@contextlib.contextmanager
def redis_url_for(s: Settings, *, announce: bool = True) -> Iterator[str]:
    """The configured Redis URL, or the embedded server's (reused if running, else started and stopped; with
    `announce` and a terminal, a line on stderr says so, since its data directory may not be the one expected;
    stderr that is not a terminal gets errors only, one line each).

    A configured URL carries the auth and TLS settings (`pheromone.plumbing.connection.settings_url`) and is checked
    with one PING first, so bad credentials or certificates are one line, not a traceback; a Redis error
    inside the block becomes one line too, without the password (`connection.describe`).
    """
    url = connection.settings_url(s)
    if url is not None:
        try:
            asyncio.run(connection.check(url))
        except connection.ConnectionSetupError as exc:
            raise CliError(str(exc)) from None
        with _redis_errors(url):
            yield url
        return
    from pheromone.plumbing.embedded import ensure_server

    url, owned = ensure_server(s.data_dir)
    if owned is not None and announce and err.is_terminal:
        err.print(f"[dim]no Redis configured: started embedded Valkey at {url} (data in {s.data_dir})[/dim]")
    try:
        with _redis_errors(url):
            yield url
    finally:
        if owned is not None:
            owned.stop()


@contextlib.contextmanager
def _redis_errors(url: str) -> Iterator[None]:
    try:
        yield
    except RedisError as exc:
        raise CliError(connection.describe(exc, url)) from None


STORE_ERRORS = (sqlite3.Error, StoreError)
"""What reading a store can raise: SQLite's own errors, and the `StoreError`s the backends map theirs to."""


def store_failure(location: StoreLocation, exc: Exception) -> CliError:
    """A failed read as one line naming the store once (a PostgreSQL store's errors already name it)."""
    where = describe(location)
    if where in str(exc):
        return CliError(f"cannot read the store: {exc}")
    return CliError(f"cannot read the store at {where}: {exc}")


def require_store(s: Settings) -> StoreLocation:
    """The configured store: a PostgreSQL URL (reached when read), or a SQLite file that must exist."""
    if is_postgres(s.store):
        return s.store
    path = s.store_path
    if not path.exists():
        raise CliError(f"no store at {path} (run `pheromone serve` first, or pass --db / --data-dir)")
    return path


def print_json(value: Any) -> None:
    # Standard JSON: a non-finite aggregate (rows stored before numbers were bounded) prints as null.
    sys.stdout.write(finite.dumps(value, indent=2) + "\n")
