"""Fixtures for the security tests: a server that requires a password, ACL users, a TLS front, certificates.

The bundled Valkey is built without TLS, so `tls_proxy` puts a TLS-terminating proxy of ours (asyncio
`start_server(ssl=...)` in a thread of its own, forwarding bytes to the plain port) in front of it, with a
throwaway CA and server certificate from `trustme`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
import trustme

from pheromone.plumbing.embedded import EmbeddedServer
from tests.cli.conftest import cli, cli_env  # noqa: F401 - the CLI fixtures, for the CLI tests here

ADMIN_PASSWORD = "admin-Pw-0x5EC"
USER = "pheromone-job"
USER_PASSWORD = "p@ss:w/rd#MARK?&="
"""A password with every character a URL treats specially: it must be percent-encoded in a URL."""


@dataclass
class SecureServer:
    """A private server whose default user needs ADMIN_PASSWORD, with the ACL user USER (all commands)."""

    server: EmbeddedServer

    @property
    def host_port(self) -> str:
        return f"{self.server.host}:{self.server.port}"

    def url(self, user: str | None = USER, password: str = USER_PASSWORD, scheme: str = "redis") -> str:
        creds = f"{quote(user, safe='') if user else ''}:{quote(password, safe='')}@"
        return f"{scheme}://{creds}{self.host_port}/0"

    def admin(self) -> redis.Redis:
        return redis.Redis(host=self.server.host, port=self.server.port, password=ADMIN_PASSWORD)


@pytest.fixture(scope="session")
def secure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureServer]:
    server = EmbeddedServer(tmp_path_factory.mktemp("secure-redis"), persist=False)
    server.start()
    plain = redis.Redis(host=server.host, port=server.port)
    try:
        plain.execute_command("ACL", "SETUSER", USER, "on", "resetpass", f">{USER_PASSWORD}", "~*", "&*",
                              "+@all")
        plain.execute_command("ACL", "SETUSER", "default", "on", "resetpass", f">{ADMIN_PASSWORD}")
    finally:
        plain.close()
    try:
        yield SecureServer(server)
    finally:
        admin = SecureServer(server).admin()
        try:  # back to no password, so the server's own graceful SHUTDOWN (no auth) works
            admin.execute_command("ACL", "SETUSER", "default", "nopass")
        finally:
            admin.close()
        server.stop()


@dataclass
class Certificates:
    ca_file: Path
    other_ca_file: Path
    """A CA that did not sign the server's certificate."""
    server_context: ssl.SSLContext


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    root = tmp_path_factory.mktemp("tls")
    ca, other = trustme.CA(), trustme.CA()
    ca.cert_pem.write_to_path(str(root / "ca.pem"))
    other.cert_pem.write_to_path(str(root / "other-ca.pem"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return Certificates(root / "ca.pem", root / "other-ca.pem", context)


class TlsProxy:
    """TLS on `port`, plain bytes to `target`: a TLS-terminating front for a server built without TLS."""

    def __init__(self, target: tuple[str, int], context: ssl.SSLContext) -> None:
        self.target, self.context = target, context
        self.port = 0
        self.handshakes = 0
        """Connections that completed the TLS handshake and were forwarded."""
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="tls-proxy", daemon=True)

    def start(self) -> None:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("TLS proxy did not start")

    def stop(self) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())
        self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        writers: set[asyncio.StreamWriter] = set()
        tasks: set[asyncio.Task[None]] = set()

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, ConnectionError, ssl.SSLError):
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            with contextlib.suppress(OSError, RuntimeError):
                writer.close()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.add(writer)
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                writer.close()
                return
            writers.add(up_writer)
            self.handshakes += 1
            both = [asyncio.ensure_future(pipe(reader, up_writer)), asyncio.ensure_future(pipe(up_reader, writer))]
            tasks.update(both)
            await asyncio.wait(both)

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=self.context)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        await self._stop.wait()
        server.close()
        for writer in writers:
            with contextlib.suppress(Exception):
                writer.close()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        await server.wait_closed()


@pytest.fixture
def tls_proxy(secure_server: SecureServer, certificates: Certificates) -> Iterator[TlsProxy]:
    proxy = TlsProxy((secure_server.server.host, secure_server.server.port), certificates.server_context)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
