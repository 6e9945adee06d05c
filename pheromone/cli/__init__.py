"""The `pheromone` command: run the services, run the demo, inspect and repair the store.

Every command takes its settings from flags and `PHEROMONE_*` environment variables. A failure a user can act
on is one line on stderr and exit status 2; never a traceback.
"""

from __future__ import annotations

import logging
import sys

import typer
from pydantic import ValidationError

from pheromone.cli import admin, dead, demo, events, serve
from pheromone.cli.common import CliError, err
from services.errors import PheromoneError

app = typer.Typer(
    name="pheromone",
    help="A shared, message-driven learning store for fleets of concurrent AI-agent jobs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("events")(events.events)
app.command("rebuild")(admin.rebuild)
app.command("schema")(admin.schema)
app.add_typer(dead.app, name="dead")


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app(standalone_mode=True)
    except (CliError, PheromoneError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        err.print(f"[red]error:[/red] {'.'.join(map(str, first['loc']))}: {first['msg']}", highlight=False)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
