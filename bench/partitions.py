"""Writers past one: the demo's mix routed by partition key to P stores, one writer process each (P = 1, 2, 4).

What a partitioned deployment would run (docs/SCALING.md): every event goes to the partition its key hashes
to, and each partition has one writer process with a store of its own. The key is the entity whose order the
projections need (`partition_key`):

  - pattern events (`pattern_observed`, `pattern_applied`, `pattern_transition`): the pattern id, because a
    pattern's row is shared by every workspace and its lifecycle follows its applications in order;
  - records a workspace owns (executions, recoveries, rate limits, escalations and their outcomes,
    discoveries, sessions, edits, playbooks): the workspace;
  - the services' fleet-wide records (entropy metrics, budget, evolution, drift, entropy responses): one
    fleet partition.

The bench builds N events of the demo's fleet (`pheromone.simulate.fleet`, the generator `pheromone demo`
runs), routes them, and for each P starts P processes that each validate (`parse_envelope`) and apply
(`Store.apply`, batches of 1,000, on the loop as `serve --only store` does) their partition's events, all
starting together. Events/s is N over the time from the common start to the last writer's finish; each
partition's own rate is its events over its own time. Streams and Redis are left out on purpose: the store's
CPU is the bound (bench/ingest.py, bench/store.py), and a partitioned stream is one more independent stream.

Then it checks what partitioning must keep, from the stores the writers left:
  - the ledger is exact: every event in exactly one partition, none refused;
  - every key lives in one partition, and each key's events (a pattern's applications, a workspace's
    records) have ledger seqs in emission order;
  - the result equals one writer's (the P = 1 run): each pattern's row (status, counters, scores), and the
    fleet's entropy merged from the partitions' aggregates (totals and sums of c log2 c add up, because a
    pattern's applications are all in one partition).
It exits 1 if any check fails. With --json the last line is one JSON object.

    python bench/partitions.py [--events 60000] [--partitions 1,2,4] [--repeat 2] [--dir DIR] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pheromone.contracts import (  # noqa: E402
    Envelope,
    PatternApplied,
    PatternObserved,
    PatternTransitioned,
    parse_envelope,
    pattern_id,
)
from pheromone.services.learning.entropy import entropy_from_aggregate  # noqa: E402
from pheromone.simulate import fleet  # noqa: E402

BATCH = 1_000
FLEET_KINDS = frozenset({"entropy_metrics", "budget", "evolution_entry", "drift", "epistemic_drift",
                         "entropy_response"})
"""Written by the services, a few a minute: one partition. (An entropy response revisits patterns; once they
are spread, the entropy service would have to send each partition a response naming its own patterns.)"""
VOLATILE = ("seq",)
"""Pattern fields that differ between partitioned and single stores by nature: ledger positions."""


def partition_key(env: Envelope, route: str = "key") -> str:
    """The entity whose order matters (`route="key"`); the other routes are controls that break it: the
    workspace alone splits a pattern across partitions, the event id splits everything."""
    if route == "event":
        return "event:" + env.event_id
    p = env.payload
    if route == "workspace":
        return "workspace:" + env.workspace
    if isinstance(p, PatternObserved):
        return "pattern:" + pattern_id(p.pattern_type, p.pattern_name)
    if isinstance(p, PatternApplied | PatternTransitioned):
        return "pattern:" + p.pattern_id
    if p.type in FLEET_KINDS:
        return "fleet"
    return "workspace:" + env.workspace


def partition_of(key: str, partitions: int) -> int:
    """A stable hash (Python's `hash` of a str changes per process)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big") % partitions


def emissions(n: int, workspaces: int, jobs: int, seed: int) -> tuple[list[Envelope], int]:
    """The demo's mix in emission order (its jobs take turns, one sheet each), and the number of sheets."""
    sims = fleet(workspaces, jobs, seed=seed)
    out: list[Envelope] = []
    sheets = 0
    while len(out) < n:
        sim = sims[sheets % len(sims)]
        sheets += 1
        out.extend(Envelope(workspace=sim.workspace, job=sim.job, payload=rec) for rec in sim.step())
    return out[:n], sheets


# -- one writer per partition, each in its own process -------------------------------------------------------


def writer(store: str, feed: str, ready: Any, start: Any, results: Any) -> None:
    """One partition's writer: open its store, wait for the common start, validate and apply its events."""
    from pheromone.services import collector

    collector.tune()  # as the store service does when it starts
    raws = Path(feed).read_bytes().splitlines()
    results.put(asyncio.run(_write(Path(store), raws, ready, start)))


async def _write(store: Path, raws: list[bytes], ready: Any, start: Any) -> dict[str, Any]:
    from pheromone.services.store.db import Store

    async with Store(store, on_loop=True) as db:
        ready.put(os.getpid())
        start.wait()
        t0, c0, w0, q0 = time.monotonic(), time.process_time(), written(), runnable_wait()
        rejected = duplicates = 0
        for i in range(0, len(raws), BATCH):
            batch = [(parse_envelope(raw), raw) for raw in raws[i : i + BATCH]]
            result = await db.apply(batch)
            rejected += len(result.rejected)
            duplicates += len(result.duplicates)
        t1, c1, w1, q1 = time.monotonic(), time.process_time(), written(), runnable_wait()
    return {"store": str(store), "events": len(raws), "start": t0, "end": t1, "cpu_s": c1 - c0, "written": w1 - w0,
            "cpu_wait_s": q1 - q0,
            "rejected": rejected, "duplicates": duplicates}


def written() -> int:
    """Bytes this process has caused to be written to storage (0 where /proc does not say)."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def runnable_wait() -> float:
    """Seconds this thread has waited for a CPU while runnable (/proc schedstat; 0 where it does not say): the
    part of a writer's wall time the other processes took, set apart from its own CPU and its I/O waits."""
    try:
        return int(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def run(partitions: int, feeds: list[Path], stores: list[Path], timeout: float) -> list[dict[str, Any]]:
    """Start one writer per partition, release them together, and collect their figures (by partition)."""
    ctx = mp.get_context("spawn")
    ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=writer, args=(str(stores[k]), str(feeds[k]), ready, start, results))
             for k in range(partitions)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + timeout
    try:
        for _ in procs:
            ready.get(timeout=max(0.1, deadline - time.monotonic()))
        start.set()
        out = [results.get(timeout=max(0.1, deadline - time.monotonic())) for _ in procs]
        for p in procs:
            p.join(timeout=max(0.1, deadline - time.monotonic()))
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    by_store = {r["store"]: r for r in out}
    return [by_store[str(stores[k])] for k in range(partitions)]


# -- what the stores hold afterwards ---------------------------------------------------------------------------


async def read_store(path: Path) -> dict[str, Any]:
    from pheromone.contracts import QuarantineStatus
    from pheromone.services.store.reader import Reader

    async with Reader(path) as r:
        ledger = await r.ledger_since(0)
        patterns = await r.patterns(statuses=[s.value for s in QuarantineStatus], limit=10_000)
        entropy = await r.entropy_state()
        counts = await r.counts()
    return {"ledger": ledger, "patterns": {p["id"]: p for p in patterns}, "entropy": entropy, "counts": counts}


def merged_entropy(states: list[tuple[int, float, int, int, int]]) -> dict[str, Any]:
    """The fleet's entropy from the partitions' aggregates: T, S = sum c log2 c, unique and effective counts
    add up and the largest count is the largest of the largest, since each pattern is in one partition."""
    total = sum(s[0] for s in states)
    metrics = entropy_from_aggregate(
        total=total, sum_c_log2_c=math.fsum(s[1] for s in states), unique=sum(s[2] for s in states),
        effective=sum(s[3] for s in states), max_count=max((s[4] for s in states), default=0),
        calculated_at=datetime(2026, 1, 1, tzinfo=UTC), alert_threshold=0.5,
    )
    return {"total": total, "shannon_entropy": metrics.shannon_entropy, "unique": metrics.unique_pattern_count}


def check(stores: list[dict[str, Any]], fed: list[list[str]], order: dict[str, int], key_of: dict[str, str],
          single: list[dict[str, Any]] | None) -> list[str]:
    """What must hold in a partitioned store; each failure as one line."""
    failures: list[str] = []
    homes: dict[str, set[int]] = defaultdict(set)
    seen: dict[str, int] = {}
    for k, (store, ids) in enumerate(zip(stores, fed, strict=True)):
        ledger = store["ledger"]
        if sorted(e for _, e, _ in ledger) != sorted(ids):
            failures.append(f"partition {k}: ledger holds {len(ledger)} events, {len(ids)} were routed to it")
        last: dict[str, int] = {}
        for _, event_id, _ in ledger:  # ledger_since returns commit (seq) order
            seen[event_id] = seen.get(event_id, 0) + 1
            key = key_of[event_id]
            homes[key].add(k)
            if order[event_id] < last.get(key, -1):
                failures.append(f"partition {k}: {key} has event {event_id} after a later one")
            last[key] = order[event_id]
    if set(seen) != set(order) or any(n != 1 for n in seen.values()):
        failures.append(f"ledger not exact: {len(seen)} distinct of {len(order)} emitted, "
                        f"{sum(n - 1 for n in seen.values())} doubled")
    split = sorted(key for key, ks in homes.items() if len(ks) > 1)
    if split:
        failures.append(f"keys in more than one partition: {split[:5]}")
    if single is not None:
        one = single[0]
        merged: dict[str, Any] = {}
        for store in stores:
            merged.update(store["patterns"])
        if set(merged) != set(one["patterns"]):
            failures.append("the partitions hold other patterns than one writer's store")
        for pid, row in one["patterns"].items():
            theirs = merged.get(pid, {})
            differ = sorted(f for f in row if f not in VOLATILE and row[f] != theirs.get(f))
            if differ:
                failures.append(f"pattern {pid} differs from one writer's in {differ[:6]}")
        mine, ref = merged_entropy([s["entropy"] for s in stores]), merged_entropy([one["entropy"]])
        if (mine["total"], mine["unique"]) != (ref["total"], ref["unique"]) or not math.isclose(
                mine["shannon_entropy"], ref["shannon_entropy"], rel_tol=1e-12, abs_tol=1e-12):
            failures.append(f"merged entropy {mine} is not one writer's {ref}")
        counts: dict[str, int] = defaultdict(int)
        for store in stores:
            for kind, n in store["counts"].items():
                counts[kind] += n
        if dict(counts) != one["counts"]:
            failures.append(f"event counts {dict(counts)} are not one writer's {one['counts']}")
    return failures


# -- the bench ---------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--partitions", default="1,2,4", help="partition counts to run, comma-separated")
    ap.add_argument("--workspaces", type=int, default=16, help="the fleet's workspaces (the demo's default: 4)")
    ap.add_argument("--jobs", type=int, default=4, help="jobs per workspace (the demo's default)")
    ap.add_argument("--repeat", type=int, default=2, help="runs per partition count; the fastest is reported")
    ap.add_argument("--demo-rate", type=float, default=50.0, help="sheets/s per job in `pheromone demo`")
    ap.add_argument("--sheet-seconds", type=float, default=61.0,
                    help="a working job's seconds per sheet (the simulation's sheet durations: 2-120 s)")
    ap.add_argument("--route", choices=("key", "workspace", "event"), default="key",
                    help="key: pattern id or workspace (the design); workspace, event: controls that must fail")
    ap.add_argument("--dir", type=Path, default=None,
                    help="where the stores are written (default: the temporary directory; /dev/shm: no disk)")
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds allowed for each run")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    counts = sorted({int(x) for x in a.partitions.split(",")})
    if not counts or counts[0] < 1:
        ap.error("--partitions takes positive counts")

    envs, sheets = emissions(a.events, a.workspaces, a.jobs, seed=7)
    n = len(envs)
    raws = [e.model_dump_json().encode() for e in envs]
    order = {e.event_id: i for i, e in enumerate(envs)}
    key_of = {e.event_id: partition_key(e, a.route) for e in envs}
    per_sheet = n / sheets
    print(f"{n:,} events of the demo's mix from {a.workspaces * a.jobs} jobs in {a.workspaces} workspaces "
          f"({sheets:,} sheets, {per_sheet:.2f} events a sheet), {len({*key_of.values()})} partition keys; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; stores in {a.dir or tempfile.gettempdir()}")

    report: dict[str, Any] = {}
    failures: list[str] = []
    single: list[dict[str, Any]] | None = None
    with tempfile.TemporaryDirectory(prefix="pheromone-bench-partitions-", dir=a.dir) as d:
        for parts in counts:
            routed: list[list[int]] = [[] for _ in range(parts)]
            for i, e in enumerate(envs):
                routed[partition_of(key_of[e.event_id], parts)].append(i)
            feeds = [Path(d) / f"p{parts}-{k}.jsonl" for k in range(parts)]
            for feed, idx in zip(feeds, routed, strict=True):
                feed.write_bytes(b"\n".join(raws[i] for i in idx))
            best: tuple[float, list[dict[str, Any]], list[dict[str, Any]]] | None = None
            for rep in range(a.repeat):
                stores = [Path(d) / f"p{parts}-{k}-r{rep}.db" for k in range(parts)]
                figures = run(parts, feeds, stores, a.timeout)
                wall = max(f["end"] for f in figures) - min(f["start"] for f in figures)
                held = [asyncio.run(read_store(s)) for s in stores]
                ids = [[envs[i].event_id for i in idx] for idx in routed]
                failures += [f"P={parts}: {f}" for f in check(held, ids, order, key_of, single)]
                failures += [f"P={parts} partition {k}: {f['rejected']} refused" for k, f in enumerate(figures)
                             if f["rejected"] or f["duplicates"]]
                if parts == 1 and single is None:
                    single = held
                if best is None or wall < best[0]:
                    best = (wall, figures, held)
            assert best is not None
            wall, figures, _ = best
            rows = [{"events": f["events"], "events_per_s": round(f["events"] / max(1e-9, f["end"] - f["start"])),
                     "wall_s": round(f["end"] - f["start"], 3), "cpu_s": round(f["cpu_s"], 3),
                     "cpu_wait_s": round(f["cpu_wait_s"], 3), "written_mb": round(f["written"] / 1e6, 1),
                     "other_wait_s": round(max(0.0, f["end"] - f["start"] - f["cpu_s"] - f["cpu_wait_s"]), 3)}
                    for f in figures]
            sizes = [r["events"] for r in rows]
            report[str(parts)] = {
                "events_per_s": round(n / wall), "wall_s": round(wall, 3), "per_partition": rows,
                "imbalance": round(max(sizes) / statistics.mean(sizes), 3),
                "cpu_us_per_event": round(sum(f["cpu_s"] for f in figures) / n * 1e6, 2),
            }
            print(f"P={parts}: {n / wall:>9,.0f} events/s aggregate over {wall:.2f} s; per partition: "
                  + ", ".join(f"{r['events']:,} ev at {r['events_per_s']:,}/s" for r in rows)
                  + f" (largest/mean {report[str(parts)]['imbalance']:.2f}; CPU {sum(r['cpu_s'] for r in rows):.2f} s, "
                f"waiting for a CPU {sum(r['cpu_wait_s'] for r in rows):.2f} s, for anything else (I/O) "
                f"{sum(r['other_wait_s'] for r in rows):.2f} s; written {sum(r['written_mb'] for r in rows):.0f} MB)")

    base = report[str(counts[0])]["events_per_s"]
    for parts in counts:
        report[str(parts)]["speedup"] = round(report[str(parts)]["events_per_s"] / base, 2)
    one_writer = report["1"]["events_per_s"] if "1" in report else None
    job_demo = per_sheet * a.demo_rate
    job_working = per_sheet / a.sheet_seconds
    fleet_figures = {
        "events_per_sheet": round(per_sheet, 3),
        "events_per_job_s_demo": round(job_demo, 1), "events_per_job_s_working": round(job_working, 4),
        "jobs_per_writer_demo": round(one_writer / job_demo) if one_writer else None,
        "jobs_per_writer_working": round(one_writer / job_working) if one_writer else None,
    }
    if one_writer:
        print(f"a job emits {per_sheet:.2f} events a sheet: {job_demo:.0f} events/s at the demo's {a.demo_rate:g} "
              f"sheets/s, {job_working:.3f} at one sheet per {a.sheet_seconds:g} s; one writer carries "
              f"{fleet_figures['jobs_per_writer_demo']:,} demo-paced jobs or "
              f"{fleet_figures['jobs_per_writer_working']:,} working ones")
    print("orderings and equality with one writer: " + ("hold" if not failures else f"{len(failures)} failures"))
    for f in failures[:20]:
        print("  " + f)
    if a.json:
        print(json.dumps({
            "bench": "partitions", "events": n, "partitions": report,
            "events_per_s": max(r["events_per_s"] for r in report.values()), "orderings_hold": not failures,
            "failures": failures[:20], **fleet_figures, "cores": os.cpu_count(),
            "load_average": round(os.getloadavg()[0], 2),
            "config": {"dir": str(a.dir or tempfile.gettempdir()), "route": a.route, "workspaces": a.workspaces,
                       "jobs": a.jobs, "repeat": a.repeat, "batch": BATCH},
        }))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
