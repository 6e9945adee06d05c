"""A minimal HTTP/1.1 server on the event loop: GET and HEAD of fixed paths, one request per connection.

What `pheromone serve --http-port` needs (probes, `/metrics`, a JSON document, a page) is a handful of GET
routes answered from memory or with a few Redis calls, so this is asyncio streams and nothing else: no
framework, no thread. Each handler returns a `Response`; a handler that raises answers 500 with one line and
is logged. Requests are bounded: the head must arrive within `HEAD_TIMEOUT_S` and fit in `MAX_HEAD_BYTES`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 10.0
MAX_HEAD_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Request:
    path: str
    query: Mapping[str, list[str]]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, text: str) -> Response:
        return cls(status, (text.rstrip("\n") + "\n").encode())


Handler = Callable[[Request], Awaitable[Response]]


class HttpServer:
    """Serves `routes` (path -> handler) on addr:port; port 0 picks a free one (`port` tells which)."""

    def __init__(self, routes: Mapping[str, Handler], addr: str, port: int) -> None:
        self.routes = dict(routes)
        self.addr, self._port = addr, port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, self.addr, self._port, limit=MAX_HEAD_BYTES)

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            response, head_only = await self._respond(reader)
            status = HTTPStatus(response.status)
            lines = [f"HTTP/1.1 {status.value} {status.phrase}", f"Content-Type: {response.content_type}",
                     f"Content-Length: {len(response.body)}", "Connection: close", "Cache-Control: no-store",
                     *(f"{k}: {v}" for k, v in response.headers.items())]
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            if not head_only:
                writer.write(response.body)
            await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client went away or never finished its request: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[Response, bool]:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return Response.text(431, "request head too large"), False
        except asyncio.IncompleteReadError as exc:
            head = exc.partial
        if len(head) > MAX_HEAD_BYTES:
            return Response.text(431, "request head too large"), False
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return Response.text(400, "bad request line"), False
        method, target = parts[0], urlsplit(parts[1])
        if method not in ("GET", "HEAD"):
            return Response(405, b"only GET and HEAD\n", headers={"Allow": "GET, HEAD"}), False
        handler = self.routes.get(target.path)
        if handler is None:
            return Response.text(404, f"no such page: {target.path}; try {', '.join(sorted(self.routes))}"), \
                method == "HEAD"
        try:
            return await handler(Request(target.path, parse_qs(target.query))), method == "HEAD"
        except Exception as exc:
            log.exception("GET %s failed", target.path)
            return Response.text(500, f"{type(exc).__name__}: {exc}"), method == "HEAD"
