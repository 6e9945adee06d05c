"""What the reliability tests share: every service as its own `pheromone serve --only NAME` process, a fleet
of paced producers, and read-only looks at memory, streams and the store.

Nothing here waits a fixed time for a condition (`eventually()` polls to a deadline); the producers' sleeps
pace a steady rate, they do not wait for anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis.asyncio as aioredis

from pheromone import Pheromone
from pheromone.contracts import Payload
from pheromone.contracts.streams import Keys
from pheromone.services.runtime import service_names
from pheromone.services.store.db import Store
from pheromone.simulate import SimJob
from tests.services import helpers as h
from tests.support import eventually

PHEROMONE = Path(sys.executable).parent / "pheromone"
SERVICES = service_names()

SERVICE_ENV = {
    # Quick retries, watchdog and reads, so a killed or restarted service is taken over within a second.
    "PHEROMONE_CLAIM_IDLE_MS": "1000",
    "PHEROMONE_GROUP_CHECK_S": "0.5",
    "PHEROMONE_POLL_MS": "50",
    "PHEROMONE_BATCH_SIZE": "500",
    # Short retention, so the trimmer acts many times within a test (stream memory must stay flat).
    "PHEROMONE_TRIM_INTERVAL_S": "1",
    "PHEROMONE_INGEST_RETENTION_S": "5",
    "PHEROMONE_TTL_STREAM_RETENTION_S": "5",
    "PHEROMONE_BROADCAST_RETENTION_S": "5",
    # The entropy service evaluates often enough to write events of its own during a test.
    "PHEROMONE_COORDINATION__ENTROPY_CHECK_INTERVAL_S": "5",
}
"""Settings of every service process (environment, as `compose.yaml` passes them)."""


class ServiceFleet:
    """Service processes, one per name, each with its log file; restarted processes get a new pid (and so a
    new consumer name, `<host>-<pid>`), as a crashed container's replacement would."""

    def __init__(self, data_dir: Path, redis_url: str, prefix: str, env: Mapping[str, str] | None = None) -> None:
        self.data_dir, self.redis_url, self.prefix = data_dir, redis_url, prefix
        self.db = data_dir / "store.db"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("PHEROMONE_")}
        self.env = {**clean, **SERVICE_ENV, **(env or {})}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.every: list[subprocess.Popen[bytes]] = []
        self.starts: Counter[str] = Counter()

    def log(self, name: str) -> Path:
        return self.data_dir / f"{name}.log"

    def start(self, name: str) -> subprocess.Popen[bytes]:
        argv = [str(PHEROMONE), "serve", "--only", name, "--redis-url", self.redis_url,
                "--data-dir", str(self.data_dir), "--prefix", self.prefix]
        with self.log(name).open("ab") as out:
            proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        self.procs[name] = proc
        self.every.append(proc)
        self.starts[name] += 1
        return proc

    async def start_all(self, redis: aioredis.Redis, names: Iterable[str] = SERVICES) -> None:
        # The store first: it creates and migrates the SQLite file the query and entropy services open.
        names = list(names)
        for name in sorted(names, key=lambda n: n != "store"):
            self.start(name)
            if name == "store":
                await self.ready(redis, name)
        for name in names:
            await self.ready(redis, name)

    def consumer(self, name: str) -> str:
        """The current process's consumer name in its groups (`Settings.consumer_name`, per worker)."""
        return f"{name}-{os.uname().nodename}-{self.procs[name].pid}"

    def heartbeat(self, name: str) -> str:
        return f"{Keys(self.prefix).heartbeat(name)}:{os.uname().nodename}-{self.procs[name].pid}"

    async def ready(self, redis: aioredis.Redis, name: str, timeout: float = 30.0) -> None:
        """Wait for the current process's heartbeat: its groups exist, its subscribers and loops run."""
        proc, key = self.procs[name], self.heartbeat(name)

        async def alive() -> bool:
            assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{self.tail(name)}"
            return bool(await redis.exists(key))

        await eventually(alive, timeout=timeout, interval=0.05, what=f"{name} (pid {proc.pid}) ready")

    def signal(self, name: str, sig: signal.Signals) -> int:
        """Send `sig` to the service and wait for it to exit; returns its exit status."""
        proc = self.procs[name]
        proc.send_signal(sig)
        return proc.wait(timeout=30)

    def rss_bytes(self, name: str) -> int:
        """Resident set size of the service's current process (Linux /proc)."""
        for line in Path(f"/proc/{self.procs[name].pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no VmRSS for {name}")

    def running(self) -> dict[str, bool]:
        return {name: proc.poll() is None for name, proc in self.procs.items()}

    def tail(self, name: str, lines: int = 40) -> str:
        path = self.log(name)
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def tails(self) -> str:
        return "\n".join(f"--- {name}\n{self.tail(name, 15)}" for name in self.procs)

    def stop_all(self) -> dict[str, int]:
        """SIGTERM every running service (a graceful stop), SIGKILL whatever is still up after 30 s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        codes = {}
        for name, proc in self.procs.items():
            try:
                codes[name] = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                codes[name] = proc.wait(timeout=10)
        return codes

    def cleanup(self) -> None:
        for proc in self.every:
            if proc.poll() is None:
                proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=10)


# -- producers --------------------------------------------------------------------------------------------


@dataclass
class Producer:
    """One job: a client and a simulated job emitting one sheet's records per tick at a steady rate."""

    client: Pheromone
    sim: SimJob
    emitted: list[str] = field(default_factory=list)
    types: Counter[str] = field(default_factory=Counter)
    applied_successes: int = 0

    def emit(self, records: Sequence[Payload]) -> None:
        for record in records:
            self.emitted.append(self.client.emit(record))
            self.types[record.type] += 1
            if record.type == "pattern_applied" and record.success:  # type: ignore[union-attr]
                self.applied_successes += 1

    async def run(self, sheets_per_s: float, stop: asyncio.Event) -> None:
        """Emit at `sheets_per_s` until `stop` is set. Paced on a schedule, so a slow tick is caught up."""
        period = 1.0 / sheets_per_s
        due = time.monotonic()
        while not stop.is_set():
            self.emit(self.sim.step())
            due += period
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)


