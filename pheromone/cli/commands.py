"""The `pheromone` Typer app and its error handling (`pheromone.cli.main` runs it, see `pheromone.cli`)."""

from __future__ import annotations

import logging
import sqlite3
import sys
from typing import NoReturn

import typer
from pydantic import ValidationError
from rich.markup import escape

from pheromone.cli import admin, coordination, dead, demo, events, learning, serve, sessions, status
from pheromone.cli.common import CliError, err, invalid
from pheromone.errors import PheromoneError

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
app.command("asyncapi")(admin.asyncapi)
app.add_typer(dead.app, name="dead")
learning.register(app)  # patterns, entropy, budget, drift, wait, escalations, executions, trajectory, export
app.command("ratelimits")(coordination.ratelimits)
app.command("status")(status.status)
app.command("health")(status.health)
sessions.register(app)  # sessions, review, flag, playbook (learning sessions, docs/SESSIONS.md)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        app(standalone_mode=True)
    except ValidationError as exc:  # before ValueError: pydantic's ValidationError is a ValueError
        where = ".".join(map(str, exc.errors(include_url=False)[0]["loc"])) or exc.title
        fail(invalid(exc, what=where, show_input=False))  # from anywhere: the value could be a secret
    except (CliError, PheromoneError, ValueError, OSError, sqlite3.Error) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        sys.exit(130)


def fail(message: str) -> NoReturn:
    """One line on stderr, exit status 2: the message is shown as it is (no markup, no wrapping)."""
    err.print(f"[red]error:[/red] {escape(' '.join(message.split()))}", highlight=False, soft_wrap=True)
    sys.exit(2)
