"""`pheromone health`: exit 0 while every expected service beats and its groups are within bounds; exit 1 with
one line per problem when a service is down (stopped, or killed and its heartbeat expired) or a bound is
exceeded, and when Redis cannot be reached, within the timeout. Bad arguments are one-line errors, exit 2."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone.contracts.streams import FIELD, GROUP_STORE, Keys
from pheromone.services.runtime import service_names
from pheromone.services.status import GroupStatus, Liveness, problems
from tests.cli.helpers import PHEROMONE
from tests.ops.conftest import Cli, StartRuntime
from tests.support import eventually

ALL_BUT_COORDINATOR = [name for name in service_names() if name != "coordinator"]


async def test_healthy_while_every_service_runs_then_down_when_one_is_killed(
    start_runtime: StartRuntime, cli: Cli, cli_env: dict[str, str], prefix: str, redis: aioredis.Redis
) -> None:
    await start_runtime(ALL_BUT_COORDINATOR, heartbeat_ttl_s=2.0)
    # The coordinator in a process of its own, beating with a short TTL, so killing it is a real crash.
    proc = await asyncio.create_subprocess_exec(
        str(PHEROMONE), "serve", "--only", "coordinator", "--quiet",
        env={**cli_env, "PHEROMONE_HEARTBEAT_TTL_S": "1", "PHEROMONE_GROUP_CHECK_S": "0.2"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        key = f"{Keys(prefix).heartbeat('coordinator')}:{os.uname().nodename}-{proc.pid}"
        await eventually(lambda: redis.exists(key), timeout=30, what="coordinator process beating")
        ok = await cli("health")
        assert ok.code == 0, ok
        assert ok.out.startswith("healthy: ") and all(name in ok.out for name in service_names())
        assert json.loads((await cli("health", "--json")).out) == {
            "healthy": True, "services": list(service_names()), "problems": []}

        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        async def expired() -> bool:
            return await redis.exists(key) == 0

        await eventually(expired, timeout=10, what="heartbeat expired")
        down = await cli("health")
        assert down.code == 1, down
        assert down.err.splitlines() == ["unhealthy: service coordinator is down: no heartbeat"], down
        narrowed = await cli("health", "--service", "store", "--service", "query")
        assert narrowed.code == 0, narrowed
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_a_stopped_service_is_down_at_once(start_runtime: StartRuntime, cli: Cli) -> None:
    store = await start_runtime(["store"], heartbeat_ttl_s=60.0)
    assert (await cli("health", "--service", "store", "--local")).code == 0
    await store.stop()  # a clean stop withdraws the heartbeat: no need to wait out its 60 s TTL
    run = await cli("health", "--service", "store")
    assert run.code == 1 and "service store is down" in run.err, run


async def test_lag_and_pending_over_their_bounds_are_unhealthy(
    start_runtime: StartRuntime, cli: Cli, redis: aioredis.Redis, prefix: str
) -> None:
    keys = Keys(prefix)
    store = await start_runtime(["store"])
    await store.stop()
    async with redis.pipeline(transaction=False) as pipe:
        for i in range(5):
            pipe.xadd(keys.ingest, {FIELD: f"entry {i}"})
        await pipe.execute()

    run = await cli("health", "--service", "store", "--max-lag", "4")
    assert run.code == 1, run
    assert "unhealthy: group store on ingest: lag 5 > 4" in run.err.splitlines(), run
    within = await cli("health", "--service", "store", "--max-lag", "5")
    assert "lag" not in within.err and "service store is down" in within.err, within

    await redis.xreadgroup(GROUP_STORE, "stuck", {keys.ingest: ">"}, count=3)
    run = await cli("health", "--service", "store", "--max-pending", "2", env={"PHEROMONE_HEALTH_MAX_LAG": "1"})
    assert run.code == 1, run
    lines = run.err.splitlines()
    assert "unhealthy: group store on ingest: 3 pending > 2" in lines, run
    assert "unhealthy: group store on ingest: lag 2 > 1" in lines, run  # the setting is the default bound


def test_problems_with_a_live_service_name_only_what_is_over_a_bound() -> None:
    beat = Liveness("store", "c-1", "host-a", 1, 0.1, None)
    rows = [GroupStatus("ingest", "store", 1, 7, 0), GroupStatus("ratelimits", "store", 1, 0, 9),
            GroupStatus("ingest", "entropy", 1, 10_000, 10_000), GroupStatus("discoveries", "store", 1, None, 0)]
    assert problems([beat], rows, ("store",), max_lag=10, max_pending=10) == []
    assert problems([beat], rows, ("store",), max_lag=6, max_pending=8) == [
        "group store on ingest: lag 7 > 6", "group store on ratelimits: 9 pending > 8"]
    assert problems([beat], rows, ("store",), max_lag=10, max_pending=10, host="host-b") == [
        "service store is down: no heartbeat on host host-b"]
    assert problems([beat], [], ("query",), max_lag=0, max_pending=0) == ["service query is down: no heartbeat"]


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("kind", ["refused", "silent"])
async def test_unreachable_redis_is_unhealthy_within_the_timeout(cli: Cli, silent_port: int, kind: str) -> None:
    port = free_port() if kind == "refused" else silent_port
    run = await cli("health", "--redis-url", f"redis://:pw-secret@127.0.0.1:{port}/0", "--timeout", "1",
                    timeout=20)
    assert run.code == 1, run
    [line] = run.err.splitlines()
    assert line.startswith("unhealthy: ") and f"127.0.0.1:{port}" in line, run
    assert "Traceback" not in run.out + run.err and "pw-secret" not in run.out + run.err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("health", "--service", "bogus"), "bogus"),
        (("health", "--max-lag", "-1"), "--max-lag"),
        (("health", "--max-pending", "-3"), "--max-pending"),
        (("health", "--timeout", "0"), "--timeout"),
        (("status", "--timeout", "-1"), "--timeout"),
        (("serve", "--metrics-port", "70000"), "--metrics-port"),
    ],
    ids=["unknown-service", "negative-lag", "negative-pending", "zero-timeout", "status-timeout", "port"],
)
async def test_bad_arguments_are_one_line_errors(cli: Cli, args: tuple[str, ...], needle: str) -> None:
    run = await cli(*args, timeout=30)
    run.assert_clean_failure(needle)
    if args[:2] == ("health", "--service"):
        run.assert_clean_failure(*service_names())


def compose_serving() -> dict[str, dict[str, object]]:
    import yaml  # type: ignore[import-untyped]

    root = Path(__file__).resolve().parents[2]
    services = yaml.safe_load((root / "compose.yaml").read_text())["services"]
    return {name: s for name, s in services.items() if "build" in s and not s.get("profiles")}


def test_compose_healthchecks_probe_readyz_on_the_http_port() -> None:
    serving = compose_serving()
    assert serving
    for name, service in serving.items():
        test = service["healthcheck"]["test"]  # type: ignore[index]
        port = service["environment"]["PHEROMONE_HTTP_PORT"]  # type: ignore[index]
        # A bare interpreter, not `pheromone health`: the answer comes from the serving process's memory.
        assert test[:3] == ["CMD", "python", "-c"] and f"http://127.0.0.1:{port}/readyz" in test[3], (name, test)


async def test_the_compose_probe_passes_when_ready_and_fails_when_the_process_is_gone(
    cli_env: dict[str, str]
) -> None:
    code = compose_serving()["store"]["healthcheck"]["test"][3]  # type: ignore[index]
    port = free_port()
    probe_code = code.replace(":8080/", f":{port}/")

    async def probe() -> int:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", probe_code, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        async with asyncio.timeout(30):
            return await proc.wait()

    proc = await asyncio.create_subprocess_exec(
        str(PHEROMONE), "serve", "--only", "coordinator", "--quiet", env={**cli_env, "PHEROMONE_HTTP_PORT": str(port)},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async def passes() -> bool:
            return await probe() == 0

        await eventually(passes, timeout=60, interval=0.1, what="the compose probe passing")
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        assert await probe() != 0  # at once: no heartbeat to wait out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

async def test_a_killed_process_is_down_at_once_and_its_restart_up_at_once(
    start_runtime: StartRuntime, cli: Cli, cli_env: dict[str, str], prefix: str, redis: aioredis.Redis
) -> None:
    # A 60 s heartbeat: the killed process's key outlives this test, so only its closed connection tells.
    env = {**cli_env, "PHEROMONE_HEARTBEAT_TTL_S": "60", "PHEROMONE_GROUP_CHECK_S": "0.2"}

    async def start() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(
            str(PHEROMONE), "serve", "--only", "coordinator", "--quiet", env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        key = f"{Keys(prefix).heartbeat('coordinator')}:{os.uname().nodename}-{proc.pid}"
        await eventually(lambda: redis.exists(key), timeout=30, what="coordinator beating")
        return proc

    first = await start()
    second: asyncio.subprocess.Process | None = None
    try:
        assert (await cli("health", "--service", "coordinator")).code == 0
        first.send_signal(signal.SIGKILL)
        await first.wait()
        dead_key = f"{Keys(prefix).heartbeat('coordinator')}:{os.uname().nodename}-{first.pid}"
        down = await cli("health", "--service", "coordinator")
        assert down.code == 1 and "service coordinator is down" in down.err, down
        assert await redis.exists(dead_key) == 1, "told from the connection, not from an expired heartbeat"
        status = json.loads((await cli("status", "--json")).out)
        (dead,) = [s for s in status["services"] if s["pid"] == first.pid]
        assert dead["connected"] is False
        second = await start()
        up = await cli("health", "--service", "coordinator")
        assert up.code == 0, up  # the restarted process counts although the dead one's key is still there
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
