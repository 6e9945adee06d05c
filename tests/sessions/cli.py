"""Running the real `pheromone` console script from the session tests (against the test's server and prefix)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from tests.cli.helpers import PHEROMONE, Run

__all__ = ["Run", "ok_json", "run"]


def env_for(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHEROMONE_") and k != "COLUMNS"}
    env["PHEROMONE_DATA_DIR"] = str(data_dir)
    env["XDG_DATA_HOME"] = str(data_dir / "xdg")
    return env


def run(data_dir: Path, *args: str, url: str | None = None, prefix: str | None = None) -> Run:
    """`pheromone ARGS` with the data directory, and the Redis URL and prefix if given, from the environment."""
    env = env_for(data_dir)
    env.update({"PHEROMONE_REDIS_URL": url} if url else {})
    env.update({"PHEROMONE_PREFIX": prefix} if prefix else {})
    proc = subprocess.run([str(PHEROMONE), *args], env=env, cwd=data_dir, capture_output=True,
                          text=True, timeout=120, stdin=subprocess.DEVNULL, check=False)
    return Run(tuple(args), proc.returncode, proc.stdout, proc.stderr)


async def ok_json(data_dir: Path, *args: str, url: str | None = None, prefix: str | None = None) -> Any:
    result = await asyncio.to_thread(run, data_dir, *args, "--json", url=url, prefix=prefix)
    assert result.code == 0, str(result)
    return json.loads(result.out)
