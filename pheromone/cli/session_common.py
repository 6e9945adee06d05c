"""What the session commands (`pheromone.cli.sessions`) and the review commands (`pheromone.cli.review`) share:
their options, the store's views, and sending events through Redis."""

from __future__ import annotations

import asyncio
import getpass
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError

from pheromone.cli.common import STORE_ERRORS, CliError, invalid, redis_url_for, require_store, store_failure
from pheromone.cli.reads import readable
from pheromone.contracts import Envelope
from pheromone.contracts.streams import Keys
from pheromone.contracts.types import Identifier
from pheromone.plumbing import connection
from pheromone.plumbing.append import append
from pheromone.services.consolidator import review as rv
from pheromone.services.errors import StoreError, StoreNotMigrated
from pheromone.services.sessions import artifacts
from pheromone.services.settings import Settings
from pheromone.services.store.location import open_reader, open_sessions
from pheromone.services.store.reads import StoreReads
from pheromone.services.store.session_store import SessionStore

T = TypeVar("T")

WorkspaceOpt = Annotated[str | None, typer.Option("--workspace", "-w", help="Workspace (the session scope)")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who (default operator:<user>)")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="Seconds to wait for the store to apply it")]
SessionArg = Annotated[str, typer.Argument(help="Session id")]
EditArg = Annotated[str, typer.Argument(help="Edit id (as `review list` shows it)")]
_WORKSPACE: TypeAdapter[str] = TypeAdapter(Identifier)


def artifacts_root(s: Settings) -> Path:
    """Where session artifacts (session.json, plans) are written."""
    return s.sessions.artifacts_dir or s.data_dir / "sessions"


@contextmanager
def _store_errors(s: Settings) -> Iterator[None]:
    """A store, artifact or review error as one line; a store from before sessions says how to upgrade it."""
    try:
        yield
    except StoreNotMigrated as exc:  # the readers' missing table, on either backend
        raise CliError(f"the store at {s.store_path} has no session tables (run `pheromone serve` once to "
                       "upgrade it)") from exc
    except StoreError as exc:
        raise CliError(f"cannot read the store at {s.store_path}: {exc}") from exc
    except sqlite3.OperationalError as exc:  # the SQLite session store's own connection
        if "no such table" in str(exc):
            raise CliError(f"the store at {s.store_path} has no session tables (run `pheromone serve` once to "
                           "upgrade it)") from exc
        raise CliError(f"cannot read the store at {s.store_path}: {exc}") from exc
    except STORE_ERRORS as exc:
        raise store_failure(s.store, exc) from exc
    except (artifacts.ArtifactError, rv.ReviewError) as exc:
        raise CliError(str(exc)) from exc


@contextmanager
def store_view(s: Settings) -> Iterator[SessionStore]:
    """The consolidator's view of the store (sessions, edits, the session index), closed after the block."""
    view = open_sessions(require_store(s))
    try:
        with _store_errors(s):
            yield view
    finally:
        view.close()


def read(s: Settings, fn: Callable[[StoreReads], Awaitable[T]]) -> T:
    """Run `fn` on a reader of the configured store (which must exist), with the same one-line errors."""
    path = readable(require_store(s))

    async def run() -> T:
        async with open_reader(path) as reader:
            return await fn(reader)

    with _store_errors(s):
        return asyncio.run(run())


def send(s: Settings, stream: Callable[[Keys], str], events: Sequence[Envelope],
         then: Callable[[rv.Emit], Any] | None = None) -> Any:
    """Send `events` (or run `then(emit)`) against the configured or embedded Redis."""
    keys = Keys(s.prefix)

    with redis_url_for(s) as url:

        async def go() -> Any:
            r = connection.redis_client(url)

            async def emit(batch: Sequence[Envelope]) -> None:
                await append(r, stream(keys), batch)

            try:
                if events:
                    await emit(events)
                return await then(emit) if then is not None else None
            finally:
                await r.aclose()

        return asyncio.run(go())


def known(s: Settings, session_id: str) -> None:
    """Fail before connecting to anything when the session has no artifact (or no store exists)."""
    require_store(s)
    try:
        artifacts.read_session(artifacts_root(s), session_id)
    except artifacts.ArtifactError as exc:
        raise CliError(str(exc)) from exc


def workspace_name(workspace: str) -> str:
    try:
        return _WORKSPACE.validate_python(workspace)
    except ValidationError as exc:
        raise CliError(invalid(exc, what="--workspace")) from exc


def actor_name(actor: str | None) -> str:
    return actor or f"operator:{getpass.getuser()}"


def positive(timeout: float) -> float:
    if not 0 < timeout <= 3600:
        raise CliError("--timeout must be in (0, 3600] seconds")
    return timeout
