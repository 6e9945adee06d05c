"""The learning commands through the real console script: tables, --json, one-line errors, transitions."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pheromone.cli import app
from pheromone.services.settings import Settings
from pheromone.services.store.db import Store
from tests.learning.conftest import StartRuntime
from tests.learning.helpers import applied, event, observed, pid, rows
from tests.learning.test_store import full_workload

PHEROMONE = Path(sys.executable).parent / "pheromone"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def one_line_error(self) -> str:
        lines = self.err.strip().splitlines()
        assert self.code == 2, self
        assert len(lines) == 1 and lines[0].startswith("error:"), self
        assert "Traceback" not in self.out + self.err
        return lines[0]


async def pheromone(*args: str, data_dir: Path) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHEROMONE_")}
    env.update(PHEROMONE_DATA_DIR=str(data_dir), COLUMNS="200")
    proc = await asyncio.create_subprocess_exec(
        str(PHEROMONE),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return Run(proc.returncode or 0, out.decode(), err.decode())


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose store.db holds the full learning workload (shared: the tests only read it)."""
    root = tmp_path_factory.mktemp("learning-cli") / "data"

    async def build() -> None:
        async with Store(root / "store.db") as store:
            events = full_workload()
            for start in range(0, len(events), 100):
                await store.apply(events[start : start + 100])

    asyncio.run(build())
    return root


READS = [
    ("patterns",),
    ("patterns", "--tag", "t1", "--tag", "shared", "--all-tags"),
    ("patterns", "--status", "retired"),
    ("patterns", "--type", "retry_pattern", "--min-trust", "0.1", "--min-priority", "0.01"),
    ("entropy",),
    ("entropy", "--history"),
    ("budget",),
    ("drift",),
    ("drift", "--epistemic", "--all"),
    ("wait", "429"),
    ("wait", "429", "--model", "m1"),
    ("escalations", "similar", "-c", "0.4", "-p", "0.5"),
    ("executions", "stats"),
    ("executions", "stats", "--by", "model"),
    ("trajectory",),
    ("trajectory", "--window", "1"),
]


