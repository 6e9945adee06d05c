"""Where the store's time goes, per event: validation, the ledger, each projection; no Redis, no services.

The end-to-end benchmark (bench/ingest.py) is bound by the store process's CPU. This one takes the same
simulated fleet's mix, serialises it as producers do, and measures in one process, on a fresh SQLite file:

  1. validation (`parse_envelope`) per event, with CPython's default collector and after
     `services.collector.tune()` (what the store service runs with);
  2. `Store.apply` in batches of 1,000, full projections, CPU and wall time per event, and the CPU spent in
     each record family's projection;
  3. the baseline, in the same run: the same batches with every projection replaced by a no-op (the ledger
     insert and the transaction alone), so the ratio says what the learning projections cost on top.

CPU time (`time.process_time`) is the steadier figure on a shared machine; wall time adds I/O and
scheduling. With --json the last line is one JSON object.

    python bench/store.py [--events 60000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.ingest import records  # noqa: E402
from pheromone.contracts import Envelope, parse_envelope  # noqa: E402
from pheromone.services import collector  # noqa: E402
from pheromone.services.store import db as store_db  # noqa: E402
from pheromone.services.store.db import Store  # noqa: E402

BATCH = 1_000


def wire(n: int) -> list[bytes]:
    """The fleet's mix as producers put it on the stream: envelope JSON bytes."""
    out: list[bytes] = []
    for i, items in enumerate(records(n, 4)):
        for rec in items:
            out.append(Envelope(workspace=f"ws-{i}", job=f"job-{i}", payload=rec).model_dump_json().encode())
    return out


def validation_us(raws: list[bytes]) -> float:
    """CPU microseconds per event to validate, batch by batch (each batch lives until the next, as in the
    service, where a batch is held until its commit)."""
    c0 = time.process_time()
    for i in range(0, len(raws), BATCH):
        batch = [parse_envelope(raw) for raw in raws[i : i + BATCH]]
        del batch
    return (time.process_time() - c0) / len(raws) * 1e6


async def apply_run(
    path: Path, events: list[tuple[Envelope, bytes]], projections: dict[str, Callable[..., Any]]
) -> tuple[float, float]:
    """(CPU us, wall us) per event to apply every batch with the given projection table."""
    saved = store_db.PROJECTIONS
    store_db.PROJECTIONS = projections
    try:
        async with Store(path) as store:
            c0, t0 = time.process_time(), time.perf_counter()
            for i in range(0, len(events), BATCH):
                await store.apply(events[i : i + BATCH])
            return (time.process_time() - c0) / len(events) * 1e6, (time.perf_counter() - t0) / len(events) * 1e6
    finally:
        store_db.PROJECTIONS = saved


def timed(projections: dict[str, Callable[..., Any]], spent: dict[str, list[float]]) -> dict[str, Callable[..., Any]]:
    """The projection table with each function wrapped to add its thread CPU time and call count."""

    def wrap(kind: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any) -> Any:
            t = time.thread_time()
            try:
                return fn(*args)
            finally:
                cell = spent[kind]
                cell[0] += time.thread_time() - t
                cell[1] += 1

        return run

    return {kind: wrap(kind, fn) for kind, fn in projections.items()}


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=60_000)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()

    raws = wire(a.events)
    n = len(raws)
    default_us = validation_us(raws)
    collector.tune()
    tuned_us = validation_us(raws)
    events = [(parse_envelope(raw), raw) for raw in raws]
    noop = {kind: (lambda *_: None) for kind in store_db.PROJECTIONS}
    spent: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    with tempfile.TemporaryDirectory(prefix="pheromone-bench-store-") as d:
        base_cpu, base_wall = await apply_run(Path(d) / "ledger-only.db", events, noop)
        full_cpu, full_wall = await apply_run(Path(d) / "full.db", events, store_db.PROJECTIONS)
        await apply_run(Path(d) / "timed.db", events, timed(store_db.PROJECTIONS, spent))
    gc.collect()

    per_kind = {
        kind: {"events": int(count), "cpu_us_per_event": round(secs / count * 1e6, 2),
               "cpu_us_share_per_event": round(secs / n * 1e6, 2)}
        for kind, (secs, count) in sorted(spent.items(), key=lambda kv: -kv[1][0])
    }
    print(f"{n:,} events, batches of {BATCH:,}")
    print(f"validation: {default_us:.1f} us/event CPU with the default collector, {tuned_us:.1f} tuned "
          f"({default_us / tuned_us:.2f}x)")
    print(f"apply, ledger only (baseline): {base_cpu:.1f} us/event CPU, {base_wall:.1f} wall")
    print(f"apply, full projections:       {full_cpu:.1f} us/event CPU, {full_wall:.1f} wall "
          f"({full_cpu / base_cpu:.2f}x the baseline)")
    for kind, row in per_kind.items():
        print(f"  {kind:<20} {row['events']:>7,} events  {row['cpu_us_per_event']:>7.1f} us each  "
              f"{row['cpu_us_share_per_event']:>6.1f} us per event of the mix")
    ceiling = 1e6 / (tuned_us + full_cpu)
    print(f"one core's ceiling for validation + apply: {ceiling:,.0f} events/s")
    if a.json:
        print(json.dumps({
            "bench": "store", "events": n, "validation_us_default_gc": round(default_us, 2),
            "validation_us": round(tuned_us, 2), "apply_cpu_us": round(full_cpu, 2),
            "apply_wall_us": round(full_wall, 2), "ledger_only_cpu_us": round(base_cpu, 2),
            "ratio_to_ledger_only": round(full_cpu / base_cpu, 2), "ceiling_events_per_s": round(ceiling),
            "per_kind": per_kind,
        }))


if __name__ == "__main__":
    asyncio.run(main())
