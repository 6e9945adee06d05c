"""What read commands print when stdout is not a terminal (the `cli` fixture captures it, as a pipe or a log
file would): tables whole, never wrapped at 80 columns nor cut; every read command a table; `playbook`
printing the playbook, or saying there is none; and reads with too little data saying so.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from rich.cells import cell_len

from pheromone.contracts import Envelope, ErrorRecoveryRecord, PatternApplied, PatternObserved, pattern_id
from pheromone.contracts.sessions import PlaybookWritten
from pheromone.services.settings import LearningSettings
from pheromone.services.store.db import Store
from tests.cli.helpers import Cli

LONG_NAME = "re-read the whole schema and every example before writing the json output, then validate it " * 2
LONG_NAME = LONG_NAME.strip()
BOX_TOP = "┏┌"


def fill(path: Path, envelopes: list[Envelope]) -> Path:
    async def run() -> None:
        async with Store(path) as store:
            result = await store.apply([(e, e.model_dump_json()) for e in envelopes])
        assert len(result.inserted) == len(envelopes), result

    path.parent.mkdir(parents=True, exist_ok=True)
    asyncio.run(run())
    return path


def tables(out: str) -> list[list[str]]:
    """The box-drawn tables in `out`, each as its lines from top rule to bottom rule."""
    found: list[list[str]] = []
    current: list[str] | None = None
    for line in out.splitlines():
        if line[:1] in BOX_TOP:
            current = [line]
        elif current is not None:
            current.append(line)
            if line[:1] in "└":
                found.append(current)
                current = None
    return found


def assert_whole_tables(out: str, count: int) -> list[list[str]]:
    """`count` tables, each a rectangle: every line of a table as wide as its top rule, none over 80 columns
    only because the output was cut there."""
    found = tables(out)
    assert len(found) == count, out
    for table in found:
        widths = {cell_len(line.rstrip()) for line in table}
        assert len(widths) == 1, "ragged table:\n" + "\n".join(table)
    return found


def header(table: list[str]) -> list[str]:
    """The column headers of a table: its second line split on the vertical rules."""
    return [cell.strip() for cell in re.split(r"[┃│]", table[1])[1:-1]]


@pytest.fixture
def learned(tmp_path: Path) -> Path:
    """A store with a long-named pattern applied in two hours of the day, and recoveries in one hour."""
    t0 = datetime(2024, 5, 6, 3, 0, tzinfo=UTC)
    ptype = "validation_failure"
    events = [Envelope(workspace="ws-a", job="ws-a.job-1", occurred_at=t0,
                       payload=PatternObserved(pattern_type=ptype, pattern_name=LONG_NAME))]
    for i in range(12):
        events.append(Envelope(workspace="ws-a", job="ws-a.job-1", occurred_at=t0 + timedelta(minutes=i),
                               payload=PatternApplied(pattern_id=pattern_id(ptype, LONG_NAME), success=i % 4 != 0)))
    for i in range(40):  # a busy few minutes: many recoveries, all in one hour of the day
        events.append(Envelope(workspace="ws-a", job="ws-a.job-1", occurred_at=t0 + timedelta(seconds=i),
                               payload=ErrorRecoveryRecord(error_code="429", suggested_wait=5.0, actual_wait=6.0,
                                                           recovery_success=True, recorded_at=t0, model="m",
                                                           time_of_day=3)))
    return fill(tmp_path / "learned" / "store.db", events)


# -- not a terminal: nothing wrapped or cut -----------------------------------------------------------------


def test_executions_stats_headers_are_whole(cli: Cli, store_db: Path) -> None:
    run = cli("executions", "stats", "--db", str(store_db))
    assert run.code == 0, run
    stats, window = assert_whole_tables(run.out, 2)
    assert "not enough data: 0 hour(s) of the day with 3+ recoveries, needs 2" in window[1], window
    assert header(stats) == ["executions", "first-try rate", "confidence", "computed conf.", "pass rate",
                             "duration (s)", "retries", "workspaces"]
    assert cell_len(stats[0]) > 80  # wider than a terminal's default: it would have been cut there
    assert "Optimal execution window (UTC hours)" in [line.rstrip() for line in run.out.splitlines()]


def test_patterns_is_a_table_with_whole_ids_and_names(cli: Cli, learned: Path) -> None:
    run = cli("patterns", "--db", str(learned))
    assert run.code == 0, run
    (table,) = assert_whole_tables(run.out, 1)
    assert header(table) == ["id", "type: name", "status", "prio", "eff", "trust", "ok/fail", "tags"]
    row = table[3]
    assert pattern_id("validation_failure", LONG_NAME) in row  # the whole id, as --json prints it
    assert f"validation_failure: {LONG_NAME}" in row  # the whole name, on one line


def test_patterns_still_fit_a_terminal_width_when_asked(cli: Cli, learned: Path) -> None:
    run = cli("patterns", "--db", str(learned), env={"COLUMNS": "80"})
    assert run.code == 0, run
    assert max(cell_len(line) for line in run.out.splitlines()) <= 80, run


def test_sessions_list_and_review_list_are_tables(cli: Cli, store_db: Path) -> None:
    sessions = cli("sessions", "list", "--db", str(store_db))
    assert sessions.code == 0, sessions
    (table,) = assert_whole_tables(sessions.out, 1)
    assert header(table) == ["session", "workspace", "status", "trigger", "applied", "staged", "rejected",
                             "val before/after"]
    review = cli("review", "list", "--db", str(store_db))
    assert review.code == 0, review
    (table,) = assert_whole_tables(review.out, 1)
    assert header(table) == ["session", "edit", "workspace", "op", "target", "model", "tier", "rationale"]


def test_playbook_prints_the_playbooks_or_says_there_is_none(cli: Cli, tmp_path: Path, store_db: Path) -> None:
    none = cli("playbook", "--db", str(store_db))
    assert none.code == 0 and none.err == "", none
    assert none.out.startswith("no playbook yet in ") and "--set FILE" in none.out, none
    assert len(none.out.splitlines()) == 1, none  # one line: not wrapped

    text = "# ws-a\n\nAlways run the tests before committing.\n"
    written = fill(tmp_path / "book" / "store.db", [Envelope(
        workspace="ws-a", job="cli", payload=PlaybookWritten(workspace="ws-a", text=text, actor="tests"))])
    books = cli("playbook", "--db", str(written))
    assert books.code == 0, books
    assert books.out.startswith(f"== ws-a ==\n{text}"), books
    one = cli("playbook", "--db", str(written), "--workspace", "ws-a")
    assert one.out.startswith(text), one


# -- too little data: say so -------------------------------------------------------------------------------


def test_entropy_of_an_empty_store_is_not_a_low_diversity_alert(cli: Cli, tmp_path: Path) -> None:
    empty = fill(tmp_path / "empty" / "store.db", [])
    run = cli("entropy", "--db", str(empty))
    assert run.code == 0, run
    minimum = LearningSettings().entropy_min_applications
    assert f"not enough data: 0 pattern application(s); diversity is judged from {minimum}" in run.out, run
    assert "low diversity" not in run.out and "healthy" not in run.out, run


def test_an_optimal_window_needs_more_than_one_hour(cli: Cli, learned: Path) -> None:
    run = cli("executions", "stats", "--db", str(learned))
    assert run.code == 0, run
    assert "not enough data: 1 hour(s) of the day with 3+ recoveries, needs 2" in run.out, run
    assert "confidence" not in run.out.split("Optimal execution window", 1)[1], run


def test_no_time_of_day_is_recommended_without_a_lift(cli: Cli, learned: Path) -> None:
    # Every application in one bucket: that bucket's success rate is the pattern's, a lift of exactly 0.
    run = cli("patterns", "show", pattern_id("validation_failure", LONG_NAME), "--db", str(learned))
    assert run.code == 0, run
    assert "Best applied" not in run.out, run
    assert "+0.000" in run.out  # the lift table still shows the factor, with its lift
