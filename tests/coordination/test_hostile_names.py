"""Model names and error codes are user data: no name can break, collide with or escape its keys."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from pydantic import ValidationError

from pheromone import Pheromone
from pheromone.contracts.streams import Keys, key_part
from tests.coordination.conftest import StartRuntime
from tests.coordination.helpers import eventually
from tests.support import OpenClient

HOSTILE = [
    "claude sonnet",  # spaces
    "model:with:colons",  # the key separator
    "rl:*",  # a glob
    "pheromone:ingest",  # another key's name
    "{hash-tag}",  # cluster hash-tag braces
    "模型-名前-🚀",  # unicode, astral plane
    "line\nbreak\ttab\r\x00nul",  # control characters
    "[red]markup[/red]",  # rich markup (the CLI prints names verbatim)
    "x" * 256,  # the longest name a record takes
    "X" * 256,  # differs from the one above only in case
    "",  # (refused: names are at least one character)
]
PHEROMONE = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "pheromone"


def test_key_parts_are_fixed_length_and_distinct() -> None:
    parts = {key_part(name) for name in HOSTILE} | {key_part("a" * 10_000), key_part("\ud800")}
    assert len(parts) == len(HOSTILE) + 2
    assert all(len(p) == 32 and p.isalnum() for p in parts)
    keys = Keys("p")
    assert keys.rate_limit("a:b", "c") != keys.rate_limit("a", "b:c")
    assert keys.rate_limit("m") != keys.rate_limit("m", "")


async def test_hostile_model_names_and_codes_each_get_their_own_limit(
    start_runtime: StartRuntime,
    open_client: OpenClient,
    prefix: str,
    redis: aioredis.Redis,
    tmp_path: Path,
    redis_url: str,
) -> None:
    await start_runtime(["coordinator"])
    reporter, reader = await open_client("job-a"), await open_client("job-b", workspace="ws-1")
    names = [n for n in HOSTILE if n]
    for i, name in enumerate(names):
        reporter.report_rate_limit(name, name, 100.0 + i)  # the name is the error code too
    with pytest.raises(ValidationError):
        reporter.report_rate_limit("", "429", 10.0)
    with pytest.raises(ValidationError):
        reporter.report_rate_limit("m" * 10_000, "429", 10.0)  # over the 256-character bound: refused whole
    with pytest.raises(ValidationError):
        reporter.report_rate_limit("\ud800", "429", 10.0)  # a lone surrogate is not text

    await eventually(lambda: _all_active(reader, names), what="every hostile limit visible")
    for i, name in enumerate(names):
        status = await reader.rate_limit(name)
        assert status.model == name and status.reported_error_code == name
        assert status.duration_seconds == 100.0 + i  # its own report, no cross-talk between names
        assert (await reader.rate_limit(name, name)).active
        assert not (await reader.rate_limit(name, name + "-other")).active
    # Queries with names no record could carry answer "not limited" rather than fail.
    for odd in ("m" * 10_000, "\ud800", "", "rl:*" + "\x00" * 100):
        assert not (await reader.rate_limit(odd)).active
    listed = await reader.rate_limits()
    assert sorted(s.model for s in listed) == sorted(names)

    # Every key the coordinator wrote is `{prefix}:rl:<32 hex>[:<32 hex>]` or the index: bounded and inert.
    written = sorted(k.decode() for k in await redis.keys(f"{{{prefix}}}:rl*"))
    limits = [k for k in written if k != Keys(prefix).rate_limit_index]
    assert len(limits) == 2 * len(names)
    for key in limits:
        parts = key.split(":")
        assert parts[0] == f"{{{prefix}}}" and parts[1] == "rl" and all(len(p) == 32 for p in parts[2:])
    assert not await redis.exists(Keys().ingest)

    # The CLI lists them verbatim (JSON round trip keeps every byte of every name).
    run = await asyncio.to_thread(
        subprocess.run,
        [str(PHEROMONE), "ratelimits", "--json", "--redis-url", redis_url, "--prefix", prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PHEROMONE_DATA_DIR": str(tmp_path / "cli"), "PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    rows = json.loads(run.stdout)
    assert sorted(r["model"] for r in rows) == sorted(names)
    assert all(r["active"] and r["seconds_left"] > 0 for r in rows)
    table = await asyncio.to_thread(
        subprocess.run,
        [str(PHEROMONE), "ratelimits", "--redis-url", redis_url, "--prefix", prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PHEROMONE_DATA_DIR": str(tmp_path / "cli"), "PATH": "/usr/bin:/bin", "COLUMNS": "400"},
    )
    assert table.returncode == 0, table.stderr
    assert "[red]markup[/red]" in table.stdout and f"{len(names)} active rate limit(s)" in table.stdout


async def _all_active(client: Pheromone, names: list[str]) -> bool:
    return all([(await client.rate_limit(n)).active for n in names])
