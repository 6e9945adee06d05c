"""compose.yaml and the Dockerfile agree with the code: every container runs a CLI command that exists, every
service has a container, Redis persists and reports health. (No Docker engine is needed: files are parsed.)"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import typer.main
import yaml  # type: ignore[import-untyped]
from typer.testing import CliRunner

from pheromone.cli import app
from pheromone.services.runtime import service_names
from pheromone.services.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "compose.yaml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())  # resolves the `<<: *service` merge keys
    assert isinstance(data, dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def pheromone_services() -> dict[str, dict[str, Any]]:
    """Containers built from this repository's image (the others, e.g. redis, are upstream images)."""
    return {name: s for name, s in services().items() if "build" in s}


def serving() -> dict[str, dict[str, Any]]:
    """Long-running containers: every pheromone container outside an optional profile."""
    return {name: s for name, s in pheromone_services().items() if not s.get("profiles")}


def only_names(command: list[str]) -> list[str]:
    return [command[i + 1] for i, arg in enumerate(command) if arg == "--only"]


def command_path(command: list[str]) -> tuple[list[str], list[str]]:
    """Split a container command (the entrypoint's arguments) into the CLI command path and its arguments."""
    group: Any = typer.main.get_command(app)
    path: list[str] = []
    rest = list(command)
    while getattr(group, "commands", None) is not None and rest:
        assert rest[0] in group.commands, f"`pheromone {' '.join(path + rest[:1])}` is not a command"
        path.append(rest.pop(0))
        group = group.commands[path[-1]]
    return path, rest


def parse(command: list[str]) -> None:
    """Parse a full command line as the CLI would, without running it: unknown options or bad values raise."""
    leaf: Any = typer.main.get_command(app)
    path, rest = command_path(command)
    for name in path:
        leaf = leaf.commands[name]
    leaf.make_context(" ".join(["pheromone", *path]), rest)


# -- the services ---------------------------------------------------------------------------------------


def test_compose_parses_and_has_redis_and_services() -> None:
    data = compose()
    assert "redis" in data["services"]
    assert serving(), "no pheromone service containers"
    assert "x-service" in data, "services share one block (x-service) so adding one is a copy"


@pytest.mark.parametrize("name", sorted(pheromone_services()))
def test_every_command_exists(name: str) -> None:
    command = pheromone_services()[name]["command"]
    assert isinstance(command, list) and command, "commands are exec-form lists"
    path, _ = command_path(command)
    assert path, f"{name}: {command} names no CLI command"
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    parse(command)


@pytest.mark.parametrize("name", sorted(pheromone_services()))
def test_every_only_names_a_service(name: str) -> None:
    for service in only_names(pheromone_services()[name]["command"]):
        assert service in service_names(), f"{name}: --only {service}; known: {service_names()}"


def test_every_service_has_a_container() -> None:
    hosted = {n for s in serving().values() for n in only_names(s["command"])}
    missing = set(service_names()) - hosted
    assert not missing, f"services without a container in compose.yaml: {sorted(missing)}"


def test_one_container_per_service() -> None:
    for name, s in serving().items():
        command = s["command"]
        assert command[:1] == ["serve"], name
        assert only_names(command) == [name], f"container {name} should run `serve --only {name}`"


@pytest.mark.parametrize("name", sorted(pheromone_services()))
def test_service_environment_and_wiring(name: str) -> None:
    s = pheromone_services()[name]
    env = s["environment"]
    assert env["PHEROMONE_REDIS_URL"] == "redis://redis:6379/0"
    assert env["PHEROMONE_DATA_DIR"] == "/data"
    for var, value in env.items():
        field = var.removeprefix("PHEROMONE_").lower()
        assert var.startswith("PHEROMONE_") and field in Settings.model_fields, f"{var} is not a setting"
        Settings.model_validate({field: value})  # a value the settings accept
    host = urlparse(env["PHEROMONE_REDIS_URL"]).hostname
    assert host in services(), f"{host} is not a compose service"
    assert s["depends_on"]["redis"]["condition"] == "service_healthy"
    assert any(v.split(":")[1] == "/data" for v in s["volumes"])


def test_services_share_one_data_volume() -> None:
    data = compose()
    mounts = [v.split(":") for s in serving().values() for v in s["volumes"]]
    sources = {source for source, target, *_ in mounts if target == "/data"}
    assert len(sources) == 1, f"the services need the same SQLite file; /data comes from {sources}"
    assert sources <= set(data["volumes"]), "the data volume is a named volume"


def test_services_restart_unless_stopped() -> None:
    for name, s in serving().items():
        assert s["restart"] == "unless-stopped", name
    assert services()["redis"]["restart"] == "unless-stopped"


def test_demo_profile_runs_the_demo_against_compose_redis() -> None:
    demo = [s for s in pheromone_services().values() if "demo" in s.get("profiles", [])]
    assert len(demo) == 1
    command = demo[0]["command"]
    assert command[0] == "demo"
    assert command[command.index("--redis-url") + 1] == "redis://redis:6379/0"
    assert demo[0]["restart"] == "no"


# -- redis ----------------------------------------------------------------------------------------------


def test_redis_persists_with_aof() -> None:
    redis = services()["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    mounts = [v for v in redis["volumes"] if v.split(":")[1] == "/data"]
    assert mounts and mounts[0].split(":")[0] in compose()["volumes"], "the AOF lives on a named volume"


def test_redis_has_a_healthcheck() -> None:
    check = services()["redis"]["healthcheck"]
    test = check["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "redis-cli" in " ".join(test) and "ping" in " ".join(test)


# -- the image ------------------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), args.strip()))
    return out


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    assert DOCKERFILE.is_file()
    (entrypoint,) = instructions("ENTRYPOINT")
    assert json.loads(entrypoint) == ["pheromone"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pheromone"] == "pheromone.cli:main"


def test_dockerfile_base_user_volume() -> None:
    assert instructions("FROM") == ["python:3.11-slim"]
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0"), "the services run as a non-root user"
    assert any("/data" in v for v in instructions("VOLUME"))
    installs = [r for r in instructions("RUN") if "pip install" in r]
    assert installs and not any("[test]" in r or "-e " in r for r in installs), "no dev extras, no editable"


def test_dockerfile_copies_what_the_package_needs_and_dockerignore_keeps_it() -> None:
    copied = {src for args in instructions("COPY") for src in args.split()[:-1] if not src.startswith("--")}
    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    needed = {p.rstrip("*") for p in packages["include"]} | {"pyproject.toml", "README.md"}
    assert needed <= copied, f"Dockerfile does not copy {sorted(needed - copied)}"
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: no such path"
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert not (copied & ignored), f".dockerignore excludes what the Dockerfile copies: {copied & ignored}"
