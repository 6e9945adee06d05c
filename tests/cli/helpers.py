"""What the CLI tests share: the real console script, a run's result, sample events, the command tree."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import typer.main

from pheromone.cli import app
from pheromone.contracts import Envelope, ExecutionRecord, PatternObserved

PHEROMONE = Path(sys.executable).parent / "pheromone"
"""The console script installed next to this interpreter (`pyproject.toml`'s `[project.scripts]`)."""

T0 = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Run:
    """One finished `pheromone …` process."""

    args: tuple[str, ...]
    code: int
    out: str
    err: str

    def __str__(self) -> str:  # what pytest shows when an assertion naming a Run fails
        command = " ".join(("pheromone", *self.args))
        return f"{command} -> exit {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"

    def assert_clean_failure(self, *needles: str, code: int = 2, one_line: bool = True) -> None:
        """Failed the way the CLI promises (`pheromone.cli`'s docstring): exit `code`, a message on stderr
        naming every needle, and no traceback anywhere.

        `one_line`: the message is exactly one line starting with `error: ` (the `main()` wrapper's format).
        Usage errors found by the argument parser print their own block: pass `one_line=False`.
        """
        assert "Traceback" not in self.out + self.err, str(self)
        assert self.code == code, str(self)
        assert self.err.strip(), str(self)
        if one_line:
            lines = self.err.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("error: "), f"not a one-line error\n{self}"
        for needle in needles:
            assert needle in self.err, f"{needle!r} not in stderr\n{self}"


Cli = Callable[..., Run]
"""The `cli` fixture: `cli(*args, env={...}, timeout=60.0) -> Run`."""


def command_paths() -> list[tuple[str, ...]]:
    """Every command path of the app, groups included: ('serve',), ('dead',), ('dead', 'list'), …"""
    paths: list[tuple[str, ...]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            paths.append((*path, name))
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return paths


def execution(workspace: str, job: str, minute: int) -> Envelope:
    return Envelope(
        workspace=workspace,
        job=job,
        occurred_at=T0 + timedelta(minutes=minute),
        payload=ExecutionRecord(
            workspace_hash=workspace, job_hash=job, sheet_num=minute, started_at=T0,
            completed_at=T0 + timedelta(seconds=30), duration_seconds=30.0, status="completed",
            retry_count=0, success_without_retry=True, validation_pass_rate=1.0, confidence_score=0.9,
            model="claude-sonnet",
        ),
    )


def observation(workspace: str, job: str, minute: int) -> Envelope:
    return Envelope(
        workspace=workspace,
        job=job,
        occurred_at=T0 + timedelta(minutes=minute),
        payload=PatternObserved(pattern_type="retry_pattern", pattern_name="back off on 429",
                                context_tags=["rate_limit"]),
    )


SAMPLE_EVENTS: Sequence[Envelope] = (
    execution("ws-a", "ws-a.job-1", 1),
    observation("ws-a", "ws-a.job-1", 2),
    execution("ws-b", "ws-b.job-1", 3),
    execution("ws-a", "ws-a.job-2", 4),
    observation("ws-b", "ws-b.job-1", 5),
)
"""Five events in two workspaces, oldest first, one minute apart from T0 + 1 min."""
