"""The dashboard in a real headless browser (Debian's chromium): `pheromone serve` with PHEROMONE_HTTP_PORT, a
fleet of jobs emitting, and the page's numbers change from one load to the next (the ingest stream's length,
its rate, a rate limit's time left); a screenshot is saved in the test's tmp directory (`dashboard.png`).

CI installs chromium (.ci/run); elsewhere a missing chromium skips this test with how to get it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest

from pheromone import Pheromone
from pheromone.contracts import PatternApplied, PatternObserved, pattern_id
from tests.cli.helpers import PHEROMONE
from tests.ops.test_http import get
from tests.ops.test_metrics import execution, free_port
from tests.support import eventually, run_process

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: .ci/run installs it with apt-get")
        pytest.skip("no chromium: `apt-get install -y chromium` (Debian) to run the dashboard's browser test")
    return found


async def browse(browser: str, *args: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        return await run_process(browser, *FLAGS, f"--user-data-dir={profile}", *args, timeout=60, stderr=False)


def cell(dom: str, key: str) -> str:
    found = re.search(rf'data-key="{re.escape(key)}">([^<]*)<', dom)
    assert found, f"no {key} on the page"
    return found.group(1)


async def test_the_dashboard_shows_a_fleet_at_work(
    cli_env: dict[str, str], redis_url: str, prefix: str, tmp_path: Path
) -> None:
    browser = chromium()
    port = free_port()
    serve = await asyncio.create_subprocess_exec(
        str(PHEROMONE), "serve", "--quiet",
        env={**cli_env, "PHEROMONE_HTTP_PORT": str(port), "PHEROMONE_METRICS_INTERVAL_S": "0.2"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/?refresh=1"
    stop = asyncio.Event()

    async def job(n: int) -> None:
        async with Pheromone(redis_url, workspace="ws-b", job=f"job-{n}", prefix=prefix, data_dir=tmp_path,
                             spool_dir=tmp_path / f"spool-{n}") as client:
            client.report_rate_limit(f"model-{n}", "429", 900)
            name = f"back off {n}"
            client.emit(PatternObserved(pattern_type="retry_pattern", pattern_name=name, context_tags=["api"]))
            i = 0
            while not stop.is_set():
                client.emit(execution(i))
                if i % 5 == 0:
                    client.emit(PatternApplied(pattern_id=pattern_id("retry_pattern", name), success=i % 3 > 0,
                                               grounding_confidence=0.9))
                i += 1
                await asyncio.sleep(0.02)

    fleet: list[asyncio.Task[None]] = []
    try:
        async def ready() -> bool:
            with contextlib.suppress(OSError):
                return (await get(port, "/readyz"))[0] == 200
            return False

        await eventually(ready, timeout=60, what="pheromone serve ready")
        fleet = [asyncio.create_task(job(n)) for n in range(3)]
        first = await eventually(lambda: _loaded(browser, url), timeout=30, what="a page with the fleet's limits")
        length0 = int(cell(first, "length:ingest").replace(",", ""))

        async def changed() -> str | None:
            dom = await browse(browser, "--dump-dom", url)
            moved = int(cell(dom, "length:ingest").replace(",", "")) > length0
            rate = cell(dom, "rate:ingest")
            return dom if moved and rate != "-" and float(rate.replace(",", "")) > 0 else None

        later = await eventually(changed, timeout=60, interval=0.2, what="the ingest length and rate moving")
        assert "model-0" in later and "model-2" in later
        left = re.findall(r"<td class=\"n\">([\d.]+) s</td>", later)
        assert left and all(0 < float(x) <= 900 for x in left), "each limit shows its time left"
        assert later.count("<svg") >= 3, "entropy, budget and effectiveness plots"
        effectiveness = later[later.index('aria-label="pattern effectiveness'):]
        assert "back off" in effectiveness and ("<polyline" in effectiveness or "<circle" in effectiveness)
        shot = tmp_path / "dashboard.png"
        await browse(browser, f"--screenshot={shot}", "--window-size=1200,1400", url)
        assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    finally:
        stop.set()
        await asyncio.gather(*fleet, return_exceptions=True)
        if serve.returncode is None:
            serve.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(30):
                    await serve.wait()
            except TimeoutError:
                serve.kill()
                await serve.wait()
    assert serve.returncode == 0


async def _loaded(browser: str, url: str) -> str | None:
    dom = await browse(browser, "--dump-dom", url)
    return dom if "model-0" in dom and "model-2" in dom else None
