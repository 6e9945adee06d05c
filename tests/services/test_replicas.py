"""Store replicas keep the stream's order by design: one of them writes (it holds the writer lease), the others
wait as standbys, and when the writer is SIGKILLed in the middle of a batch a standby takes over, applies what
the dead one had read, and only then reads on.

With 2 and then 3 `pheromone serve --only store` processes and a stream of lifecycle events sent back to back
(200 sessions of five transitions, sessions whose edits go through review, patterns moved through their
lifecycle) mixed with the demo's (four simulated jobs), the writer is killed while blocked in its transaction
with a batch read: afterwards nothing is dead-lettered, every session is completed, and the projections are
exactly those of one writer applying the stream in order (same checksum, same ledger order), which a rebuild
of the ledger reproduces. On SQLite and on PostgreSQL, where the replicas share nothing but Redis and the
database, as on several hosts.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from itertools import pairwise
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from pheromone.contracts import Envelope, PatternObserved, PatternTransitioned, Payload
from pheromone.contracts.records import pattern_id
from pheromone.contracts.sessions import Edit, EditOp, EditPillar, EditTransitioned, SessionTransitioned
from pheromone.contracts.streams import GROUP_STORE, Keys
from pheromone.services.settings import StoreLocation
from pheromone.services.store.location import is_postgres, open_backend
from pheromone.simulate import SimJob
from tests.services import helpers as h
from tests.support import store_env

pytestmark = pytest.mark.slow

SESSIONS, SCOPES = 200, 20
PATH = ("triggered", "harvesting", "diagnosing", "planning", "completed")
REVIEWED = 30
REVIEW_PATH = ("triggered", "harvesting", "diagnosing", "planning", "gating", "executing", "awaiting_review")
PATTERNS = 40
PATTERN_PATH = ("pending", "validated", "quarantined", "pending", "retired")
FLEET_JOBS, FLEET_EACH = 4, 250
ENV = {"PHEROMONE_CLAIM_IDLE_MS": "500", "PHEROMONE_GROUP_CHECK_S": "0.2", "PHEROMONE_HEARTBEAT_TTL_S": "1",
       "PHEROMONE_BATCH_SIZE": "100", "PHEROMONE_POLL_MS": "20"}
"""A small batch, so the stream takes many; a one-second liveness TTL, so a standby takes over quickly."""


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both store backends."""
    param: str = request.param
    return param


def session_events() -> list[Envelope]:
    """200 sessions, ten after one another in each of 20 scopes, sent as older producers send them (no
    `from_status`): only the order of application can get them right."""
    lanes: list[list[Envelope]] = [[] for _ in range(SCOPES)]
    for i in range(SESSIONS):
        scope = f"ws-{i % SCOPES}"
        lanes[i % SCOPES] += [
            h.envelope(SessionTransitioned(session_id=f"s-{i:03d}", scope=scope, to_status=to,  # type: ignore[arg-type]
                                           trigger="on_demand" if to == "triggered" else None), workspace=scope)
            for to in PATH]
    return merge(lanes)


def review_events() -> list[Envelope]:
    """Sessions that stage two edits each; review approves one and rejects the other, then completes it."""
    lanes: list[list[Envelope]] = []
    for i in range(REVIEWED):
        scope, sid = f"rv-{i}", f"r-{i:03d}"
        keep, drop = (Edit(id=f"e-{i}-{n}", pillar=EditPillar.WAIT_POLICY, op=EditOp.SET_WAIT_POLICY,
                           workspace=scope, target=f"E{n}", seconds=10.0 * (n + 1)) for n in range(2))
        moves: list[Payload] = [SessionTransitioned(session_id=sid, scope=scope, to_status=to, from_status=prev,  # type: ignore[arg-type]
                                                    trigger="on_demand" if prev is None else None)
                                for prev, to in pairwise((None, *REVIEW_PATH[:6]))]
        moves += [EditTransitioned(session_id=sid, edit_id=e.id, to_status="staged", edit=e) for e in (keep, drop)]  # type: ignore[arg-type]
        moves += [SessionTransitioned(session_id=sid, scope=scope, to_status="awaiting_review",  # type: ignore[arg-type]
                                      from_status="executing"),
                  EditTransitioned(session_id=sid, edit_id=keep.id, to_status="applied", from_status="staged",  # type: ignore[arg-type]
                                   actor="reviewer"),
                  EditTransitioned(session_id=sid, edit_id=drop.id, to_status="rejected", from_status="staged",  # type: ignore[arg-type]
                                   actor="reviewer"),
                  SessionTransitioned(session_id=sid, scope=scope, to_status="completed",  # type: ignore[arg-type]
                                      from_status="awaiting_review")]
        lanes.append([h.envelope(m, workspace=scope) for m in moves])
    return merge(lanes)


