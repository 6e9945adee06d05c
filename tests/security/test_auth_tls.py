"""Redis AUTH/ACL users and TLS from settings, against a real server (and a TLS front for TLS).

Each path that opens a connection is exercised: the services' Redis client and FastStream broker (Runtime),
the client library (emit, queries, subscriptions) and the CLI.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from pheromone import Pheromone
from pheromone.contracts import EventQuery
from pheromone.contracts.streams import Keys
from pheromone.errors import QueryError
from pheromone.plumbing.connection import ConnectionSetupError, check, client_options, redact, settings_url
from pheromone.services.runtime import Runtime
from pheromone.services.settings import Settings
from tests.cli.helpers import Cli
from tests.security.conftest import USER, USER_PASSWORD, Certificates, SecureServer, TlsProxy
from tests.services.helpers import discovery, execution, ledger_count
from tests.support import eventually, settings


async def _round_trip(s: Settings, url: str, tmp_path: Path, prefix: str, workspace: str) -> dict[str, Any]:
    """Services (store, query, broadcaster) and a client on `url`: events emitted land in the ledger, a query
    answers, a subscription receives a discovery. Returns what was seen."""
    runtime = Runtime(s, url, ("store", "query", "broadcaster"))
    await runtime.start()
    try:
        async with Pheromone(url, workspace=workspace, job="job-1", prefix=prefix, data_dir=tmp_path,
                             spool_dir=tmp_path / "spool", close_timeout=1.0) as ph:
            sub = ph.subscribe(kinds=["discovery"], include_own=True)
            ids = {ph.emit(execution(workspace_hash=workspace, job_hash=f"j{i}")) for i in range(20)}
            ph.emit(discovery("tls discovery"))
            await ph.flush()
            await eventually(lambda: ledger_count(s.store_path) == 21, what="21 events in the ledger")
            events = await ph.events(EventQuery(workspace=workspace, kinds=["execution"], limit=100))
            message = await sub.get(timeout=15)
            stats = ph.stats
    finally:
        await runtime.stop()
    return {"ids": ids, "events": events, "message": message, "stats": stats}


async def test_services_and_client_authenticate_as_an_acl_user_from_separate_settings(
    tmp_path: Path, prefix: str, secure_server: SecureServer
) -> None:
    s = settings(tmp_path, prefix, redis_url=SecretStr(f"redis://{secure_server.host_port}/0"),
                 redis_username=USER, redis_password=SecretStr(USER_PASSWORD))
    url = settings_url(s)
    assert url is not None and USER_PASSWORD not in url  # percent-encoded, never raw in a URL
    seen = await _round_trip(s, url, tmp_path, prefix, "ws-acl")
    assert {e.event_id for e in seen["events"]} == seen["ids"]
    assert seen["message"].kind == "discovery"
    assert seen["stats"].spooled == 0  # every event went straight to Redis: the login worked from the start


async def test_client_reads_credentials_and_tls_from_the_environment(
    tmp_path: Path, prefix: str, secure_server: SecureServer, tls_proxy: TlsProxy, certificates: Certificates,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PHEROMONE_REDIS_URL", f"rediss://127.0.0.1:{tls_proxy.port}/0")
    monkeypatch.setenv("PHEROMONE_REDIS_USERNAME", USER)
    monkeypatch.setenv("PHEROMONE_REDIS_PASSWORD", USER_PASSWORD)
    monkeypatch.setenv("PHEROMONE_REDIS_TLS_CA_FILE", str(certificates.ca_file))
    async with Pheromone(workspace="ws-env", job="job-env", prefix=prefix, data_dir=tmp_path,
                         close_timeout=1.0) as ph:
        ph.emit(execution(workspace_hash="ws-env"))
        await ph.flush(timeout=15)
        limited = await ph.rate_limit("some-model")  # a plain read on the same connection
    assert ph.stats.sent == 1 and ph.stats.spooled == 0
    assert not limited.active
    assert tls_proxy.handshakes >= 1
    admin = secure_server.admin()
    try:
        assert admin.xlen(Keys(prefix).ingest) == 1
    finally:
        admin.close()


async def test_services_and_client_over_tls_with_the_ca_from_settings(
    tmp_path: Path, prefix: str, tls_proxy: TlsProxy, certificates: Certificates
) -> None:
    s = settings(tmp_path, prefix, redis_url=SecretStr(f"rediss://{USER}@127.0.0.1:{tls_proxy.port}/0"),
                 redis_password=SecretStr(USER_PASSWORD), redis_tls_ca_file=certificates.ca_file)
    url = settings_url(s)
    assert url is not None and url.startswith("rediss://") and "ssl_ca_certs=" in url
    seen = await _round_trip(s, url, tmp_path, prefix, "ws-tls")
    assert {e.event_id for e in seen["events"]} == seen["ids"]
    assert seen["message"].kind == "discovery"
    # Every byte went through the TLS front: runtime client, broker, client, subscription reader.
    assert tls_proxy.handshakes >= 4


@pytest.mark.parametrize("ca", ["other", "system"])
async def test_a_wrong_or_absent_ca_is_a_certificate_error_not_a_hang(
    tls_proxy: TlsProxy, certificates: Certificates, ca: str
) -> None:
    query = f"?ssl_ca_certs={certificates.other_ca_file}" if ca == "other" else ""
    url = f"rediss://{USER}:{USER_PASSWORD.replace('#', '%23').replace('?', '%3F').replace('/', '%2F')}" \
          f"@127.0.0.1:{tls_proxy.port}/0{query}"
    with pytest.raises(ConnectionSetupError) as caught:
        await asyncio.wait_for(check(url, timeout=5), 15)
    message = str(caught.value)
    assert "certificate" in message and f"127.0.0.1:{tls_proxy.port}" in message
    assert "MARK" not in message


def test_cli_over_tls_and_its_certificate_errors(
    cli: Cli, tls_proxy: TlsProxy, certificates: Certificates
) -> None:
    env = {"PHEROMONE_REDIS_URL": f"rediss://127.0.0.1:{tls_proxy.port}/0",
           "PHEROMONE_REDIS_USERNAME": USER, "PHEROMONE_REDIS_PASSWORD": USER_PASSWORD}
    ok = cli("dead", "list", "--json", env={**env, "PHEROMONE_REDIS_TLS_CA_FILE": str(certificates.ca_file)})
    assert ok.code == 0 and ok.out.strip() == "[]", str(ok)
    for extra in ({"PHEROMONE_REDIS_TLS_CA_FILE": str(certificates.other_ca_file)}, {}):
        run = cli("ratelimits", "--json", env={**env, **extra}, timeout=30)
        run.assert_clean_failure("certificate", f"127.0.0.1:{tls_proxy.port}")
        assert "MARK" not in run.out + run.err


def test_cli_wrong_credentials_are_one_line_without_the_password(cli: Cli, secure_server: SecureServer) -> None:
    wrong = secure_server.url(password="wrong-MARK-pw")
    for args in (("dead", "list", "--json"), ("ratelimits", "--json"), ("serve", "--only", "store"),
                 ("demo", "--json", "--seconds", "1")):
        run = cli(*args, "--redis-url", wrong, timeout=30)
        run.assert_clean_failure("refused the credentials", repr(USER))
        assert "MARK" not in run.out + run.err
    missing = cli("dead", "list", "--redis-url", f"redis://{secure_server.host_port}/0")
    missing.assert_clean_failure("requires authentication")
    right = cli("dead", "list", "--json", env={"PHEROMONE_REDIS_URL": secure_server.url()})
    assert right.code == 0 and right.out.strip() == "[]", str(right)


async def test_client_queries_with_wrong_credentials_fail_without_the_password(
    tmp_path: Path, prefix: str, secure_server: SecureServer
) -> None:
    async with Pheromone(secure_server.url(password="wrong-MARK-pw"), workspace="ws", job="j", prefix=prefix,
                         data_dir=tmp_path, close_timeout=0.2) as ph:
        ph.emit(execution())  # never raises: it is spooled while Redis refuses us
        with pytest.raises(QueryError) as caught:
            await ph.events(EventQuery(), timeout=5)
    assert "MARK" not in str(caught.value) and "AuthenticationError" in str(caught.value)
    assert ph.stats.sent == 0 and ph.stats.spooled == 1  # kept for when the credentials are fixed


# -- settings: bad combinations are precise errors that never quote a secret ---------------------------------


@pytest.mark.parametrize(
    ("fields", "needle"),
    [
        ({"redis_password": "x-MARK"}, "redis_password set without redis_url"),
        ({"redis_url": "redis://h:1", "redis_tls_ca_file": "CA"}, "need(s) a rediss:// redis_url"),
        ({"redis_url": "redis://h:1", "redis_tls_verify": False}, "need(s) a rediss:// redis_url"),
        ({"redis_url": "rediss://h:1", "redis_tls_key_file": "CA"}, "redis_tls_key_file needs redis_tls_cert_file"),
        ({"redis_url": "rediss://h:1", "redis_tls_verify": False, "redis_tls_ca_file": "CA"}, "contradicts"),
        ({"redis_url": "redis://:a-MARK@h:1", "redis_password": "b-MARK"}, "password given twice"),
        ({"redis_url": "redis://u:a-MARK@h:1", "redis_username": "v"}, "user name given twice"),
        ({"redis_url": "redis://h:1", "redis_username": "v"}, "redis_username needs a password"),
        ({"redis_url": "rediss://h:1", "redis_tls_ca_file": "/no/such/ca.pem"}, "redis_tls_ca_file"),
    ],
)
def test_bad_setting_combinations_are_named(
    fields: dict[str, Any], needle: str, certificates: Certificates
) -> None:
    values = {k: (str(certificates.ca_file) if v == "CA" else v) for k, v in fields.items()}
    with pytest.raises(ValidationError) as caught:
        Settings(**values)
    text = str(caught.value)
    assert needle in text
    assert "MARK" not in text


def test_settings_url_merges_and_encodes(certificates: Certificates) -> None:
    s = Settings(redis_url=SecretStr("rediss://cache.example:6380/2"), redis_username="job user",
                 redis_password=SecretStr(USER_PASSWORD), redis_tls_cert_file=certificates.ca_file)
    url = settings_url(s)
    assert url is not None
    options = client_options(url)
    assert (options["username"], options["password"]) == ("job user", USER_PASSWORD)
    assert (options["host"], options["port"], options["db"]) == ("cache.example", 6380, 2)
    assert options["ssl_certfile"] == str(certificates.ca_file.resolve())
    assert "MARK" not in redact(url) and "job%20user:***@" in redact(url)
    unverified = settings_url(Settings(redis_url=SecretStr("rediss://h:1"), redis_tls_verify=False))
    assert unverified is not None
    assert client_options(unverified)["ssl_check_hostname"] is False
    assert settings_url(Settings(redis_url=None)) is None


@pytest.mark.parametrize(
    "url",
    ["redis://:pa/ss-MARK@h:1/0", "redis://:p#ss-MARK@h:1/0", "redis://u:MARK?x@h:1", "redis://:MARK@h:port",
     "redis://:MARK@h:1/0?bogus_option=1", "redis://:MARK@h:1/0?ssl_ca_certs=/x"],
)
def test_unusable_urls_are_refused_without_the_password(url: str) -> None:
    with pytest.raises(ConnectionSetupError) as caught:
        client_options(url)
    assert "MARK" not in str(caught.value)
    assert "MARK" not in redact(url)


def test_a_password_query_parameter_is_redacted_too() -> None:
    url = "redis://h:1/0?password=MARK&db=3"
    assert client_options(url)["password"] == "MARK"
    assert redact(url) == "redis://h:1/0?password=***&db=3"
