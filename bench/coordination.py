"""Real-time coordination benchmark: pheromone's push path against the reference approach, in the same run.

The reference is seed 000's approach: the same state in a SQLite table (WAL) that each job queries, through a
new connection per call as its store's code does (connect, the WAL pragma, a row factory, the query, commit,
close: `ref_check`). Both run on this machine, in one invocation, with the same workload; every latency is
wall-clock time (`time.time()`, one clock for every process of the host) between two processes.

  visible    report a rate limit in one process -> another process's check answers "limited".
             pheromone: report_rate_limit() -> rate_limit() in an observer process that checks every ~0.2 ms
             (the instrument, not the method). The report reaches the live keys two ways at once: the
             reporter's own fast path (the coordinator's script, one round trip) and the stream the
             coordinator service reads; `visible_parts` times both from the report, with the same clock: until
             the reporter's fast path has applied it, and until a blocking XREAD in the reporter's process sees
             the entry in the stream.
             reference: INSERT + COMMIT -> the observer's check, polling tightly (a check right after the
             other, ~0.2 ms apart, each with a new connection, as a job calling the store in a loop does) and
             every 100 ms (a job polling politely).
  check      one "is this model limited?" call: rate_limit() (one GET) against the reference's call (a new
             connection with the store's set-up per call), a bare new connection and query, and a kept
             connection.
  broadcast  publish_discovery() -> delivered to each of N jobs subscribed in P processes (one reader per
             process; the broadcaster service in its own process). reference: INSERT + COMMIT -> each job's
             next 100 ms poll of the discoveries table.

Targets (issue 4): visible <= 5 ms p99, check <= 1 ms p99, broadcast <= 20 ms p99 to 100 jobs.

    python bench/coordination.py [--reports 200] [--checks 3000] [--discoveries 100] [--jobs 100]
                                 [--procs 2] [--json]
    python bench/coordination.py --quick --json       # small sizes: a smoke run

With --json the last line is one JSON object of the figures (milliseconds).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pheromone.client import Pheromone  # noqa: E402
from pheromone.contracts.streams import GROUP_BROADCASTER, GROUP_COORDINATOR, Keys  # noqa: E402
from pheromone.plumbing.embedded import EmbeddedServer  # noqa: E402

POLL_S = 0.1
"""The reference's poll interval (seed 000's jobs polled the store)."""
SPIN_S = float(os.environ.get("BENCH_SPIN_S", "0.0002"))
"""The pheromone observer's check interval: the measuring instrument's resolution, not part of the method."""

REF_SCHEMA = """
CREATE TABLE IF NOT EXISTS rate_limits (model TEXT NOT NULL, error_code TEXT NOT NULL,
                                        expires_at REAL NOT NULL,
                                        reported_by TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS rate_limits_model ON rate_limits(model, expires_at);
CREATE TABLE IF NOT EXISTS discoveries (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, recorded_at REAL NOT NULL,
                                        expires_at REAL NOT NULL, body TEXT NOT NULL);
"""
REF_CHECK = """
SELECT expires_at, reported_by FROM rate_limits WHERE model = ? AND expires_at > ?
ORDER BY expires_at DESC LIMIT 1
"""
REF_NEW = "SELECT seq, recorded_at FROM discoveries WHERE seq > ? AND expires_at > ? ORDER BY seq"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def ms(values: list[float]) -> dict[str, float]:
    return {
        "p50": round(pct(values, 0.50) * 1000, 3),
        "p99": round(pct(values, 0.99) * 1000, 3),
        "max": round(max(values) * 1000, 3),
        "n": len(values),
    }


def ref_check(db: str, model: str) -> bool:
    """The reference store's check as its code runs it: a new connection set up as its `_get_connection` does
    (timeout, WAL, rows by name), the query, commit, close."""
    conn = sqlite3.connect(db, timeout=30.0)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        row = conn.execute(REF_CHECK, (model, time.time())).fetchone()
        conn.commit()
        return row is not None
    finally:
        conn.close()


def ref_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def client(url: str, prefix: str, tmp: Path, job: str, workspace: str = "bench") -> Pheromone:
    return Pheromone(
        url,
        workspace=workspace,
        job=job,
        prefix=prefix,
        data_dir=tmp,
        spool_dir=tmp / "spool" / workspace / job,
    )


# -- child processes -------------------------------------------------------------------------------------


def observer_main(
    url: str, prefix: str, tmp: str, db: str, reports: int, checks: int, conn: Connection
) -> None:
    """Waits for each report and timestamps when its check first answers "limited"; then times checks."""

    async def run() -> dict[str, Any]:
        c = client(url, prefix, Path(tmp), "observer", "ws-observer")
        await c.open()
        try:
            seen: list[float] = []
            for i in range(reports):
                conn.send(("ready", i))
                while not (await c.rate_limit(f"model-{i}")).active:
                    # Blocking on purpose: yields the CPU to the services, unlike a busy loop.
                    time.sleep(SPIN_S)  # noqa: ASYNC251
                seen.append(time.time())
            conn.send(("seen", seen))
            # Reference: a job calling the store's check in a loop (tightly, then every 100 ms).
            for interval in (SPIN_S, POLL_S):
                ref_seen: list[float] = []
                for i in range(reports):
                    conn.send(("ready", i))
                    while not ref_check(db, f"model-{i}-{interval}"):
                        time.sleep(interval)  # noqa: ASYNC251 - the reference job polls, blocking
                    ref_seen.append(time.time())
                conn.send(("seen", ref_seen))
            ref = ref_connect(Path(db))
            # Check latency: an active and an unknown model, alternately; each method timed in its own loop.
            ours, ref_call, ref_new, ref_kept = [], [], [], []
            for _ in range(100):  # warm up
                await c.rate_limit("model-0")
            for i in range(checks):
                model = "model-0" if i % 2 else "never-limited"
                t = time.perf_counter()
                status = await c.rate_limit(model)
                ours.append(time.perf_counter() - t)
                assert status.active == bool(i % 2)
            for i in range(checks):
                model = f"model-0-{SPIN_S}" if i % 2 else "never-limited"
                t = time.perf_counter()
                limited = ref_check(db, model)
                ref_call.append(time.perf_counter() - t)
                assert limited == bool(i % 2)
            for i in range(checks):
                model = "model-0" if i % 2 else "never-limited"
                t = time.perf_counter()
                fresh = sqlite3.connect(db, timeout=30)
                fresh.execute(REF_CHECK, (model, time.time())).fetchone()
                fresh.close()
                ref_new.append(time.perf_counter() - t)
            for i in range(checks):
                model = "model-0" if i % 2 else "never-limited"
                t = time.perf_counter()
                ref.execute(REF_CHECK, (model, time.time())).fetchone()
                ref_kept.append(time.perf_counter() - t)
            ref.close()
            return {"check": ours, "ref_check": ref_call, "ref_check_new_conn": ref_new,
                    "ref_check_kept_conn": ref_kept}
        finally:
            await c.close()

    conn.send(("checks", asyncio.run(run())))


def subscriber_main(
    url: str,
    prefix: str,
    tmp: str,
    db: str,
    proc: int,
    jobs: int,
    expected: int,
    reference: bool,
    conn: Connection,
) -> None:
    """`jobs` jobs in this process, each receiving `expected` discoveries; sends back every latency."""

    async def ours() -> list[float]:
        clients = [client(url, prefix, Path(tmp), f"sub-{proc}-{j}", f"ws-{j % 5}") for j in range(jobs)]
        for c in clients:
            await c.open()
        subs = [c.subscribe(kinds=["discovery"]) for c in clients]
        hub = clients[0]._hub
        assert hub is not None and all(c._hub is hub for c in clients)  # one reader for the process
        await asyncio.wait_for(hub.caught_up.wait(), 30)
        latencies: list[float] = []

        async def job(sub: Any) -> None:
            got = 0
            async for msg in sub:
                latencies.append(time.time() - msg.body.recorded_at.timestamp())
                got += 1
                if got == expected:
                    return

        conn.send(("ready", proc))
        await asyncio.gather(*(job(s) for s in subs))
        for c in clients:
            await c.close()
        return latencies

    async def polled() -> list[float]:
        latencies: list[float] = []
        conns = [ref_connect(Path(db)) for _ in range(jobs)]

        async def job(ref: sqlite3.Connection) -> None:
            await asyncio.sleep(random.random() * POLL_S)  # jobs started at different moments
            last, got = 0, 0
            while got < expected:
                now = time.time()
                for seq, recorded in ref.execute(REF_NEW, (last, now)).fetchall():
                    latencies.append(now - recorded)
                    last, got = seq, got + 1
                await asyncio.sleep(POLL_S)

        conn.send(("ready", proc))
        await asyncio.gather(*(job(r) for r in conns))
        for r in conns:
            r.close()
        return latencies

    conn.send(("latencies", asyncio.run(polled() if reference else ours())))


# -- the runs ------------------------------------------------------------------------------------------


def spawn(target: Callable[..., None], *args: Any) -> tuple[Any, Connection]:
    parent, child = mp.get_context("spawn").Pipe()
    proc = mp.get_context("spawn").Process(target=target, args=(*args, child), daemon=True)
    proc.start()
    return proc, parent


async def recv(conn: Connection, kind: str, timeout: float = 120.0) -> Any:
    # Waits on the pipe's fd in the event loop, not in a thread: a thread would contend for the GIL with the
    # loop (up to the 5 ms switch interval) and add its own latency to what is measured.
    if not conn.poll():
        loop = asyncio.get_running_loop()
        readable = loop.create_future()
        loop.add_reader(conn.fileno(), lambda: readable.done() or readable.set_result(None))
        try:
            await asyncio.wait_for(readable, timeout)
        except TimeoutError as exc:
            raise TimeoutError(f"no {kind!r} from a bench process within {timeout}s") from exc
        finally:
            loop.remove_reader(conn.fileno())
    got, value = conn.recv()
    if got != kind:
        raise RuntimeError(f"expected {kind!r} from a bench process, got {got!r}")
    return value


async def caught_up(url: str, stream: str, group: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    try:
        for _ in range(3000):
            with contextlib.suppress(Exception):
                groups = {g["name"].decode(): g for g in await r.xinfo_groups(stream)}
                if group in groups and groups[group]["lag"] == 0 and groups[group]["pending"] == 0:
                    return
            await asyncio.sleep(0.01)
    finally:
        await r.aclose()


async def rate_limits(
    url: str, prefix: str, tmp: Path, db: Path, reports: int, checks: int
) -> dict[str, Any]:
    import redis.asyncio as aioredis

    proc, conn = spawn(observer_main, url, prefix, str(tmp), str(db), reports, checks)
    ref = ref_connect(db)
    c = client(url, prefix, tmp, "reporter", "ws-reporter")
    await c.open()
    in_stream: dict[str, float] = {}
    applied: dict[str, float] = {}

    async def stream_watch() -> None:
        """Timestamps (this host's clock) each report's entry as a blocking XREAD sees it arrive."""
        r = aioredis.Redis.from_url(url)
        last = b"$"
        try:
            while not watching.is_set():
                for _, entries in await r.xread({c.keys.ratelimits: last}, block=100):
                    now = time.time()
                    for eid, fields in entries:
                        in_stream.setdefault(json.loads(fields[b"e"])["payload"]["model"], now)
                        last = eid
        finally:
            await r.aclose()

    watching = asyncio.Event()  # set: stop watching
    watcher = asyncio.create_task(stream_watch())
    await asyncio.sleep(0.1)  # the XREAD is waiting
    try:
        sent: list[float] = []
        for i in range(reports):
            await recv(conn, "ready")
            await asyncio.sleep(random.uniform(0.002, 0.01))  # the observer is checking by now
            before = set(c._fast_paths)
            sent.append(time.time())
            c.report_rate_limit(f"model-{i}", "429", 600.0)
            for task in c._fast_paths - before:  # the reporter's own application of it (one round trip)
                task.add_done_callback(lambda _, m=f"model-{i}": applied.setdefault(m, time.time()))
        seen = await recv(conn, "seen")
        ref_visible: dict[str, list[float]] = {}
        for label, interval in (("ref_visible_tight", SPIN_S), ("ref_visible", POLL_S)):
            ref_sent: list[float] = []
            for i in range(reports):
                await recv(conn, "ready")
                await asyncio.sleep(random.uniform(0.0, interval) + (0.002 if interval == SPIN_S else 0.0))
                ref_sent.append(time.time())
                ref.execute("INSERT INTO rate_limits VALUES (?, '429', ?, 'reporter')",
                            (f"model-{i}-{interval}", time.time() + 600))
            ref_visible[label] = [b - a for a, b in zip(ref_sent, await recv(conn, "seen"), strict=True)]
        result = await recv(conn, "checks", timeout=300)
    finally:
        watching.set()
        await watcher
        await c.close()
        ref.close()
        proc.join(10)
    models = [f"model-{i}" for i in range(reports)]
    return {
        "visible": [b - a for a, b in zip(sent, seen, strict=True)],
        "to_applied": [applied[m] - a for m, a in zip(models, sent, strict=True) if m in applied],
        "to_stream": [in_stream[m] - a for m, a in zip(models, sent, strict=True) if m in in_stream],
        **ref_visible,
        **result,
    }


async def broadcast(
    url: str, prefix: str, tmp: Path, db: Path, discoveries: int, jobs: int, procs: int, reference: bool
) -> list[float]:
    per = [jobs // procs + (1 if i < jobs % procs else 0) for i in range(procs)]
    children = [
        spawn(subscriber_main, url, prefix, str(tmp), str(db), i, n, discoveries, reference)
        for i, n in enumerate(per)
    ]
    for _, conn in children:
        await recv(conn, "ready", timeout=120)
    ref = ref_connect(db)
    c = client(url, prefix, tmp, "publisher", "ws-publisher")
    await c.open()
    try:
        for i in range(discoveries):
            if reference:
                now = time.time()
                ref.execute(
                    "INSERT INTO discoveries (id, recorded_at, expires_at, body) VALUES (?, ?, ?, '{}')",
                    (f"d{i}", now, now + 300),
                )
            else:
                c.publish_discovery("bench", f"discovery {i}", 0.8, context_tags=["bench"])
            await asyncio.sleep(random.uniform(0.005, 0.02))
        latencies: list[float] = []
        for _, conn in children:
            latencies.extend(await recv(conn, "latencies", timeout=180))
    finally:
        await c.close()
        ref.close()
        for proc, _ in children:
            proc.join(10)
    assert len(latencies) == discoveries * jobs, (len(latencies), discoveries * jobs)
    return latencies


async def main_async(a: argparse.Namespace, url: str, tmp: Path) -> dict[str, Any]:
    prefix = f"bench{os.getpid()}"
    db = tmp / "reference.db"
    with ref_connect(db) as conn:
        conn.executescript(REF_SCHEMA)
    pheromone = Path(sys.executable).parent / "pheromone"
    services = subprocess.Popen(  # noqa: ASYNC220 - started once, before anything is timed
        [
            str(pheromone),
            "serve",
            "--only",
            "coordinator",
            "--only",
            "broadcaster",
            "--redis-url",
            url,
            "--prefix",
            prefix,
            "--data-dir",
            str(tmp / "services"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
    )
    keys = Keys(prefix)
    try:
        # The services are up once their groups exist.
        await caught_up(url, keys.ratelimits, GROUP_COORDINATOR)
        await caught_up(url, keys.discoveries, GROUP_BROADCASTER)
        limits = await rate_limits(url, prefix, tmp, db, a.reports, a.checks)
        fanout = await broadcast(url, prefix, tmp, db, a.discoveries, a.jobs, a.procs, reference=False)
        ref_fanout = await broadcast(url, prefix, tmp, db, a.discoveries, a.jobs, a.procs, reference=True)
    finally:
        services.terminate()
        try:
            services.wait(10)
        except subprocess.TimeoutExpired:
            services.kill()
    return {
        "visible": ms(limits["visible"]),
        "ref_visible": ms(limits["ref_visible"]),
        "ref_visible_tight": ms(limits["ref_visible_tight"]),
        "visible_parts": {
            "report_to_applied": ms(limits["to_applied"]),
            "report_to_stream": ms(limits["to_stream"]),
        },
        "check": ms(limits["check"]),
        "ref_check": ms(limits["ref_check"]),
        "ref_check_new_conn": ms(limits["ref_check_new_conn"]),
        "ref_check_kept_conn": ms(limits["ref_check_kept_conn"]),
        "broadcast": ms(fanout),
        "ref_broadcast": ms(ref_fanout),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=200, help="rate-limit reports (visibility samples)")
    parser.add_argument("--checks", type=int, default=3000, help="rate-limit checks timed")
    parser.add_argument("--discoveries", type=int, default=100, help="discoveries published")
    parser.add_argument("--jobs", type=int, default=100, help="subscribed jobs")
    parser.add_argument("--procs", type=int, default=2, help="processes the subscribed jobs run in")
    parser.add_argument("--redis-url", default=None, help="use this server instead of a private embedded one")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    a = parser.parse_args()
    if a.quick:
        a.reports, a.checks, a.discoveries, a.jobs = min(a.reports, 20), min(a.checks, 300), min(a.discoveries, 10), \
            min(a.jobs, 10)
    with tempfile.TemporaryDirectory(prefix="pheromone-bench-") as t:
        tmp = Path(t)
        if a.redis_url:
            figures = asyncio.run(main_async(a, a.redis_url, tmp))
        else:
            with EmbeddedServer(tmp / "redis", persist=False) as server:
                figures = asyncio.run(main_async(a, server.url, tmp))
    targets = {"visible_p99_ms": 5.0, "check_p99_ms": 1.0, "broadcast_p99_ms": 20.0}
    figures["targets_met"] = {
        "visible": figures["visible"]["p99"] <= targets["visible_p99_ms"],
        "check": figures["check"]["p99"] <= targets["check_p99_ms"],
        "broadcast": figures["broadcast"]["p99"] <= targets["broadcast_p99_ms"],
    }
    figures["config"] = {k: getattr(a, k) for k in ("reports", "checks", "discoveries", "jobs", "procs")}
    rows = [
        ("rate limit visible, reference polls 100 ms", "visible", "ref_visible"),
        ("rate limit visible, reference polls tightly", "visible", "ref_visible_tight"),
        ("rate limit check (reference: its call)", "check", "ref_check"),
        ("rate limit check (bare new connection)", "check", "ref_check_new_conn"),
        ("rate limit check (kept connection)", "check", "ref_check_kept_conn"),
        (f"discovery -> each of {a.jobs} jobs", "broadcast", "ref_broadcast"),
    ]
    print(f"{'ms':<46}{'pheromone p50':>14}{'p99':>9}{'reference p50':>16}{'p99':>9}")
    for label, ours, ref in rows:
        o, r = figures[ours], figures[ref]
        print(f"{label:<46}{o['p50']:>14.3f}{o['p99']:>9.3f}{r['p50']:>16.3f}{r['p99']:>9.3f}")
    parts = figures["visible_parts"]
    print(
        f"  visible p50 {figures['visible']['p50']:.3f}: report -> applied by the reporter's fast path p50 "
        f"{parts['report_to_applied']['p50']:.3f}, report -> in the stream p50 {parts['report_to_stream']['p50']:.3f}"
        " (both paths run at once; one clock)"
    )
    print("targets met:", ", ".join(f"{k}={'yes' if v else 'NO'}" for k, v in figures["targets_met"].items()))
    if a.json:
        print(json.dumps(figures, separators=(",", ":")))


if __name__ == "__main__":
    main()