@pytest.mark.parametrize("args", READS, ids=" ".join)
def test_read_commands_print_tables_and_json(data_dir: Path, args: tuple[str, ...]) -> None:
    # In process (the console script's startup is most of a run): success paths need no error wrapper.
    runner = CliRunner()
    env = {"PHEROMONE_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    table = runner.invoke(app, list(args), env=env)
    assert table.exit_code == 0, table.output
    assert table.output.strip()
    as_json = runner.invoke(app, [*args, "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    json.loads(as_json.output)


async def test_patterns_lists_by_priority_with_filters(data_dir: Path) -> None:
    listed = json.loads((await pheromone("patterns", "--json", "--limit", "100", data_dir=data_dir)).out)
    priorities = [p["priority_score"] for p in listed]
    assert priorities == sorted(priorities, reverse=True)
    assert pid("pattern 0") not in {p["id"] for p in listed}  # retired: only when asked for
    retired = json.loads(
        (await pheromone("patterns", "--status", "retired", "--json", data_dir=data_dir)).out
    )
    assert [p["id"] for p in retired] == [pid("pattern 0")]
    tagged = json.loads((await pheromone("patterns", "--tag", "t2", "--json", data_dir=data_dir)).out)
    assert {p["pattern_name"] for p in tagged} == {"pattern 2", "pattern 5"}


async def test_show_by_prefix_has_the_why_and_the_transitions(data_dir: Path) -> None:
    run = await pheromone("patterns", "show", pid("pattern 5")[:10], "--json", data_dir=data_dir)
    shown = json.loads(run.out)
    assert shown["pattern"]["id"] == pid("pattern 5")
    assert {t["actor"] for t in shown["transitions"]} >= {"rule", "entropy_response"}
    assert shown["why"]["has_factors"] and shown["why"]["factor_lift"]
    text = await pheromone("patterns", "show", pid("pattern 5"), data_dir=data_dir)
    assert "Why it works" in text.out and "entropy_response" in text.out


async def test_export_markdown_and_json(data_dir: Path, tmp_path: Path) -> None:
    md = await pheromone("export", "--format", "markdown", data_dir=data_dir)
    assert (
        md.code == 0
        and md.out.startswith("# pheromone export")
        and "| pattern 1 |" in md.out.replace("retry_pattern | ", "")
    )
    out = tmp_path / "export.json"
    assert (await pheromone("export", "--format", "json", "-o", str(out), data_dir=data_dir)).code == 0
    exported = json.loads(out.read_text())
    assert len(exported["patterns"]) == 6 and exported["trajectory"]["entries"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("patterns", "--min-trust", "2"), "min-trust"),
        (("patterns", "show", "p_nothing"), "no pattern 'p_nothing'"),
        (("patterns", "show", "p_"), "invalid pattern id 'p_'"),
        (("export", "--format", "xml"), "unknown format 'xml'"),
        (("executions", "stats", "--by", "planet"), "invalid --by 'planet'"),
        (("escalations", "similar", "-c", "1.5", "-p", "0.5"), "invalid --confidence 1.5"),
        (("drift", "--pattern", "p_nothing"), "no pattern"),
        (("trajectory", "--window", "0"), "invalid --window 0"),
        (("wait", "429", "--static", "-1"), "invalid --static -1.0"),
        (("patterns", "retire", "p_nothing", "--reason", "x"), "no pattern"),
        (("patterns", "retire", pid("pattern 0"), "--reason", "x"), "illegal transition retired -> retired"),
        (
            ("patterns", "validate", pid("pattern 0"), "--reason", "x"),
            "illegal transition retired -> validated",
        ),
        (("patterns", "quarantine", pid("pattern 1"), "--reason", " "), "--reason must not be empty"),
    ],
)
async def test_bad_arguments_and_unknown_ids_are_one_line_errors(
    data_dir: Path, args: tuple[str, ...], message: str
) -> None:
    assert message in (await pheromone(*args, data_dir=data_dir)).one_line_error()


async def test_no_store_is_a_one_line_error(tmp_path: Path) -> None:
    for args in (("patterns",), ("entropy",), ("patterns", "validate", "p_x", "--reason", "r")):
        assert "no store" in (await pheromone(*args, data_dir=tmp_path / "empty")).one_line_error()


@pytest.mark.parametrize("kind", ["text", "directory"])
async def test_a_store_that_is_not_a_database_is_a_one_line_error(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "d"
    if kind == "directory":
        (root / "store.db").mkdir(parents=True)
    else:
        root.mkdir()
        (root / "store.db").write_text("not sqlite at all " * 100)
    for args in (("patterns",), ("entropy",), ("patterns", "retire", "p_x", "--reason", "r")):
        assert "cannot read the store" in (await pheromone(*args, data_dir=root)).one_line_error()


@pytest.mark.parametrize("name", ["with space", "q?mark", "hash#", "per%cent"])
async def test_store_paths_with_uri_characters(data_dir: Path, tmp_path: Path, name: str) -> None:
    odd = tmp_path / name
    odd.mkdir()
    (odd / "store.db").write_bytes((data_dir / "store.db").read_bytes())
    run = await pheromone("entropy", "--json", "--db", str(odd / "store.db"), data_dir=tmp_path)
    assert run.code == 0, run
    assert json.loads(run.out)["current"]["total_applications"] > 0


async def test_lifecycle_commands_go_through_the_store_service(
    runtime: StartRuntime, learning_settings: Settings
) -> None:
    await runtime(("store",))
    s = learning_settings
    db = s.store_path
    async with Store(db) as store:  # a pattern the store service will see as pending
        await store.apply([event(observed("reviewed"), 0), event(applied("reviewed", True), 1)])
    target = pid("reviewed")
    common = ("--redis-url", s.redis_url.get_secret_value(), "--prefix", s.prefix)  # type: ignore[union-attr]

    run = await pheromone(
        "patterns",
        "quarantine",
        target[:12],
        "--reason",
        "suspicious output",
        "--json",
        *common,
        data_dir=s.data_dir,
    )
    assert run.code == 0, run
    result = json.loads(run.out)
    assert result["applied"] and (result["from_status"], result["to_status"]) == ("pending", "quarantined")
    run = await pheromone(
        "patterns",
        "validate",
        target,
        "--reason",
        "reviewed: fine",
        "--actor",
        "alice",
        *common,
        data_dir=s.data_dir,
    )
    assert run.code == 0 and "quarantined -> validated" in run.out, run
    run = await pheromone(
        "patterns", "retire", target, "--reason", "superseded", *common, data_dir=s.data_dir
    )
    assert run.code == 0, run
    operator = f"operator:{getpass.getuser()}"
    assert rows(db, "SELECT from_status, to_status, actor, reason FROM pattern_transitions ORDER BY seq") == [
        ("pending", "quarantined", operator, "suspicious output"),
        ("quarantined", "validated", "alice", "reviewed: fine"),
        ("validated", "retired", operator, "superseded"),
    ]
    assert rows(db, "SELECT COUNT(*) FROM ledger WHERE kind = 'pattern_transition'")[0][0] == 3
    # retired is terminal: the CLI refuses before anything is sent
    refused = await pheromone(
        "patterns", "validate", target, "--reason", "undo", *common, data_dir=s.data_dir
    )
    assert "illegal transition retired -> validated" in refused.one_line_error()
    assert rows(db, "SELECT COUNT(*) FROM ledger WHERE kind = 'pattern_transition'")[0][0] == 3