def pattern_events() -> list[Envelope]:
    """Patterns observed, then moved by operators through the lifecycle, a revisit included."""
    lanes: list[list[Envelope]] = []
    for i in range(PATTERNS):
        name = f"pattern {i}"
        pid = pattern_id("retry_pattern", name)
        lane: list[Payload] = [PatternObserved(pattern_type="retry_pattern", pattern_name=name, description="d")]
        lane += [PatternTransitioned(pattern_id=pid, to_status=to, from_status=prev, reason="op", actor="op")  # type: ignore[arg-type]
                 for prev, to in pairwise(PATTERN_PATH)]
        lanes.append([h.envelope(p) for p in lane])
    return merge(lanes)


def fleet_events() -> list[Envelope]:
    """The demo's mix: four simulated jobs in two workspaces, every family a job emits and the services' own
    (`h.mixed_records`), each job's events in its order."""
    rng = random.Random(15)
    lanes = []
    for i in range(FLEET_JOBS):
        sim = SimJob(f"fleet-ws-{i % 2}", f"fleet-{i}", random.Random(rng.random()))
        lanes.append([h.envelope(p, workspace=sim.workspace, job=sim.job) for p in h.mixed_records(sim, FLEET_EACH)])
    return merge(lanes)


def merge(lanes: list[list[Envelope]]) -> list[Envelope]:
    """Round-robin over the lanes, each lane's order kept: an entity's events far apart in the stream, so a
    batch boundary (and the kill) lands between two events of many entities."""
    out: list[Envelope] = []
    position = [0] * len(lanes)
    while any(p < len(lane) for p, lane in zip(position, lanes, strict=True)):
        for n, lane in enumerate(lanes):
            if position[n] < len(lane):
                out.append(lane[position[n]])
                position[n] += 1
    return out


