"""`pheromone --help` and every command's `--help`: what the README documents must exist."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pheromone.cli import app
from tests.cli.helpers import Cli, command_paths

DOCUMENTED = ("serve", "demo", "events", "rebuild", "schema", "dead")
"""Top-level commands the README and compose.yaml rely on."""


def test_help_lists_every_command(cli: Cli) -> None:
    run = cli("--help")
    assert run.code == 0, run
    top = {path[0] for path in command_paths()}
    assert set(DOCUMENTED) <= top
    for name in top:
        assert name in run.out, f"{name} missing from --help\n{run}"
    assert "Traceback" not in run.out + run.err


@pytest.mark.parametrize("path", command_paths(), ids=" ".join)
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_dead_has_list_and_replay() -> None:
    assert {("dead", "list"), ("dead", "replay")} <= set(command_paths())
