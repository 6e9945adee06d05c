"""End-to-end ingest benchmark: emit() -> committed in the ledger and projections.

Runs, in one invocation and on one private Valkey server:
  1. pheromone's path with 1, 4 and 16 concurrent producers (asyncio tasks, each with its own client): the
     store service runs in its own process (`pheromone serve --only store`), as in production;
  2. with one producer, every service in one process (`pheromone serve`, as `pheromone demo` runs them):
     the store group shares its process with the entropy and consolidator groups, which read the same
     ingest stream (`--no-all-in-one` skips it; it is not counted in the best figure);
  3. the baseline: the same workload through a naive single-message FastStream consumer (one subscriber,
     no batching) that commits each event in its own transaction.
It prints events/s for each, the ratio of the best pheromone figure to the naive one, and emit() latency
p50/p99 (time spent inside emit(), measured per call), and first a machine reference (the CPU time of the
store's envelope validation on this machine, now), so that runs on different days can be compared. With
--json the last line is one JSON object.

    python bench/ingest.py [--events 60000] [--naive-events 10000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contracts import Payload  # noqa: E402
from pheromone.client import Pheromone  # noqa: E402
from pheromone.simulate import fleet  # noqa: E402
from services.embedded import EmbeddedServer  # noqa: E402


def records(n: int, producers: int) -> list[list[Payload]]:
    """A realistic mix (see pheromone/simulate.py), pre-built so only emit() is timed."""
    sims = fleet(max(1, producers // 4), 4 if producers >= 4 else producers, seed=11)
    per: list[list[Payload]] = [[] for _ in range(producers)]
    i = 0
    while sum(len(p) for p in per) < n:
        sim = sims[i % len(sims)]
        per[i % producers].extend(sim.step())
        i += 1
    total = 0
    for p in per:
        del p[max(0, (n // producers)) :]
        total += len(p)
    return per


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


async def wait_for(db: Path, expected: int, timeout: float) -> float:
    """When the ledger holds `expected` events: polled by the cheap last sequence number, confirmed by a count
    (sequence numbers can have gaps, never more events than their highest)."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if ledger_last_seq(db) >= expected and ledger_count(db) >= expected:
            return time.perf_counter()
        await asyncio.sleep(0.02)
    raise TimeoutError(f"only {ledger_count(db)}/{expected} events stored after {timeout}s")


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


async def wait_ready(url: str, prefix: str, group: str, timeout: float = 20.0) -> None:
    import redis.asyncio as aioredis

    r = aioredis.Redis.from_url(url)
    deadline = time.perf_counter() + timeout
    try:
        while time.perf_counter() < deadline:
            try:
                groups = await r.xinfo_groups(f"{prefix}:ingest")
                if any(g["name"].decode() == group and g["consumers"] for g in groups):
                    return
            except Exception:
                pass
            await asyncio.sleep(0.05)
    finally:
        await r.aclose()
    raise TimeoutError("worker did not start")


async def produce(url: str, prefix: str, tmp: Path, work: list[list[Payload]], latencies: list[int]) -> float:
    clients = [Pheromone(url, workspace=f"ws-{i % 4}", job=f"job-{i}", prefix=prefix, data_dir=tmp,
                         spool_dir=tmp / "spool" / f"{prefix}-{i}", batch_size=1000, buffer_size=200_000)
               for i in range(len(work))]
    for c in clients:
        await c.open()
    t0 = time.perf_counter()

    async def run(client: Pheromone, items: list[Payload]) -> None:
        perf = time.perf_counter_ns
        for k, rec in enumerate(items):
            t = perf()
            client.emit(rec)
            latencies.append(perf() - t)
            if k % 200 == 199:
                await asyncio.sleep(0)  # a job does other work between emits; let the flusher run

    await asyncio.gather(*(run(c, items) for c, items in zip(clients, work, strict=True)))
    for c in clients:
        await c.flush(timeout=120)
    for c in clients:
        await c.close()
    return t0