async def open_producers(
    into: list[Producer], redis_url: str, prefix: str, spool_root: Path, workspaces: int, per_workspace: int,
    seed: int, tag: str = "ws", **client_kw: object,
) -> list[Producer]:
    """Open `workspaces x per_workspace` producers (workspaces `{tag}-<n>`), appending each to `into` (the
    fixture's list, which closes them) and returning `into`."""
    rng = random.Random(seed)
    producers = into
    for w in range(workspaces):
        for j in range(per_workspace):
            workspace = f"{tag}-{w}"
            job = f"{workspace}.job-{j}"
            client = Pheromone(redis_url, workspace=workspace, job=job, prefix=prefix, data_dir=spool_root,
                               spool_dir=spool_root / job, close_timeout=2.0, **client_kw)  # type: ignore[arg-type]
            await client.open()
            producers.append(Producer(client, SimJob(workspace, job, random.Random(rng.random()))))
    return producers


async def close_producers(producers: Sequence[Producer], timeout: float = 60.0) -> None:
    """Flush every producer (nothing left in memory or spool), then close it."""
    await asyncio.gather(*(p.client.flush(timeout=timeout) for p in producers))
    for p in producers:
        await p.client.close()


# -- the streams and the store, read-only -----------------------------------------------------------------


async def used_memory(redis: aioredis.Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def group_streams(redis: aioredis.Redis, prefix: str) -> list[str]:
    """Every stream under `prefix` that some consumer group reads (whatever services exist)."""
    streams = [key.decode() async for key in redis.scan_iter(match=f"{{{prefix}}}:*", _type="STREAM")]
    return sorted([s for s in streams if await redis.xinfo_groups(s)])


async def stream_lengths(redis: aioredis.Redis, prefix: str) -> dict[str, int]:
    keys = Keys(prefix)
    streams = {*await group_streams(redis, prefix), keys.broadcast, keys.dead}
    return {s.removeprefix(f"{{{prefix}}}:"): int(await redis.xlen(s)) for s in sorted(streams)}


async def group_state(redis: aioredis.Redis, prefix: str) -> dict[tuple[str, str], tuple[int, int | None]]:
    """(stream, group) -> (pending, lag) for every group of every stream under `prefix`."""
    out: dict[tuple[str, str], tuple[int, int | None]] = {}
    for stream in await group_streams(redis, prefix):
        for info in await redis.xinfo_groups(stream):
            out[(stream.removeprefix(f"{{{prefix}}}:"), info["name"].decode())] = (int(info["pending"]), info["lag"])
    return out


async def all_groups_drained(redis: aioredis.Redis, prefix: str) -> bool:
    """Every group has read every entry of its stream and acked it: XPENDING 0 and lag 0 everywhere."""
    state = await group_state(redis, prefix)
    return bool(state) and all(p == 0 and lag == 0 for p, lag in state.values())


@dataclass(frozen=True)
class ConsumerState:
    stream: str
    group: str
    pending: int
    inactive_ms: int
    """Since its last read that delivered entries (or claim); -1 if it never read any."""


async def consumer_states(redis: aioredis.Redis, prefix: str, consumer: str) -> list[ConsumerState]:
    """Where the named consumer (a service process: `{service}-{host}-{pid}`) is a member, in every group."""
    out = []
    for stream in await group_streams(redis, prefix):
        for info in await redis.xinfo_groups(stream):
            for c in await redis.xinfo_consumers(stream, info["name"]):
                if c["name"].decode() == consumer:
                    out.append(ConsumerState(stream, info["name"].decode(), int(c["pending"]),
                                             int(c.get("inactive", c["idle"]))))
    return out


def producer_events(db: Path, producers: Sequence[Producer]) -> list[tuple[str, str]]:
    """(event id, workspace) of every ledger event the producers emitted (services' own events left out)."""
    jobs = sorted({p.client.job for p in producers})
    sql = f"SELECT event_id, workspace FROM ledger WHERE job IN ({','.join('?' * len(jobs))})"
    return [(str(i), str(w)) for i, w in h.query(db, sql, *jobs)]


async def rebuild_matches(db: Path) -> tuple[str, str, int]:
    """(checksum before, checksum after, events replayed) of a rebuild of the projections from the ledger."""
    async with Store(db) as store:
        before = await store.checksum()
        replayed = await store.rebuild()
        after = await store.checksum()
    return before, after, replayed
