"""compose.yaml and the Dockerfile agree with the code: every container runs a CLI command that exists, every
service has a container, Redis persists and reports health, every service can be scaled, and the postgres
profile (compose.postgres.yaml) puts every service's store on a healthy PostgreSQL. (No Docker engine is
needed: files are parsed.)"""

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
POSTGRES_OVERRIDE = ROOT / "compose.postgres.yaml"
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


# -- scaling ---------------------------------------------------------------------------------------------


def test_every_service_can_scale() -> None:
    """`--scale NAME=N` needs containers that pin neither a name nor a host port."""
    for name, s in {**services(), **with_postgres()}.items():
        assert "container_name" not in s, f"{name} pins its container name, so it cannot scale"
    for name, s in pheromone_services().items():
        assert "ports" not in s, f"{name} publishes a host port, so a second replica could not start"


def test_sqlite_stays_the_default_store() -> None:
    for name, s in pheromone_services().items():
        assert "PHEROMONE_STORE_URL" not in s["environment"], f"{name}: without the override the store is SQLite"


# -- the postgres profile -------------------------------------------------------------------------------


def override() -> dict[str, Any]:
    data = yaml.safe_load(POSTGRES_OVERRIDE.read_text())
    assert isinstance(data, dict)
    return data


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """A service of compose.yaml with the override's mappings merged in, key by key, as Compose merges
    `environment` and `depends_on` (the only keys the override may set: test_the_override_only_adds_...)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def with_postgres() -> dict[str, dict[str, Any]]:
    """The services as `docker compose -f compose.yaml -f compose.postgres.yaml --profile postgres` sees them."""
    extra = override()["services"]
    return {name: merge(s, extra.get(name, {})) for name, s in services().items()}


def test_postgres_service_is_in_its_profile_with_a_healthcheck() -> None:
    pg = services()["postgres"]
    assert pg["profiles"] == ["postgres"], "the database starts only with --profile postgres"
    assert pg["image"].split(":")[0] == "postgres" and pg["image"].split(":")[1].split("-")[0] in ("15", "16")
    test = pg["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL") and "pg_isready" in " ".join(test)
    assert test[test.index("-d") + 1] == pg["environment"]["POSTGRES_DB"], "ready means the store's database"
    mounts = [v.split(":") for v in pg["volumes"]]
    assert any(target == "/var/lib/postgresql/data" and source in compose()["volumes"] for source, target in mounts)
    assert pg["restart"] == "unless-stopped" and "ports" not in pg


def test_the_override_only_adds_the_store_url_and_the_wait() -> None:
    data = override()
    assert "x-postgres-store" in data, "every service shares one block, so adding one is a line"
    extra = data["services"]
    assert set(extra) == set(pheromone_services()), "every pheromone service, and only those, is switched over"
    for name, s in extra.items():
        assert set(s) == {"environment", "depends_on"}, f"{name}: the override changes only where the store is"


@pytest.mark.parametrize("name", sorted(pheromone_services()))
def test_postgres_profile_points_every_service_at_the_database(name: str) -> None:
    merged = with_postgres()
    s, pg = merged[name], merged["postgres"]
    env = s["environment"]
    url = urlparse(env["PHEROMONE_STORE_URL"])
    assert url.scheme == "postgresql" and url.hostname == "postgres" and url.port == 5432
    assert "postgres" in pg.get("profiles", []), "the URL names the profile's database service"
    assert (url.username, url.password, url.path.lstrip("/")) == (
        pg["environment"]["POSTGRES_USER"], pg["environment"]["POSTGRES_PASSWORD"], pg["environment"]["POSTGRES_DB"])
    assert s["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert s["depends_on"]["redis"]["condition"] == "service_healthy", "compose.yaml's wiring is kept"
    assert env["PHEROMONE_REDIS_URL"] == "redis://redis:6379/0" and env["PHEROMONE_DATA_DIR"] == "/data"
    assert env["PHEROMONE_STORE_URL"] == Settings.model_validate({"store_url": env["PHEROMONE_STORE_URL"]}).store
    assert s["command"] == services()[name]["command"]
    if not s.get("profiles"):
        check = s["healthcheck"]
        assert not check.get("disable") and "/readyz" in " ".join(check["test"]), "healthchecks as on SQLite"


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