async def pheromone_run(
    url: str, tmp: Path, producers: int, n: int, latencies: list[int], *, all_in_one: bool = False
) -> float:
    prefix = f"bench-p{producers}{'-all' if all_in_one else ''}"
    db = tmp / f"{prefix}.db"
    proc = start_worker(
        ["-m", "pheromone.cli", "serve", *([] if all_in_one else ["--only", "store"]), "--redis-url", url,
         "--db", str(db), "--prefix", prefix, "--data-dir", str(tmp)],
        {"PHEROMONE_BATCH_SIZE": "1000"},
    )
    try:
        await wait_ready(url, prefix, "store")
        work = records(n, producers)
        expected = sum(len(w) for w in work)
        t0 = await produce(url, prefix, tmp, work, latencies)
        t1 = await wait_for(db, expected, timeout=300)
        return expected / (t1 - t0)
    finally:
        stop_worker(proc)


async def naive_run(url: str, tmp: Path, n: int) -> float:
    prefix = "bench-naive"
    db = tmp / f"{prefix}.db"
    proc = start_worker(["bench/naive_worker.py", url, prefix, str(db)], {})
    try:
        await wait_ready(url, prefix, "naive")
        work = records(n, 4)
        expected = sum(len(w) for w in work)
        t0 = await produce(url, prefix, tmp, work, [])
        t1 = await wait_for(db, expected, timeout=600)
        return expected / (t1 - t0)
    finally:
        stop_worker(proc)


def machine_reference_us(n: int = 2_000, rounds: int = 5) -> float:
    """This machine's speed at the store's hottest code, measured in the same run: CPU microseconds per
    `parse_envelope` of the fleet's mix, the best of `rounds`. Shared machines differ from day to day (the
    same commit ran this benchmark at 23k and at 12.5k events/s on two days; bench/RESULTS.md), so figures
    from different runs compare only beside this one."""
    from contracts import Envelope, parse_envelope

    raws = [Envelope(workspace="ws-0", job="job-0", payload=rec).model_dump_json().encode()
            for rec in records(n, 1)[0]]
    best = float("inf")
    for _ in range(rounds):
        c0 = time.process_time()
        for raw in raws:
            parse_envelope(raw)
        best = min(best, time.process_time() - c0)
    return best / len(raws) * 1e6


def pct(values: list[int], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] / 1000 if values else 0.0


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60_000, help="events per pheromone run")
    ap.add_argument("--naive-events", type=int, default=10_000, help="events for the naive baseline")
    ap.add_argument("--producers", default="1,4,16")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--all-in-one", action=argparse.BooleanOptionalAction, default=True,
                    help="also run every service in one process (`pheromone serve`, as the demo does)")
    a = ap.parse_args()
    reference = machine_reference_us()
    print(f"machine reference: parse_envelope {reference:.2f} us CPU per event (lower is a faster machine)",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="pheromone-bench-") as d:
        tmp = Path(d)
        server = EmbeddedServer(tmp / "redis", persist=False)
        server.start()
        try:
            figures: dict[str, float] = {}
            latencies: list[int] = []
            for p in [int(x) for x in a.producers.split(",")]:
                figures[f"events_per_s_{p}p"] = await pheromone_run(server.url, tmp, p, a.events, latencies)
                print(f"pheromone, {p:>2} producer(s): {figures[f'events_per_s_{p}p']:>9,.0f} events/s", flush=True)
            if a.all_in_one:
                figures["all_in_one"] = await pheromone_run(server.url, tmp, 1, a.events, [], all_in_one=True)
                print(f"pheromone serve, every service in one process, 1 producer: {figures['all_in_one']:>9,.0f} "
                      "events/s", flush=True)
            naive = await naive_run(server.url, tmp, a.naive_events)
            print(f"naive single-message consumer: {naive:>9,.0f} events/s", flush=True)
        finally:
            server.stop()
    best = max(v for k, v in figures.items() if k.startswith("events_per_s_"))
    result = {
        **{k if k.startswith("events_per_s_") else f"{k}_events_per_s": round(v) for k, v in figures.items()},
        "events_per_s": round(best),
        "naive_events_per_s": round(naive),
        "ratio": round(best / naive, 2),
        "emit_p50_us": round(pct(latencies, 0.50), 2),
        "emit_p99_us": round(pct(latencies, 0.99), 2),
        "emit_calls": len(latencies),
        "machine_reference_us": round(reference, 2),
    }
    print(f"best / naive: {result['ratio']}x; emit() p50 {result['emit_p50_us']} us, p99 {result['emit_p99_us']} us")
    if a.json:
        print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
