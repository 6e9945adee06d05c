"""The HTTP side of `pheromone serve --http-port` (docs/OPERATIONS.md), on the runtime's event loop:

    /healthz         200 while the process's event loop answers (liveness: nothing else is asked)
    /readyz          200 when `Runtime.problems()` is empty, else 503 with one problem per line (in memory)
    /metrics         the runtime's Prometheus registry, in the text format
    /asyncapi.json   the AsyncAPI document (`services.asyncapi`), made once at start
    /                the dashboard (`services.web.dashboard`); /dashboard.json: its data

It starts before the services, so a probe sees "not ready" rather than a refused connection while they start.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from importlib.metadata import version

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.exceptions import RedisError

from pheromone.errors import QueryError
from pheromone.services import asyncapi
from pheromone.services.http import HttpServer, Request, Response
from pheromone.services.runtime import Runtime
from pheromone.services.web.dashboard import Dashboard, render

log = logging.getLogger(__name__)
MAX_REFRESH_S = 3_600


class HttpSide:
    def __init__(self, runtime: Runtime) -> None:
        s = runtime.settings
        self.runtime = runtime
        self.dashboard = Dashboard(runtime.redis, runtime.keys)
        self._asyncapi = json.dumps(asyncapi.document(s.prefix, runtime.redis_url, version("pheromone")),
                                    indent=2).encode()
        self.server = HttpServer({
            "/healthz": self._healthz, "/readyz": self._readyz, "/metrics": self._metrics,
            "/asyncapi.json": self._asyncapi_json, "/": self._page, "/dashboard.json": self._data,
        }, s.http_addr, s.http_port)
        self._sampler: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        return self.server.port

    async def start(self) -> None:
        await self.server.start()
        self._sampler = asyncio.create_task(self._sample(), name="dashboard-sampler")

    async def close(self) -> None:
        if (task := self._sampler) is not None:
            # As in Runtime.stop: Python 3.11's wait_for (redis-py's timeouts) can swallow a cancellation, so
            # cancel until the task has ended.
            while not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=0.1)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            self._sampler = None
        await self.server.close()

    async def _sample(self) -> None:
        while True:
            try:
                await self.dashboard.sample()
            except (RedisError, OSError, QueryError) as exc:
                log.debug("dashboard sample: %s", exc)
            except Exception:
                log.exception("dashboard sample failed; continuing")
            await asyncio.sleep(self.runtime.settings.metrics_interval_s)

    async def _healthz(self, request: Request) -> Response:
        return Response.text(200, "ok")

    async def _readyz(self, request: Request) -> Response:
        problems = self.runtime.problems()
        if problems:
            return Response.text(503, "\n".join(f"not ready: {p}" for p in problems))
        return Response.text(200, f"ready: {', '.join(self.runtime.names)}")

    async def _metrics(self, request: Request) -> Response:
        return Response(200, generate_latest(self.runtime.metrics.registry), CONTENT_TYPE_LATEST)

    async def _asyncapi_json(self, request: Request) -> Response:
        return Response(200, self._asyncapi, "application/json")

    async def _data(self, request: Request) -> Response:
        return Response(200, json.dumps(await self.dashboard.snapshot(), default=str).encode(), "application/json")

    async def _page(self, request: Request) -> Response:
        raw = request.query.get("refresh", ["5"])[0]
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_REFRESH_S:
            return Response.text(400, f"refresh must be whole seconds from 1 to {MAX_REFRESH_S}, not {raw!r}")
        page = render(await self.dashboard.snapshot(), int(raw))
        return Response(200, page.encode(), "text/html; charset=utf-8")
