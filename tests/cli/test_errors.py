"""Every failure a user can cause is a clean exit with a message naming the problem, never a traceback.

`pheromone.cli` promises: "A failure a user can act on is one line on stderr and exit status 2". Mistakes the
argument parser catches (a malformed date) get the parser's usage block instead, also with status 2.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pheromone.contracts.streams import Keys
from pheromone.services.runtime import service_names
from tests.cli.helpers import Cli


def test_events_without_a_store(cli: Cli) -> None:
    run = cli("events", "--db", "/nonexistent.db")
    run.assert_clean_failure("/nonexistent.db")
    assert not Path("/nonexistent.db").exists()


def test_events_default_store_missing(cli: Cli, tmp_path: Path) -> None:
    run = cli("events")  # PHEROMONE_DATA_DIR is the test's empty directory
    run.assert_clean_failure(str(tmp_path / "data" / "store.db"))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--limit", "0"), "limit"),
        (("--limit", "100000"), "limit"),
        (("--kind", "bogus"), "kind"),
        (("--workspace", "has space"), "workspace"),
        (("--since", "2024-05-02", "--until", "2024-05-01"), "time"),
    ],
    ids=["limit-0", "limit-100000", "kind-bogus", "workspace-space", "since-after-until"],
)
def test_events_invalid_query(cli: Cli, store_db: Path, args: tuple[str, ...], needle: str) -> None:
    run = cli("events", "--db", str(store_db), *args)
    run.assert_clean_failure(needle)
    assert run.out == ""


def test_events_since_not_a_date(cli: Cli, store_db: Path) -> None:
    run = cli("events", "--db", str(store_db), "--since", "notadate")
    run.assert_clean_failure("--since", one_line=False)


@pytest.mark.parametrize("kind", ["text", "directory", "foreign-sqlite"])
def test_events_on_a_file_that_is_not_a_store(cli: Cli, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "not-a-store.db"
    if kind == "text":
        path.write_text("this is not a database\n")
    elif kind == "directory":
        path.mkdir()
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE unrelated (x)")
    run = cli("events", "--db", str(path))
    run.assert_clean_failure(str(path))


def test_rebuild_without_a_store(cli: Cli, tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    run = cli("rebuild", "--db", str(missing))
    run.assert_clean_failure(str(missing))
    assert not missing.exists(), "rebuild must not create an empty store"


def test_rebuild_relative_missing_path(cli: Cli, tmp_path: Path) -> None:
    run = cli("rebuild", "--db", "missing")
    run.assert_clean_failure("missing")
    assert not (tmp_path / "missing").exists()


def test_serve_unknown_service_names_the_known_ones(cli: Cli) -> None:
    run = cli("serve", "--only", "bogus", timeout=20)
    run.assert_clean_failure("bogus", *service_names())


def test_dead_replay_needs_ids_or_all(cli: Cli) -> None:
    run = cli("dead", "replay", timeout=20)
    run.assert_clean_failure("--all")


def test_bad_prefix_setting_is_named(cli: Cli, store_db: Path) -> None:
    run = cli("events", "--db", str(store_db), env={"PHEROMONE_PREFIX": "bad prefix!"})
    run.assert_clean_failure("prefix")


def test_bad_redis_url_setting_is_named(cli: Cli) -> None:
    run = cli("dead", "list", env={"PHEROMONE_REDIS_URL": "http://:hunter2@localhost:6379"}, timeout=20)
    run.assert_clean_failure("redis_url")
    assert "hunter2" not in run.err, "a setting's value is never shown: it may hold a password"


def test_a_store_url_that_is_not_postgresql_is_named(cli: Cli) -> None:
    run = cli("events", env={"PHEROMONE_STORE_URL": "mysql://root:hunter2@localhost/db"})
    run.assert_clean_failure("store_url")
    assert "hunter2" not in run.err


def test_an_unreachable_postgresql_store_is_one_line(cli: Cli, unused_tcp_port: int) -> None:
    url = f"postgresql://postgres:hunter2@127.0.0.1:{unused_tcp_port}/pheromone?connect_timeout=2"
    for args in (("events",), ("patterns",), ("status", "--json", "--timeout", "2")):
        run = cli(*args, env={"PHEROMONE_STORE_URL": url}, timeout=30)
        if args[0] == "status":  # status reports the store among other things, and says it is unreachable
            store = json.loads(run.out)["store"]
            assert store["exists"] is False and "hunter2" not in run.out, run
            assert "***" in store["url"] and store["error"], run
            continue
        run.assert_clean_failure("cannot read the store", "postgresql://postgres:***@127.0.0.1")
        assert "hunter2" not in run.err


def test_bad_numeric_setting_is_named(cli: Cli, store_db: Path) -> None:
    run = cli("events", "--db", str(store_db), env={"PHEROMONE_BATCH_SIZE": "0"})
    run.assert_clean_failure("batch_size")


def test_markup_in_a_message_is_printed_verbatim(cli: Cli, tmp_path: Path) -> None:
    # The error printer must not treat text from the user (a path, a name) as console markup.
    odd = tmp_path / "[/x]" / "store.db"
    run = cli("events", "--db", str(odd))
    run.assert_clean_failure(str(odd))



def test_serve_that_fails_to_start_closes_what_it_opened_and_exits(cli: Cli, tmp_path: Path, redis_url: str) -> None:
    # The ingest stream's key holds a string, so creating the store's group fails after every service has
    # opened its store connections and threads: they must be closed again, or the process never exits.
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        r.set(Keys("startfail").ingest, "not a stream")
        run = cli("serve", "--redis-url", redis_url, "--db", str(tmp_path / "store.db"), "--prefix", "startfail",
                  timeout=60)
    finally:
        r.delete(Keys("startfail").ingest)
        r.close()
    run.assert_clean_failure("WRONGTYPE")


# -- pydantic and Redis refusals as sentences --------------------------------------------------------------

RAW = ("Value error,", "Assertion failed,", "ResponseError", "validation error for")
"""What pydantic and redis-py put in their messages: never in a user's one line."""


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (("events", "--since", "2024-05-02", "--until", "2024-05-01"),
         ("invalid --since/--until: time range start is after its end",)),
        (("events", "--kind", "bogus"), ("invalid --kind 'bogus': input should be 'execution'",)),
        (("trajectory", "--from", "5", "--to", "2"),
         ("invalid --from/--to: the first cycle (5) is after the last (2)",)),
        (("drift", "--pattern", ""), ("invalid --pattern ''",)),
        (("wait", ""), ("invalid error code ''",)),
        (("patterns", "show", "xy"), ("invalid pattern id 'xy'",)),
        (("escalations", "similar", "--confidence", "2", "--pass-rate", "0.5"), ("invalid --confidence 2.0",)),
        (("executions", "stats", "--job", ""), ("invalid --job ''",)),
    ],
)
def test_invalid_arguments_are_named_by_their_option(
    cli: Cli, store_db: Path, args: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    run = cli(*args, "--db", str(store_db))
    run.assert_clean_failure(*needles)
    assert not any(raw in run.err for raw in RAW), run


def test_flag_names_a_bad_workspace_as_the_option(cli: Cli, store_db: Path) -> None:
    run = cli("flag", "some-id", "--workspace", "has space", "--db", str(store_db), timeout=20)
    run.assert_clean_failure("invalid --workspace 'has space'")


@pytest.mark.parametrize("dead_id", ["nosuch", "99999999999999999999-0"])
def test_dead_replay_of_a_malformed_id_is_refused_before_redis(cli: Cli, dead_id: str) -> None:
    run = cli("dead", "replay", dead_id, timeout=20)
    run.assert_clean_failure(f"{dead_id!r} is not a dead-letter id", "pheromone dead list")
    assert not any(raw in run.err for raw in RAW), run


def test_dead_replay_of_an_unknown_id(cli: Cli, redis_url: str) -> None:
    run = cli("dead", "replay", "1-0", "--redis-url", redis_url, "--prefix", "nodead", timeout=20)
    run.assert_clean_failure("no dead letter '1-0'")
