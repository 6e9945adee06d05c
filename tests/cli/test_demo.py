"""`pheromone demo`, the main job: a simulated fleet, then every emitted event checked in the ledger."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from pheromone.plumbing.embedded import EmbeddedServer
from tests.cli.helpers import Cli
from tests.support import store_rows


@pytest.fixture
def demo_dir(tmp_path: Path) -> Iterator[Path]:
    """The demo's data directory; a server the demo started and left behind (it was killed) is stopped."""
    path = tmp_path / "demo"
    yield path
    state = path / "server.json"
    if state.exists():
        pid = json.loads(state.read_text())["pid"]
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_demo_json_on_the_embedded_server(cli: Cli, demo_dir: Path) -> None:
    args = ("--seconds", "1", "--workspaces", "2", "--jobs", "2", "--data-dir", str(demo_dir))
    run = cli("demo", "--json", *args, timeout=90)
    assert run.code == 0, run
    assert not (demo_dir / "server.json").exists(), "the demo leaves no server running"
    report = json.loads(run.out)  # stdout is exactly one JSON object: progress goes to stderr
    assert isinstance(report, dict)
    assert report["ok"] is True
    assert report["emitted"] == report["stored"] > 0
    assert report["missing"] == 0 and report["duplicates"] == 0
    assert report["jobs"] == 4 and report["workspaces"] == 2
    assert sum(report["counts"].values()) == report["stored"]
    assert "Traceback" not in run.err


def test_demo_json_with_the_store_on_postgresql_stores_every_event_exactly_once(
    cli: Cli, demo_dir: Path, pg_url: str
) -> None:
    # Run twice on one database: the second run is judged by its own events, on a ledger that holds the first's.
    args = ("--seconds", "1", "--workspaces", "2", "--jobs", "2", "--data-dir", str(demo_dir))
    reports = []
    for _ in range(2):
        run = cli("demo", "--json", *args, env={"PHEROMONE_STORE_URL": pg_url}, timeout=120)
        assert run.code == 0, run
        assert "Traceback" not in run.err
        reports.append(json.loads(run.out))
    for report in reports:
        assert report["ok"] is True, report
        assert report["emitted"] == report["stored"] > 0
        assert report["missing"] == 0 and report["duplicates"] == 0
    assert not (demo_dir / "store.db").exists(), "the store is the PostgreSQL database, not a file"
    # The ledger holds both runs' events, each once: the second run's reading of it counted only its own.
    rows = store_rows(pg_url, "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM ledger")
    assert rows[0][0] == rows[0][1] >= reports[0]["stored"] + reports[1]["stored"]


def test_demo_on_a_shared_server_from_the_environment_uses_its_own_prefix(
    cli: Cli, private_server: EmbeddedServer
) -> None:
    # With PHEROMONE_REDIS_URL set (as in every compose container), the demo runs its own store and query
    # services against that server. Under the installation's prefix its store group would take (and ack)
    # entries meant for the real store service, so it must use a fresh prefix as it does with --redis-url.
    client = redis.Redis.from_url(private_server.url)
    try:
        run = cli("demo", "--json", "--seconds", "0.5", "--workspaces", "1", "--jobs", "1",
                  env={"PHEROMONE_REDIS_URL": private_server.url}, timeout=90)
        assert run.code == 0, run
        assert json.loads(run.out)["ok"] is True
        touched = sorted(k.decode() for k in client.scan_iter(match="pheromone:*"))
        assert touched == [], f"demo wrote under the installation's prefix: {touched[:5]}"
    finally:
        client.close()


def test_demo_twice_on_one_data_dir_judges_each_run_by_its_own_events(cli: Cli, demo_dir: Path) -> None:
    args = ("--seconds", "0.5", "--workspaces", "1", "--jobs", "2", "--data-dir", str(demo_dir))
    first = cli("demo", *args, timeout=90)
    assert first.code == 0, first
    assert first.err == "", "the demo prints nothing on stderr (no warning, no notice)\n" + str(first)
    lines = first.out.splitlines()
    verdict = next(line for line in lines if " emitted " in line)  # one line: not wrapped at 80 columns
    assert verdict.endswith("every event stored exactly once"), first
    emitted_first = int(re.search(r"emitted (\d+) events", verdict).group(1))  # type: ignore[union-attr]
    # It ends by saying where the data went and what to run against it.
    assert f"The store and the sessions' artifacts are in {demo_dir}. Try:" in lines, first
    assert f"  pheromone patterns --data-dir {demo_dir}" in lines, first

    second = cli("demo", "--json", *args, timeout=90)
    assert second.code == 0, second
    report = json.loads(second.out)
    assert report["ok"] is True
    assert report["missing"] == 0 and report["duplicates"] == 0
    assert report["emitted"] == report["stored"] == sum(report["counts"].values()) > 0
    assert report["ledger_total"] == emitted_first + report["emitted"]  # both runs' events are there
    assert report["data_dir"] == str(demo_dir)


def test_demo_in_a_temporary_directory_says_how_to_keep_its_data(cli: Cli) -> None:
    run = cli("demo", "--seconds", "0.5", "--workspaces", "1", "--jobs", "1", timeout=90)
    assert run.code == 0, run
    assert run.err == "", run
    assert "pheromone demo --data-dir DIR" in run.out.splitlines()[-1], run