class Replicas:
    """Store processes in one group, each with its own log; the lease names the one that writes.

    On SQLite they share the data directory's store file, as replicas on one host do. On PostgreSQL each has a
    data directory of its own and shares nothing with the others but Redis and the database, as replicas on
    several hosts do."""

    def __init__(self, tmp_path: Path, redis_url: str, prefix: str, store: StoreLocation | None = None) -> None:
        self.argv = [str(Path(sys.executable).parent / "pheromone"), "serve", "--only", "store",
                     "--redis-url", redis_url, "--prefix", prefix]
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PHEROMONE_")}
        self.store = store or tmp_path / "store.db"
        self.env = {**clean, **ENV, **store_env(self.store)}
        self.tmp_path, self.keys = tmp_path, Keys(prefix)
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self) -> int:
        data_dir = self.tmp_path / (f"host-{len(self.procs)}" if is_postgres(self.store) else "")
        data_dir.mkdir(exist_ok=True)
        with (self.tmp_path / f"store-{len(self.procs)}.log").open("ab") as out:
            proc = subprocess.Popen([*self.argv, "--data-dir", str(data_dir)], env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.procs[proc.pid] = proc
        return proc.pid

    def consumer(self, pid: int) -> str:
        return f"store-{os.uname().nodename}-{pid}"

    async def ready(self, redis: aioredis.Redis) -> None:
        async def beating() -> bool:
            for pid, proc in self.procs.items():
                assert proc.poll() is None, f"store {pid} exited:\n{self.tails()}"
            keys = [self.keys.heartbeat(f"store:{os.uname().nodename}-{pid}") for pid in self.procs]
            return bool(await redis.exists(*keys) == len(keys) and await self.writer(redis))

        await h.eventually(beating, timeout=30, what="every replica beating, one of them the writer")

    async def writer(self, redis: aioredis.Redis) -> int | None:
        holder = await redis.get(self.keys.writer("store"))
        return next((pid for pid in self.procs if holder == self.consumer(pid).encode()), None)

    async def reading(self, redis: aioredis.Redis, pid: int) -> int:
        consumers = await redis.xinfo_consumers(self.keys.ingest, GROUP_STORE)
        return sum(c["pending"] for c in consumers if c["name"] == self.consumer(pid).encode())

    def kill(self, pid: int) -> None:
        proc = self.procs[pid]
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL

    def stop_all(self) -> dict[int, int | None]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return {pid: proc.wait(timeout=30) for pid, proc in self.procs.items()}

    def tails(self) -> str:
        logs = sorted(self.tmp_path.glob("store-*.log"))
        return "\n".join(f"--- {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-15:]) for p in logs)

    def cleanup(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


@pytest.fixture
def replicas(tmp_path: Path, redis_url: str, prefix: str, store_backend: str,
             request: pytest.FixtureRequest) -> Iterator[Replicas]:
    url = request.getfixturevalue("pg_url") if store_backend == "postgres" else None
    r = Replicas(tmp_path / "data", redis_url, prefix, url)
    r.tmp_path.mkdir()
    try:
        yield r
    finally:
        r.cleanup()


@asynccontextmanager
async def write_lock(db: StoreLocation) -> AsyncIterator[None]:
    """The store's write lock held by this test (BEGIN EXCLUSIVE; on PostgreSQL the ledger locked against
    writes, reads still allowed): the writer blocks inside its transaction with the batch it read unacked, the
    moment to kill it made certain instead of hoped for."""
    if is_postgres(db):
        import psycopg

        with psycopg.connect(str(db)) as pg:  # one transaction, rolled back on leaving
            pg.execute("LOCK TABLE ledger IN EXCLUSIVE MODE")
            yield
            pg.rollback()
        return
    conn = sqlite3.connect(db, isolation_level=None, timeout=30)
    try:
        conn.execute("BEGIN EXCLUSIVE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


async def single_writer(tmp_path: Path, events: list[Envelope]) -> str:
    """The projections' checksum after one writer applies the stream in its order, batch by batch."""
    async with open_backend(tmp_path / "control.db") as store:
        for start in range(0, len(events), 100):
            chunk = events[start : start + 100]
            assert (await store.apply([(e, e.model_dump_json()) for e in chunk])).rejected == []
        return await store.checksum()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("count", [2, 3])
async def test_replicas_apply_lifecycles_as_one_writer_would_across_a_writer_kill(
    count: int, replicas: Replicas, redis: aioredis.Redis, prefix: str, tmp_path: Path
) -> None:
    keys, db = Keys(prefix), replicas.store
    events = merge([session_events(), review_events(), pattern_events(), fleet_events()])
    expected = await single_writer(tmp_path, events)
    for _ in range(count):
        replicas.start()
    await replicas.ready(redis)
    first = await replicas.writer(redis)
    assert first is not None
    half = len(events) // 2
    await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events[: half // 2]])
    await h.eventually(lambda: h.ledger_count(db) > 0, timeout=30, what="the writer under way")

    async with write_lock(db):
        # Added under the lock, so the writer reads them and cannot commit them: on a fast machine it would
        # otherwise have applied everything before the lock, holding nothing to orphan.
        await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events[half // 2 : half]])
        await h.eventually(lambda: replicas.reading(redis, first), timeout=30, what="the writer holding a batch")
        orphaned = await replicas.reading(redis, first)
        replicas.kill(first)
    await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in events[half:]])

    try:
        await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), timeout=60, what="every entry applied")
        second = await replicas.writer(redis)
        assert second not in (None, first)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{replicas.tails()}") from None
    assert orphaned > 0
    assert await h.dead_letters(redis, prefix) == []
    statuses = h.query(db, "SELECT status, COUNT(*) FROM session_state GROUP BY 1")
    assert statuses == [("completed", SESSIONS + REVIEWED)]
    assert h.query(db, "SELECT status, COUNT(*) FROM session_edits GROUP BY 1 ORDER BY 1") == [
        ("applied", REVIEWED), ("rejected", REVIEWED)]
    status = dict(h.query(db, "SELECT id, quarantine_status FROM patterns"))
    assert {status[pattern_id("retry_pattern", f"pattern {i}")] for i in range(PATTERNS)} == {"retired"}
    assert h.count(db, "executions") > 0 and h.count(db, "pattern_applications") > 0
    assert h.query(db, "SELECT event_id FROM ledger ORDER BY seq") == [(e.event_id,) for e in events]
    codes = replicas.stop_all()
    assert codes == {first: -signal.SIGKILL, **{pid: 0 for pid in codes if pid != first}}, replicas.tails()
    async with open_backend(db) as store:
        assert await store.checksum() == expected  # a single writer's projections, to the byte
        await store.rebuild()
        assert await store.checksum() == expected
