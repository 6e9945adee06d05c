"""Secrets never appear in logs, `--json` output or error messages.

The ACL user's password contains the marker `MARK`; every run below uses it (or a wrong one that also holds the
marker) and the marker must appear nowhere in what was printed or logged.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from pheromone import Pheromone
from pheromone.plumbing.connection import settings_url
from pheromone.services.runtime import Runtime
from pheromone.services.store.embedded_pg import EmbeddedPostgres
from tests.cli.helpers import PHEROMONE, Cli
from tests.security.conftest import USER, USER_PASSWORD, SecureServer
from tests.services.helpers import execution, ledger_count
from tests.support import eventually, settings

MARK = "MARK"
assert MARK in USER_PASSWORD


def test_serve_startup_and_shutdown_lines_hide_the_password(
    cli_env: dict[str, str], secure_server: SecureServer, tmp_path: Path
) -> None:
    env = {**cli_env, "PHEROMONE_REDIS_URL": secure_server.url(), "PHEROMONE_PREFIX": "secrets-serve"}
    proc = subprocess.Popen([str(PHEROMONE), "serve", "--verbose"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        seen = ""
        assert proc.stderr is not None
        while "serving" not in seen and time.monotonic() < deadline and proc.poll() is None:
            seen += proc.stderr.readline()
        proc.send_signal(signal.SIGTERM)
        out, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    text = out + seen + rest
    assert proc.returncode == 0, text
    assert "services started" in text and f"redis redis://{USER}:***@{secure_server.host_port}/0" in text, text
    assert "services stopped" in text
    assert MARK not in text


def test_cli_json_outputs_hide_the_password(cli: Cli, secure_server: SecureServer) -> None:
    env = {"PHEROMONE_REDIS_URL": secure_server.url()}
    for args in (("dead", "list", "--json"), ("ratelimits", "--json"),
                 ("demo", "--json", "--seconds", "1", "--workspaces", "1", "--jobs", "1", "--rate", "20")):
        run = cli(*args, env=env, timeout=120)
        # demo exits 1 when its own bookkeeping disagrees (not a security matter); it must still have run
        assert run.code == 0 or (args[0] == "demo" and json.loads(run.out)["emitted"] > 0), str(run)
        assert MARK not in run.out + run.err, str(run)
    # the same, with the password given apart from the URL
    env = {"PHEROMONE_REDIS_URL": f"redis://{secure_server.host_port}/0", "PHEROMONE_REDIS_USERNAME": USER,
           "PHEROMONE_REDIS_PASSWORD": USER_PASSWORD}
    run = cli("ratelimits", "--json", env=env)
    assert run.code == 0 and MARK not in run.out + run.err, str(run)


@pytest.mark.parametrize(
    "url",
    ["redis://:pa/ss-MARK@127.0.0.1:1/0", "redis://u:p#MARK@127.0.0.1:1/0", "redis://:MARK@127.0.0.1:port/0",
     "redis://:MARK@127.0.0.1:1/0?bogus=1", "redis://:MARK@127.0.0.1:1/0", "ftp://:MARK@127.0.0.1:1/0"],
)
def test_cli_errors_for_bad_urls_hide_the_password(cli: Cli, url: str) -> None:
    """Unparsable, unknown option, unreachable (port 1), wrong scheme: one line each, no marker."""
    run = cli("dead", "list", "--redis-url", url, timeout=30)
    run.assert_clean_failure()
    assert MARK not in run.out + run.err, str(run)


async def test_service_and_client_logs_hide_the_password(
    tmp_path: Path, prefix: str, secure_server: SecureServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    s = settings(tmp_path, prefix, redis_url=SecretStr(f"redis://{secure_server.host_port}/0"),
                 redis_username=USER, redis_password=SecretStr(USER_PASSWORD))
    url = settings_url(s)
    assert url is not None
    runtime = Runtime(s, url, ("store", "query"))
    await runtime.start()
    try:
        async with Pheromone(url, workspace="ws", job="j", prefix=prefix, data_dir=tmp_path,
                             close_timeout=1.0) as ph:
            ph.emit(execution())
            await ph.flush()
            await eventually(lambda: ledger_count(s.store_path) == 1, what="the event in the ledger")
        # and a client whose password is wrong: its send failures are logged (at DEBUG) without it
        async with Pheromone(secure_server.url(password="wrong-MARK"), workspace="ws", job="j", prefix=prefix,
                             data_dir=tmp_path, spool_dir=tmp_path / "spool2", close_timeout=0.2) as bad:
            bad.emit(execution())
            await eventually(lambda: bad.stats.send_failures > 0, what="a refused send")
    finally:
        await runtime.stop()
    assert "services started" in caplog.text
    assert MARK not in caplog.text
    assert "MARK" not in repr(s) and "MARK" not in str(s.model_dump())
    assert os.environ.get("PHEROMONE_REDIS_PASSWORD") is None  # nothing above leaked into the environment


async def test_the_store_url_password_stays_out_of_settings_and_logs(
    tmp_path: Path, prefix: str, redis_url: str, pg_server: EmbeddedPostgres, caplog: pytest.LogCaptureFixture
) -> None:
    # A URL with a password (the suite's server trusts loopback, so any password is accepted): the services
    # run on it and log as usual.
    db = pg_server.create_database(f"s{prefix}")
    caplog.set_level(logging.DEBUG)
    url = db.replace("postgres@", f"postgres:{MARK}@")
    s = settings(tmp_path, prefix, store_url=url)
    runtime = Runtime(s, redis_url, ("store", "query"))
    await runtime.start()
    try:
        async with Pheromone(redis_url, workspace="ws", job="j", prefix=prefix, data_dir=tmp_path,
                             close_timeout=1.0) as ph:
            ph.emit(execution())
            await ph.flush()
            await eventually(lambda: ledger_count(url) == 1, what="the event in the PostgreSQL ledger")
    finally:
        await runtime.stop()
    assert MARK not in caplog.text
    assert MARK not in repr(s) and MARK not in str(s.model_dump())
