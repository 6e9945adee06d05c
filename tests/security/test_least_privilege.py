"""Least privilege: every service, the client and the CLI run as an ACL user limited to `PHEROMONE_COMMANDS`
on the keys `{prefix}:*`, and the server's ACL LOG records no denial. docs/SECURITY.md prints the same list.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr

from pheromone import Pheromone
from pheromone.contracts import EventQuery
from pheromone.contracts.streams import FIELD, Keys
from pheromone.plumbing.connection import settings_url
from pheromone.services.runtime import Runtime, service_names
from tests.cli.helpers import Cli
from tests.security.conftest import SecureServer
from tests.services.helpers import (
    applied,
    discovery,
    envelope,
    execution,
    ledger_count,
    observed,
    recovery,
)
from tests.support import eventually, settings

PHEROMONE_COMMANDS = (
    # connection set-up (redis-py): HELLO/AUTH are always allowed; CLIENT SETINFO names the library; a
    # runtime names its connections (CLIENT SETNAME) so status and health see a killed one go at once
    "ping", "client|setinfo", "client|setname",
    # streams: producers, consumer groups, retrier, dead letters, trimming, broadcast readers
    "xadd", "xreadgroup", "xread", "xack", "xclaim", "xpending", "xgroup|create", "xinfo|groups", "xinfo|stream",
    "xinfo|consumers", "xgroup|delconsumer", "xtrim", "xrange", "xrevrange", "xdel", "xlen",
    # queries (request/reply lists), heartbeats, counters, locks, live rate limits
    "rpush", "lpush", "blpop", "expire", "set", "get", "mget", "del", "incrby", "exists",
    "zadd", "zrange", "zrangebyscore", "zremrangebyscore", "pexpiretime", "pttl",
    # scripts (the rate-limit and lock scripts) and transactions (dead letter + ack)
    "eval", "evalsha", "script|load", "multi", "exec", "time",
    # the consolidator's failure-cluster counters
    "hincrby", "hgetall", "hget", "hset", "hdel",
)
"""The commands pheromone needs (derived with the ACL LOG of this test: a missing one is a logged denial)."""

LEAST_USER = "pheromone-least"
LEAST_PASSWORD = "least-Pw-MARK"


def acl_rules(prefix: str) -> list[str]:
    return ["on", "resetpass", f">{LEAST_PASSWORD}", "resetkeys", f"~{{{prefix}}}:*", "resetchannels", "-@all",
            *(f"+{c}" for c in PHEROMONE_COMMANDS)]


@pytest.fixture
def least_user(secure_server: SecureServer, prefix: str) -> str:
    admin = secure_server.admin()
    try:
        admin.execute_command("ACL", "SETUSER", LEAST_USER, "reset", *acl_rules(prefix))
        admin.execute_command("ACL", "LOG", "RESET")
    finally:
        admin.close()
    return secure_server.url(user=LEAST_USER, password=LEAST_PASSWORD)


def _denials(secure_server: SecureServer) -> list[str]:
    admin = secure_server.admin()
    try:
        entries = admin.execute_command("ACL", "LOG", "100")
    finally:
        admin.close()
    out = []
    for entry in entries:
        fields = dict(zip(entry[::2], entry[1::2], strict=True)) if isinstance(entry, list) else entry
        fields = {(k.decode() if isinstance(k, bytes) else k): v for k, v in fields.items()}
        if fields.get("username") in (LEAST_USER, LEAST_USER.encode()):
            out.append(f"{fields.get('reason')!r} {fields.get('object')!r}")
    return out


async def test_every_service_and_the_client_run_with_only_the_listed_commands(
    tmp_path: Path, prefix: str, secure_server: SecureServer, least_user: str
) -> None:
    s = settings(tmp_path, prefix, redis_url=SecretStr(least_user), trim_interval_s=0.2, ingest_retention_s=0.01)
    url = settings_url(s)
    assert url is not None
    runtime = Runtime(s, url, service_names())
    await runtime.start()
    try:
        async with Pheromone(url, workspace="ws-least", job="job-least", prefix=prefix, data_dir=tmp_path,
                             close_timeout=1.0) as ph:
            sub = ph.subscribe(include_own=True)
            records = [execution(), observed("least"), applied("least", True), recovery(), discovery("least")]
            for record in records:
                ph.emit(record)
            ph.report_rate_limit("model-least", "429", 60.0)
            await ph.flush()
            await eventually(lambda: ledger_count(s.store_path) == len(records) + 1, what="every event stored")
            assert len(await ph.events(EventQuery(workspace="ws-least"))) == len(records) + 1
            assert (await ph.rate_limit("model-least")).active
            assert len(await ph.rate_limits()) == 1
            kinds = {(await sub.get(timeout=15)).kind for _ in range(2)}
            assert kinds == {"discovery", "rate_limit"}
            # the upkeep loops ran under the same user: heartbeats (watchdog) and trimming of acked entries
            admin = secure_server.admin()
            try:
                await eventually(lambda: admin.exists(f"{{{prefix}}}:alive:store:{s.consumer_name}"), what="heartbeat")
                await eventually(lambda: admin.xlen(Keys(prefix).ingest) == 0, what="ingest trimmed")
            finally:
                admin.close()
    finally:
        await runtime.stop()
    assert _denials(secure_server) == []


def test_the_cli_runs_with_only_the_listed_commands(
    cli: Cli, secure_server: SecureServer, least_user: str, prefix: str
) -> None:
    env = {"PHEROMONE_REDIS_URL": least_user, "PHEROMONE_PREFIX": prefix}
    for args in (("dead", "list", "--json"), ("dead", "replay", "--all", "--json"), ("ratelimits", "--json")):
        run = cli(*args, env=env)
        assert run.code == 0, str(run)
    assert _denials(secure_server) == []


def test_the_least_user_cannot_leave_its_prefix_or_administer(
    secure_server: SecureServer, least_user: str, prefix: str
) -> None:
    client = redis.Redis.from_url(least_user)
    try:
        client.set(f"{{{prefix}}}:mine", "1")
        for attempt in (lambda: client.get("other-installation:key"), lambda: client.flushall(),
                        lambda: client.config_get("*"), lambda: client.keys("*"),
                        lambda: client.execute_command("ACL", "LIST")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                attempt()
    finally:
        client.close()


async def test_a_command_the_acl_user_lacks_is_one_sentence_in_the_log(
    tmp_path: Path, prefix: str, secure_server: SecureServer, caplog: pytest.LogCaptureFixture
) -> None:
    """A deployment whose ACL predates a command pheromone now needs: the loop that needs it says which user
    lacks a permission, on which server, in one line without a traceback, and the trimming it shares a loop
    with goes on."""
    admin = secure_server.admin()
    try:
        rules = [r for r in acl_rules(prefix) if r != "+xinfo|consumers"]
        admin.execute_command("ACL", "SETUSER", LEAST_USER, "reset", *rules)
    finally:
        admin.close()
    s = settings(tmp_path, prefix, redis_url=SecretStr(secure_server.url(user=LEAST_USER, password=LEAST_PASSWORD)),
                 trim_interval_s=0.1, ingest_retention_s=0.01)
    url = settings_url(s)
    assert url is not None
    runtime = Runtime(s, url, ["store"])
    await runtime.start()
    try:
        def reaper_lines() -> list[logging.LogRecord]:
            return [r for r in caplog.records if r.getMessage().startswith("reaper: ")]

        [line, *_] = await eventually(reaper_lines, what="the reaper's warning")
        assert line.getMessage().startswith(
            f"reaper: Redis at {secure_server.host_port}: the ACL user '{LEAST_USER}' lacks a permission "
            "pheromone needs: ")
        assert "xinfo|consumers" in line.getMessage() and LEAST_PASSWORD not in line.getMessage()
        assert line.exc_info is None
        admin = secure_server.admin()
        try:
            admin.xadd(Keys(prefix).ingest, {FIELD: envelope(execution()).model_dump_json()})
            await eventually(lambda: ledger_count(s.store_path) == 1, what="the event stored")
            await eventually(lambda: admin.xlen(Keys(prefix).ingest) == 0, what="ingest trimmed all the same")
        finally:
            admin.close()
    finally:
        await runtime.stop()
