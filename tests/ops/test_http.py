"""The HTTP side of `pheromone serve`: probes answered from memory (ready only once the services run, not ready
the moment a reader stops or a stop begins), /metrics from the runtime's registry, the AsyncAPI document, the
dashboard's data after a known workload, and bad requests answered with a status, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from pheromone import Pheromone
from pheromone.contracts.streams import FIELD, Keys
from pheromone.services import asyncapi
from pheromone.services.runtime import Runtime
from pheromone.services.web.dashboard import plot, render
from pheromone.services.web.routes import HttpSide
from tests.ops.conftest import StartRuntime
from tests.ops.test_metrics import execution
from tests.support import eventually, settings


async def get(port: int, path: str, method: str = "GET", raw: bytes | None = None) -> tuple[int, str]:
    async with asyncio.timeout(20):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(raw or f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        with contextlib.suppress(ConnectionError):  # the server may answer (431) before reading it all
            await writer.drain()
        data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


async def test_probes_follow_the_runtime(tmp_path: Path, prefix: str, redis_url: str) -> None:
    runtime = Runtime(settings(tmp_path, prefix, http_port=0), redis_url, ["store", "broadcaster"])
    side = HttpSide(runtime)
    await side.start()
    try:
        assert await get(side.port, "/healthz") == (200, "ok\n")
        status, body = await get(side.port, "/readyz")
        assert (status, body) == (503, "not ready: not started (or stopping)\n")
        await runtime.start()
        status, body = await eventually(lambda: _ready(side.port), what="ready")
        assert body == "ready: store, broadcaster\n"
        # A reader that stopped makes the process unready at once, named in the answer.
        worker, sub = next((w, s) for w, s in runtime._subscribers if w.group == "broadcaster")
        await sub.stop()
        status, body = await get(side.port, "/readyz")
        assert status == 503 and f"reader of group broadcaster on {worker.stream} is stopped" in body
        await sub.start()
        await eventually(lambda: _ready(side.port), what="ready again")
        stopping = asyncio.ensure_future(runtime.stop())
        await asyncio.sleep(0)  # the stop has begun
        assert (await get(side.port, "/readyz"))[0] == 503
        await stopping
        assert await get(side.port, "/healthz") == (200, "ok\n")
    finally:
        if runtime._started:
            await runtime.stop()
        await side.close()


async def _ready(port: int) -> tuple[int, str] | None:
    answer = await get(port, "/readyz")
    return answer if answer[0] == 200 else None


async def test_readyz_holds_lag_against_the_bound(start_runtime: StartRuntime, redis: aioredis.Redis,
                                                  prefix: str) -> None:
    # The watchdog would restart the stopped reader within group_check_s: not during this test.
    runtime = await start_runtime(["broadcaster"], http_port=0, health_max_lag=3, metrics_interval_s=0.05,
                                  group_check_s=30)
    side = HttpSide(runtime)
    await side.start()
    try:
        await eventually(lambda: _ready(side.port), what="ready")
        await next(s for _, s in runtime._subscribers).stop()  # nobody reads discoveries: entries become lag
        for _ in range(5):
            await redis.xadd(Keys(prefix).discoveries, {FIELD: b"{}"})
        _, body = await eventually(lambda: _unready(side.port), what="lag over the bound")
        assert "group broadcaster on discoveries: lag 5 > 3" in body
    finally:
        await side.close()


async def _unready(port: int) -> tuple[int, str] | None:
    answer = await get(port, "/readyz")
    return answer if answer[0] == 503 and "lag" in answer[1] else None


async def test_metrics_asyncapi_and_dashboard_data(start_runtime: StartRuntime, redis_url: str, prefix: str,
                                                   tmp_path: Path, redis: aioredis.Redis) -> None:
    runtime = await start_runtime(["store", "query", "coordinator"], http_port=0, metrics_interval_s=0.05)
    side = HttpSide(runtime)
    await side.start()
    try:
        async with Pheromone(redis_url, workspace="ws-h", job="job-h", prefix=prefix, data_dir=tmp_path,
                             spool_dir=tmp_path / "spool") as client:
            for i in range(30):
                client.emit(execution(i))
            client.report_rate_limit("m-dash", "429", 600)
            await client.flush()
        await redis.xadd(Keys(prefix).ingest, {FIELD: b"not json"})

        async def settled() -> dict[str, object] | None:
            data = json.loads((await get(side.port, "/dashboard.json"))[1])
            ingest = next(s for s in data["streams"] if s["name"] == "ingest")
            done = ingest["length"] == 31 and data["dead_letters"]["count"] == 1 and data["rate_limits"]
            return data if done and ingest["rate_per_s"] is not None else None

        data = await eventually(settled, what="the dashboard saw the workload")
        (limit,) = data["rate_limits"]  # type: ignore[misc]
        assert limit["model"] == "m-dash" and limit["error_code"] == "429" and 590 < limit["seconds_left"] <= 600
        assert {s["service"] for s in data["services"]} == {"store", "query", "coordinator"}  # type: ignore[attr-defined]
        (dead,) = data["dead_letters"]["newest"]  # type: ignore[index]
        assert dead["group"] == "store" and dead["error"].startswith("invalid envelope: <root>: Invalid JSON")
        assert "entropy" in data and "budget" in data, data.get("learning_error")

        status, text = await get(side.port, "/metrics")
        names = {f.name for f in text_string_to_metric_families(text)}
        assert status == 200 and {"pheromone_events", "pheromone_group_lag", "pheromone_redis_up"} <= names
        status, text = await get(side.port, "/asyncapi.json")
        assert status == 200 and json.loads(text)["channels"] == asyncapi.document(prefix)["channels"]
        status, page = await get(side.port, "/?refresh=2")
        assert status == 200 and 'content="2"' in page and 'data-key="length:ingest">31<' in page
        assert "m-dash" in page and "<svg" in page
    finally:
        await side.close()


async def test_bad_requests_get_a_status(start_runtime: StartRuntime) -> None:
    runtime = await start_runtime(["broadcaster"], http_port=0)
    side = HttpSide(runtime)
    await side.start()
    try:
        assert (await get(side.port, "/nope"))[0] == 404
        assert (await get(side.port, "/", method="POST"))[0] == 405
        assert (await get(side.port, "/?refresh=0"))[0] == 400
        assert (await get(side.port, "/?refresh=x"))[0] == 400
        assert (await get(side.port, "", raw=b"nonsense\r\n\r\n"))[0] == 400
        assert (await get(side.port, "", raw=b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000 + b"\r\n\r\n"))[0] == 431
        status, body = await get(side.port, "/healthz", method="HEAD")
        assert status == 200 and body == ""
    finally:
        await side.close()


def test_plot_scales_series_and_escapes_labels() -> None:
    svg = plot("a <b>", {"x&y": [(0.0, 0.0), (10.0, 1.0)]}, lines={"alert": 0.5}, width=200, height=100)
    assert "a &lt;b&gt;" in svg and "x&amp;y" in svg
    # x from the left padding (34) to width - 6; y from the bottom (100 - 18) to the top padding (8).
    assert 'points="34.0,82.0 194.0,8.0"' in svg
    assert "no data yet" in plot("empty", {})


def test_render_escapes_what_it_shows() -> None:
    snap = {"prefix": "p", "time": "t", "streams": [], "groups": [], "services": [], "effectiveness": {},
            "rate_limits": [{"model": "<script>", "error_code": None, "seconds_left": 1.0, "reported_by": None}],
            "dead_letters": {"count": 0, "newest": []}, "learning_error": "no query service"}
    page = render(snap, 5)
    assert "<script>" not in page and "&lt;script&gt;" in page

