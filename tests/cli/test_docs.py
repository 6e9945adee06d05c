"""The README and docs/ARCHITECTURE.md stay true to the code: the commands, settings, streams and tables they
name exist, everything that exists is named, and the README's job example runs against `pheromone serve`."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from pheromone.contracts import streams
from pheromone.services.settings import Settings
from pheromone.services.store.schema import MIGRATIONS, PROJECTION_TABLES
from tests.cli.helpers import PHEROMONE, command_paths

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
ARCHITECTURE = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
DOCS = {"README.md": README, "docs/ARCHITECTURE.md": ARCHITECTURE}


def code_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def code_spans(text: str) -> list[str]:
    """Inline code and every fenced block but Python ones (`from pheromone import …` is no command)."""
    return [*re.findall(r"`([^`\n]+)`", text), *code_blocks(text, r"(?!python)\w*")]


def mentioned_commands(text: str) -> set[tuple[str, ...]]:
    """Command paths of every `pheromone …` invocation in code: the words before the first option/metavar."""
    found: set[tuple[str, ...]] = set()
    for span in code_spans(text):
        for line in span.splitlines():
            for match in re.finditer(r"(?:^|[\s$])pheromone((?: [a-z][a-z-]*)*)", line):
                found.add(tuple(match.group(1).split()))
    return found


# -- the two commands ---------------------------------------------------------------------------------------


def test_readme_opens_with_the_two_commands() -> None:
    first = README.split("\n## ", 1)[0]
    (block,) = code_blocks(first, "sh")
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines() if line.split("#", 1)[0].strip()]
    assert commands == ["./dev demo", "./dev test"]


def test_ci_runs_the_readme_test_command_then_the_newest_versions() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in script.splitlines()
                if line.strip() and not line.startswith("#") and line.strip().startswith("./dev")]
    assert commands == ["./dev test", "./dev newest"], script
    assert "set -euo pipefail" in script, "a red first run must fail CI"
    dev = (ROOT / "dev").read_text()
    assert "demo) exec .venv/bin/pheromone demo" in dev
    assert "test) exec .venv/bin/python -m pytest" in dev
    assert "--require-hashes --no-deps -r requirements.lock" in dev, "./dev installs the lock's exact bytes"


def test_the_locks_pin_every_dependency_with_hashes() -> None:
    """Each lock names every package once with ==, each with a hash, and satisfies pyproject.toml's ranges."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    # The test extra names the server extra as `pheromone[server]`: the project itself is in no lock.
    test = [line for line in extras["test"] if canonicalize_name(Requirement(line.split("#")[0]).name) != "pheromone"]
    assert len(test) == len(extras["test"]) - 1, "the test extra includes pheromone[server]"
    wanted = {"requirements.lock": project["dependencies"] + extras["server"] + test,
              "requirements-runtime.lock": project["dependencies"] + extras["server"]}
    for name, reqs in wanted.items():
        text = (ROOT / name).read_text()
        pins: dict[str, str] = {}
        for block in re.split(r"\n(?=[A-Za-z])", text):
            head = block.split(" ;")[0].split(" \\")[0].strip()
            if not head or head.startswith("#"):
                continue
            assert "==" in head and "--hash=sha256:" in block, f"{name}: {head} is not pinned with a hash"
            package, version = head.split("==")
            pins[canonicalize_name(package.split("[")[0])] = version
        for line in reqs:
            req = Requirement(line.split("#")[0])
            pinned = pins.get(canonicalize_name(req.name))
            assert pinned is not None, f"{name} lacks {req.name}"
            assert req.specifier.contains(pinned, prereleases=True), f"{name}: {req.name}=={pinned} outside {req}"
    runtime = (ROOT / "requirements-runtime.lock").read_text()
    assert "pytest==" not in runtime and "mypy==" not in runtime, "the image's lock carries no test tools"


# -- commands -----------------------------------------------------------------------------------------------


def test_every_command_in_the_docs_exists() -> None:
    paths = set(command_paths())
    for name, text in DOCS.items():
        for words in mentioned_commands(text):
            assert not words or words in paths, f"{name} names `pheromone {' '.join(words)}`: no such command"


