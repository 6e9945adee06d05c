"""`pheromone events` and `pheromone rebuild` on a real store file written by `Store.apply`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pheromone.contracts import Envelope
from tests.cli.helpers import SAMPLE_EVENTS, T0, Cli


def ids_of(run_out: str) -> list[str]:
    return [e["event_id"] for e in json.loads(run_out)]


def test_events_json_returns_every_event_oldest_first(cli: Cli, store_db: Path) -> None:
    run = cli("events", "--db", str(store_db), "--json")
    assert run.code == 0, run
    assert json.loads(run.out) == [e.model_dump(mode="json") for e in SAMPLE_EVENTS]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--workspace", "ws-a"), [e for e in SAMPLE_EVENTS if e.workspace == "ws-a"]),
        (("-w", "ws-b"), [e for e in SAMPLE_EVENTS if e.workspace == "ws-b"]),
        (("--kind", "execution"), [e for e in SAMPLE_EVENTS if e.kind == "execution"]),
        (("--kind", "execution", "--kind", "pattern_observed"), list(SAMPLE_EVENTS)),
        (("--kind", "execution", "--workspace", "ws-a"),
         [e for e in SAMPLE_EVENTS if e.kind == "execution" and e.workspace == "ws-a"]),
        (("--job", "ws-a.job-2"), [e for e in SAMPLE_EVENTS if e.job == "ws-a.job-2"]),
        (("--limit", "2"), list(SAMPLE_EVENTS[-2:])),  # the newest two, still oldest first
        (("--since", T0.replace(minute=3).isoformat()), list(SAMPLE_EVENTS[2:])),
        (("--since", "2024-05-06T07:03:00"), list(SAMPLE_EVENTS[2:])),  # naive: read as UTC
        (("--until", "2024-05-06T09:02:00+02:00"), list(SAMPLE_EVENTS[:2])),  # 07:02 UTC, inclusive
        (("--workspace", "ws-none"), []),
    ],
    ids=["workspace", "w-short", "kind", "two-kinds", "kind-and-workspace", "job", "limit", "since-aware",
         "since-naive", "until-offset", "no-match"],
)
def test_events_filters(cli: Cli, store_db: Path, args: tuple[str, ...], expected: list[Envelope]) -> None:
    run = cli("events", "--db", str(store_db), "--json", *args)
    assert run.code == 0, run
    assert ids_of(run.out) == [e.event_id for e in expected]


def test_events_finds_the_store_through_data_dir(cli: Cli, store_db: Path) -> None:
    by_flag = cli("events", "--data-dir", str(store_db.parent), "--json")
    by_env = cli("events", "--json", env={"PHEROMONE_DATA_DIR": str(store_db.parent)})
    by_db_env = cli("events", "--json", env={"PHEROMONE_DB_PATH": str(store_db)})
    for run in (by_flag, by_env, by_db_env):
        assert run.code == 0, run
        assert ids_of(run.out) == [e.event_id for e in SAMPLE_EVENTS]


def test_events_table(cli: Cli, store_db: Path) -> None:
    run = cli("events", "--db", str(store_db))
    assert run.code == 0, run
    assert "5 event(s)" in run.out
    assert "execution" in run.out and "ws-b" in run.out


def test_rebuild_reports_identical_projections(cli: Cli, store_db: Path) -> None:
    before = cli("events", "--db", str(store_db), "--json")
    run = cli("rebuild", "--db", str(store_db), "--json")
    assert run.code == 0, run
    report = json.loads(run.out)
    assert report["identical"] is True
    assert report["replayed"] == len(SAMPLE_EVENTS)
    assert report["checksum_before"] == report["checksum_after"]
    after = cli("events", "--db", str(store_db), "--json")
    assert after.out == before.out  # the ledger is untouched by a rebuild


def test_rebuild_table(cli: Cli, store_db: Path) -> None:
    run = cli("rebuild", "--db", str(store_db))
    assert run.code == 0, run
    assert f"replayed {len(SAMPLE_EVENTS)} events" in run.out
    assert "identical" in run.out


@pytest.mark.parametrize("dirname", ["with space", "hash#mark", "question?mark", "percent%41"])
def test_events_store_path_with_uri_characters(cli: Cli, store_db: Path, dirname: str) -> None:
    # The store is opened read-only through an SQLite URI; a path is data, not URI syntax.
    moved = store_db.parent.parent / dirname / "store.db"
    moved.parent.mkdir()
    for suffix in ("", "-wal", "-shm"):
        source = store_db.with_name(store_db.name + suffix)
        if source.exists():
            source.rename(moved.with_name(moved.name + suffix))
    run = cli("events", "--db", str(moved), "--json")
    assert run.code == 0, run
    assert ids_of(run.out) == [e.event_id for e in SAMPLE_EVENTS]


def test_events_after_pages_through_the_whole_ledger(cli: Cli, store_db: Path) -> None:
    seen: list[str] = []
    cursor, pages = 0, 0
    while True:
        run = cli("events", "--db", str(store_db), "--json", "--after", str(cursor), "-n", "2")
        assert run.code == 0, run
        page = json.loads(run.out)
        seen += [e["event_id"] for e in page["events"]]
        pages += 1
        assert page["next_after"] >= cursor
        cursor = page["next_after"]
        if not page["more"]:
            break
    assert seen == [e.event_id for e in SAMPLE_EVENTS]  # oldest first, none skipped or repeated
    assert pages == (len(SAMPLE_EVENTS) + 1) // 2
    last = json.loads(cli("events", "--db", str(store_db), "--json", "--after", str(cursor)).out)
    assert last == {"events": [], "next_after": cursor, "more": False}  # poll from here for what comes next


def test_events_after_keeps_the_filters_and_shows_the_next_cursor(cli: Cli, store_db: Path) -> None:
    run = cli("events", "--db", str(store_db), "--json", "--after", "0", "--workspace", "ws-a", "-n", "1")
    page = json.loads(run.out)
    first_a = next(e for e in SAMPLE_EVENTS if e.workspace == "ws-a")
    assert [e["event_id"] for e in page["events"]] == [first_a.event_id] and page["more"] is True
    table = cli("events", "--db", str(store_db), "--after", str(page["next_after"]), "-n", "100")
    assert table.code == 0 and "next page: --after" in table.out and "(none yet)" in table.out, table
    bad = cli("events", "--db", str(store_db), "--after", "-1")
    bad.assert_clean_failure("--after", one_line=False)


READ_COMMANDS = [
    ("events", "--json"),
    ("events", "--json", "--after", "0", "--limit", "3"),
    ("patterns", "--json"),
    ("entropy", "--json"),
    ("budget", "--json"),
    ("drift", "--json", "--all"),
    ("wait", "E429", "--json"),
    ("trajectory", "--json"),
    ("executions", "stats", "--json"),
    ("escalations", "similar", "--confidence", "0.5", "--pass-rate", "0.5", "--json"),
    ("export", "--format", "json"),
    ("sessions", "list", "--json"),
    ("review", "list", "--json"),
    ("playbook", "--json"),
]


@pytest.mark.parametrize("args", READ_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_read_commands_answer_alike_on_sqlite_and_postgresql(
    cli: Cli, store_db: Path, pg_store: str, args: tuple[str, ...]
) -> None:
    # The same events in each store (Store.apply and PgStore.apply): every read command's output is the same.
    lite = cli(*args, "--db", str(store_db))
    pg = cli(*args, env={"PHEROMONE_STORE_URL": pg_store})
    assert lite.code == 0, lite
    assert pg.code == 0, pg
    assert timeless(json.loads(pg.out)) == timeless(json.loads(lite.out))
    assert pg.err == lite.err == ""


CLOCK_FIELDS = {"calculated_at", "exported_at"}
"""Fields that hold the time of the command itself, not anything read from the store."""


def timeless(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: timeless(v) for k, v in value.items() if k not in CLOCK_FIELDS}
    if isinstance(value, list):
        return [timeless(v) for v in value]
    return value


def test_status_reports_a_postgresql_store(cli: Cli, pg_store: str) -> None:
    # No Redis here: status still reports what it can reach, the store among it, and exits 1 for Redis.
    run = cli("status", "--json", "--timeout", "2", env={"PHEROMONE_STORE_URL": pg_store}, timeout=30)
    store = json.loads(run.out)["store"]
    assert store["exists"] is True and store["url"] == pg_store
    assert store["ledger"] == len(SAMPLE_EVENTS)
    assert store["last_event"]["seq"] == len(SAMPLE_EVENTS)
    assert "wal_bytes" not in store, "a PostgreSQL store has no file to size"