def test_the_readme_documents_every_command() -> None:
    mentioned = mentioned_commands(README)
    leaves = [p for p in command_paths() if not any(q[: len(p)] == p and q != p for q in command_paths())]
    missing = [" ".join(p) for p in leaves if p not in mentioned]
    assert not missing, f"commands the README does not document: {missing}"


# -- settings -----------------------------------------------------------------------------------------------


def test_every_setting_in_the_docs_exists() -> None:
    for name, text in DOCS.items():
        for var in set(re.findall(r"PHEROMONE_[A-Z0-9_]+(?:<NAME>)?", text)):
            field, _, nested = var.removeprefix("PHEROMONE_").partition("__")
            assert field.lower() in Settings.model_fields, f"{name} names {var}, which is no setting"
            if nested:
                annotation = Settings.model_fields[field.lower()].annotation
                assert isinstance(annotation, type) and issubclass(annotation, BaseModel), var


def test_the_readme_documents_every_setting() -> None:
    variables = [f"PHEROMONE_{field.upper()}" for field in Settings.model_fields]
    missing = [var for var in variables if var not in README]
    assert not missing, f"settings the README's Configuration table does not list: {missing}"


# -- the architecture ---------------------------------------------------------------------------------------


def test_architecture_names_every_stream_group_and_table() -> None:
    for stream in (streams.INGEST, streams.RATELIMITS, streams.DISCOVERIES, streams.BROADCAST, streams.DEAD):
        assert f"{{prefix}}:{stream}" in ARCHITECTURE, stream
    for group in {g for groups in streams.STREAM_GROUPS.values() for g in groups}:
        assert f"`{group}`" in ARCHITECTURE, group
    created = {t for script in MIGRATIONS for t in re.findall(r"CREATE TABLE (\w+)", script)}
    assert set(PROJECTION_TABLES) <= created
    for table in sorted(created):
        assert f"| `{table}` |" in ARCHITECTURE, f"docs/ARCHITECTURE.md's tables do not describe {table}"


# -- the job example ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("setup", ["nothing-configured", "redis-url"])
def test_readme_job_example_runs_against_serve(
    cli_env: dict[str, str], tmp_path: Path, setup: str, request: pytest.FixtureRequest
) -> None:
    """The README's job example, run as the README says: `pheromone serve` first, then the job, in the same
    environment; with nothing configured both find the embedded server of the default data directory."""
    assert "Start the services first" in README.split("```python", 1)[0].rsplit("## Using it from a job", 1)[1]
    (example,) = code_blocks(README, "python")
    script = tmp_path / "job.py"
    script.write_text(example)
    env = {k: v for k, v in cli_env.items() if k != "PHEROMONE_DATA_DIR"}  # the default: $XDG_DATA_HOME/pheromone
    if setup == "redis-url":
        env["PHEROMONE_REDIS_URL"] = request.getfixturevalue("private_server").url

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PHEROMONE), *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, check=False)

    log = (tmp_path / "serve.log").open("w")
    serve = subprocess.Popen([str(PHEROMONE), "serve"], env=env, cwd=tmp_path, stdout=log, stderr=log)
    try:
        # "first": the services are up (every one beats) before the job starts.
        deadline = time.monotonic() + 60
        while cli("health").returncode != 0:
            assert serve.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
        job = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True,
                             text=True, timeout=60, check=False)
        assert job.returncode == 0, job.stdout + job.stderr
        assert job.stderr == "", job.stderr
        event_id = job.stdout.split()[0]
        deadline = time.monotonic() + 20
        stored: list[str] = []
        while time.monotonic() < deadline and event_id not in stored:
            run = cli("events", "--workspace", "ws-1", "--kind", "execution", "--json")
            stored = [e["event_id"] for e in json.loads(run.stdout)] if run.returncode == 0 else []
        assert event_id in stored, (tmp_path / "serve.log").read_text()
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            code = serve.wait(timeout=30)
        finally:
            if serve.poll() is None:
                serve.kill()
                serve.wait()
            log.close()
    output = (tmp_path / "serve.log").read_text()
    assert code == 0, output
    assert "Traceback" not in output, output
