"""Benchmark: the learning queries on a store the size of a busy real one and beyond.

    python bench/queries.py                 # 50,000 patterns, 2,000,000 applications, 1,000,000 executions
    python bench/queries.py --quick         # a small store, for a smoke run
    python bench/queries.py --json          # ... and end with one JSON line of the figures

The store is generated directly with SQL inserts into the projection tables (through the real schema and
migrations), which is much faster than replaying millions of events through the projections; the ledger is
left empty because none of the measured queries reads it. Derived aggregates (`pattern_counts`,
`entropy_state`, `pattern_tags`) are written consistently with the generated applications, as the projections
would have left them.

Each query is measured three ways on the same store:
  in-process   the functions the query service and the CLI use (`services.query.learning`), over the store's
               `Reader` (an aiosqlite connection: the thread hop included);
  service      what a job pays: `Pheromone.queries` in this process -> Redis -> the query service
               (`pheromone serve --only query`, its own process) -> the reply;
  under load   the same through the service while a job emits pattern applications (`--load-rate` a second)
               that the store service (`pheromone serve --only store`, its own process) applies to this store,
               keeping the entropy aggregate current as it goes: the entropy answer moves during the run, and
               the store's rate and the time per application spent on the aggregate are reported.
Targets (issue 3): top patterns for a tag set p99 <= 10 ms; entropy p99 <= 50 ms (checked on every way).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from pheromone import Pheromone
from pheromone.contracts import PatternApplied
from pheromone.plumbing.embedded import EmbeddedServer
from pheromone.services.query import learning as q
from pheromone.services.settings import LearningSettings
from pheromone.services.store.db import Store
from pheromone.services.store.reader import Reader

T0_US = 1_735_689_600_000_000  # 2025-01-01T00:00:00Z
DAY_US = 86_400 * 1_000_000
TYPES = (
    "retry_pattern",
    "validation_failure",
    "prompt_pattern",
    "tool_pattern",
    "error_recovery",
    "planning_pattern",
    "test_pattern",
    "refactor_pattern",
)
STATUSES = (("validated", 0.35), ("pending", 0.45), ("quarantined", 0.15), ("retired", 0.05))
MODELS = ("claude-sonnet", "claude-haiku", "claude-opus", "gpt-large", "gpt-small", "local-llama")
CODES = tuple(
    ["429", "rate_limit", "timeout", "overloaded", "auth", "validation"] + [f"E{n:03d}" for n in range(14)]
)
N_TAGS = 300


def zipf_weights(n: int, s: float = 1.1) -> list[float]:
    return [1 / (k**s) for k in range(1, n + 1)]


def generate(
    path: Path,
    *,
    patterns: int,
    applications: int,
    executions: int,
    recoveries: int,
    escalations: int,
    seed: int,
    quiet: bool,
) -> dict[str, float]:
    """Write a store of the given size at `path`; returns seconds per phase."""
    asyncio.run(_migrate(path))
    rng = random.Random(seed)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    timings: dict[str, float] = {}

    def phase(name: str, fn: Callable[[], None]) -> None:
        start = time.perf_counter()
        conn.execute("BEGIN")
        fn()
        conn.execute("COMMIT")
        timings[name] = time.perf_counter() - start
        if not quiet:
            print(f"  generated {name} in {timings[name]:.1f}s", file=sys.stderr)

    tags = [f"tag-{i}" for i in range(N_TAGS)]
    tag_weights = zipf_weights(N_TAGS)
    ids = [f"p_{i:024x}" for i in range(patterns)]
    # Application counts: Zipf over patterns, scaled to the requested total (a few dominate, most are rare).
    weights = zipf_weights(patterns, 0.9)
    scale = applications / sum(weights)
    counts = [int(w * scale) for w in weights]
    for i in rng.sample(range(patterns), applications - sum(counts)) if applications > sum(counts) else []:
        counts[i] += 1
    rng.shuffle(counts)

    def patterns_phase() -> None:
        rows, tag_rows = [], []
        for i, pid in enumerate(ids):
            n = counts[i]
            ok = sum(1 for _ in range(min(n, 50)) if rng.random() < 0.7) * n // max(min(n, 50), 1)
            eff = rng.uniform(0.05, 0.98) if n >= 3 else 0.55
            var = (ok / n) * (1 - ok / n) if n else 0.0
            occ = rng.randint(1, 200)
            prio = eff * max(0.6, min(1.0, math.log10(occ + 1) / 2)) * (1 - var)
            status = rng.choices([s for s, _ in STATUSES], [w for _, w in STATUSES])[0]
            chosen = sorted(set(rng.choices(tags, tag_weights, k=rng.randint(1, 4))))
            first = T0_US + rng.randrange(0, 300 * DAY_US)
            rows.append(
                (
                    pid,
                    TYPES[i % len(TYPES)],
                    f"pattern {i}",
                    f"generated pattern {i}",
                    occ,
                    first,
                    first + DAY_US,
                    first + DAY_US if ok else None,
                    ok,
                    n - ok,
                    eff,
                    var,
                    None,
                    json.dumps(chosen, separators=(",", ":")),
                    prio,
                    status,
                    f"job-{i % 500}",
                    None,
                    None,
                    None,
                    None,
                    rng.uniform(0.1, 0.95),
                    first + DAY_US,
                    None,
                    None,
                    int(status != "retired"),
                    f"{i:064x}",
                    rng.choice(("claude_cli", "codex", None)),
                    "ws-0",
                    first + DAY_US,
                    0,
                    0,  # evidence_base_apps: no quarantine move yet, the evidence counts from the start
                    0,  # evidence_base_successes
                )
            )
            tag_rows += [(t, pid) for t in chosen]
        conn.executemany(f"INSERT INTO patterns VALUES ({','.join('?' * 33)})", rows)
        conn.executemany("INSERT INTO pattern_tags VALUES (?, ?)", tag_rows)
        conn.execute("INSERT INTO tag_counts SELECT tag, COUNT(*) FROM pattern_tags GROUP BY tag")
        conn.executemany(
            "INSERT INTO pattern_counts VALUES (?, ?, ?, NULL, ?)",
            ((pid, counts[i], rows[i][8], rows[i][29]) for i, pid in enumerate(ids)),
        )
        total = sum(counts)
        clogc = sum(c * math.log2(c) for c in counts if c > 0)
        conn.execute(
            "INSERT INTO entropy_state VALUES (1, ?, ?, ?, ?)",
            (total, clogc, patterns, sum(1 for c in counts if c > 0)),
        )

    def applications_phase() -> None:
        def rows() -> Any:
            seq = 0
            for i, pid in enumerate(ids):
                for _ in range(counts[i]):
                    seq += 1
                    yield (
                        f"a{seq:025d}",
                        seq,
                        pid,
                        "ws-0",
                        "job-0",
                        T0_US + seq * 1_000_000,
                        int(rng.random() < 0.7),
                        round(rng.random(), 3),
                        None,
                        None,
                        None,
                    )

        conn.executemany("INSERT INTO pattern_applications VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows())

    def executions_phase() -> None:
        def rows() -> Any:
            for i in range(executions):
                start = T0_US + i * 5_000_000
                retries = rng.choice((0, 0, 0, 1, 2))
                yield (
                    f"x{i:025d}",
                    f"e{i:025d}",
                    f"ws-{i % 40}",
                    f"job-{i % 400}",
                    f"ws-{i % 40}",
                    f"job-{i % 400}",
                    i % 50,
                    start,
                    start + 30_000_000,
                    30.0,
                    "completed",
                    retries,
                    int(retries == 0),
                    rng.random(),
                    rng.random(),
                    MODELS[i % len(MODELS)],
                    "[]",
                    rng.random(),
                )

        conn.executemany("INSERT INTO executions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows())

    def recoveries_phase() -> None:
        def rows() -> Any:
            for i in range(recoveries):
                yield (
                    f"r{i:025d}",
                    f"f{i:025d}",
                    "ws-0",
                    CODES[int(rng.paretovariate(1.2)) % len(CODES)],
                    10.0,
                    rng.uniform(1, 120),
                    int(rng.random() < 0.7),
                    T0_US + i * 10_000_000,
                    MODELS[i % len(MODELS)],
                    (i // 360) % 24,
                )

        conn.executemany("INSERT INTO error_recoveries VALUES (?,?,?,?,?,?,?,?,?,?)", rows())

    def escalations_phase() -> None:
        def rows() -> Any:
            for i in range(escalations):
                yield (
                    f"s{i:025d}",
                    f"g{i:025d}",
                    "ws-0",
                    f"job-{i % 400}",
                    i % 50,
                    round(rng.random(), 3),
                    rng.choice(("retry", "skip", "abort", "modify_prompt")),
                    None,
                    round(rng.random(), 3),
                    rng.randint(0, 5),
                    rng.choice(("success", "failed", "skipped", "aborted", None)),
                    T0_US + i * 60_000_000,
                    MODELS[i % len(MODELS)],
                )

        conn.executemany("INSERT INTO escalation_decisions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows())

    phase("patterns", patterns_phase)
    phase("applications", applications_phase)
    phase("executions", executions_phase)
    phase("recoveries", recoveries_phase)
    phase("escalations", escalations_phase)
    start = time.perf_counter()
    conn.execute("ANALYZE")
    timings["analyze"] = time.perf_counter() - start
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return timings


async def timed(run: Callable[[], Awaitable[Any]], iterations: int) -> list[float]:
    """Milliseconds per call of `run`, after a warm-up of a tenth as many calls (page and statement caches)."""
    for _ in range(max(5, iterations // 10)):
        await run()
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        await run()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


async def _migrate(path: Path) -> None:
    async with Store(path):
        pass


async def measure(path: Path, iterations: int, seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    tags = [f"tag-{i}" for i in range(N_TAGS)]
    async with Reader(path) as db:
        s: LearningSettings = await db.settings()
        async with db.db.execute("SELECT id FROM patterns ORDER BY random() LIMIT 200") as cur:
            some_ids = [r[0] for r in await cur.fetchall()]

        cases: dict[str, Callable[[], Awaitable[Any]]] = {
            "patterns_by_tags": lambda: q.patterns(
                db, q.PatternsArgs(tags=rng.sample(tags[:60], rng.randint(1, 3)), limit=10), s
            ),
            "patterns_by_rare_tags_all": lambda: q.patterns(
                db, q.PatternsArgs(tags=rng.sample(tags, 2), match_all_tags=True, min_trust=0.3, limit=10), s
            ),
            "patterns_top": lambda: q.patterns(db, q.PatternsArgs(limit=20), s),
            "pattern_show": lambda: q.pattern(db, q.PatternArgs(id=rng.choice(some_ids)), s),
            "learned_wait": lambda: q.wait(
                db, q.WaitArgs(error_code=rng.choice(CODES), model=rng.choice((None, *MODELS))), s
            ),
            "similar_escalation": lambda: q.escalations_similar(
                db, q.EscalationArgs(confidence=rng.random(), validation_pass_rate=rng.random()), s
            ),
            "entropy": lambda: q.entropy(db, q.EntropyArgs(), s),
        }
        results: dict[str, dict[str, float]] = {}
        for name, run in cases.items():
            samples = sorted(await timed(run, iterations))
            results[name] = {
                "p50_ms": round(statistics.median(samples), 3),
                "p99_ms": round(samples[min(len(samples) - 1, math.ceil(len(samples) * 0.99) - 1)], 3),
                "max_ms": round(samples[-1], 3),
            }
    return results


def summarise(samples: list[float]) -> dict[str, float]:
    samples = sorted(samples)
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[min(len(samples) - 1, math.ceil(len(samples) * 0.99) - 1)], 3),
        "max_ms": round(samples[-1], 3),
    }


def service_cases(ph: Pheromone, rng: random.Random, some_ids: list[str]) -> dict[str, Callable[[], Awaitable[Any]]]:
    """The in-process cases, as a job asks them: through the client, Redis and the query service."""
    tags = [f"tag-{i}" for i in range(N_TAGS)]
    assert ph.queries is not None
    qc = ph.queries
    return {
        "patterns_by_tags": lambda: qc.patterns(tags=rng.sample(tags[:60], rng.randint(1, 3)), limit=10),
        "patterns_by_rare_tags_all": lambda: qc.patterns(tags=rng.sample(tags, 2), match_all_tags=True,
                                                         min_trust=0.3, limit=10),
        "patterns_top": lambda: qc.patterns(limit=20),
        "pattern_show": lambda: qc.pattern(rng.choice(some_ids)),
        "learned_wait": lambda: qc.learned_wait(rng.choice(CODES), model=rng.choice((None, *MODELS))),
        "similar_escalation": lambda: qc.similar_escalations(rng.random(), rng.random()),
        "entropy": lambda: qc.entropy(),
    }


def start_service(url: str, prefix: str, path: Path, data_dir: Path, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pheromone.cli", "serve", "--only", name, "--redis-url", url, "--db", str(path),
         "--prefix", prefix, "--data-dir", str(data_dir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=Path(__file__).resolve().parent.parent,
    )


def stop_service(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ledger_last_seq(path: Path) -> int:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(seq), 0) FROM ledger").fetchone()[0])
    finally:
        conn.close()


async def measure_service(path: Path, iterations: int, seed: int, load_rate: float,
                          patterns: int) -> dict[str, Any]:
    """Every case through the client and the query service, idle and while applications arrive."""
    rng = random.Random(seed + 1)
    with tempfile.TemporaryDirectory(prefix="pheromone-bench-") as d:
        data = Path(d)
        with EmbeddedServer(data / "redis", persist=False) as server:
            prefix = "qbench"
            query = start_service(server.url, prefix, path, data, "query")
            store = start_service(server.url, prefix, path, data, "store")
            ph = Pheromone(server.url, workspace="bench", job="bench", prefix=prefix, data_dir=data,
                           spool_dir=data / "spool")
            await ph.open()
            try:
                assert ph.queries is not None
                deadline = time.monotonic() + 60
                while True:  # the query service is up once it answers
                    try:
                        await ph.queries.entropy(timeout=1)
                        break
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                some_ids = [f"p_{i:024x}" for i in rng.sample(range(patterns), min(200, patterns))]
                cases = service_cases(ph, rng, some_ids)
                idle: dict[str, dict[str, float]] = {}
                for name, run in cases.items():
                    idle[name] = summarise(await timed(run, iterations))
                loaded = await under_load(ph, cases, path, iterations, load_rate, patterns, rng)
            finally:
                await ph.close()
                stop_service(store)
                stop_service(query)
    return {"service": idle, **loaded}


async def under_load(ph: Pheromone, cases: dict[str, Callable[[], Awaitable[Any]]], path: Path,
                     iterations: int, load_rate: float, patterns: int, rng: random.Random) -> dict[str, Any]:
    """Entropy and tag queries through the service while `load_rate` applications a second arrive."""
    assert ph.queries is not None
    weights = zipf_weights(patterns, 0.9)
    ids = [f"p_{i:024x}" for i in rng.choices(range(patterns), weights, k=4096)]
    before = (await ph.queries.entropy())["current"]["total_applications"]
    seq0 = ledger_last_seq(path)
    stop = asyncio.Event()
    emitted = 0

    async def emit() -> None:
        nonlocal emitted
        start = time.perf_counter()
        while not stop.is_set():
            due = int((time.perf_counter() - start) * load_rate)
            while emitted < due:
                ph.emit(PatternApplied(pattern_id=ids[emitted % len(ids)], success=rng.random() < 0.7,
                                       grounding_confidence=round(rng.random(), 3), model=rng.choice(MODELS)))
                emitted += 1
            await asyncio.sleep(0.002)

    producer = asyncio.create_task(emit())
    t0 = time.perf_counter()
    loaded: dict[str, dict[str, float]] = {}
    try:
        await asyncio.sleep(1.0)  # the store is applying by now
        for name in ("entropy", "patterns_by_tags"):
            samples = []
            for _ in range(iterations):
                start = time.perf_counter()
                await cases[name]()
                samples.append((time.perf_counter() - start) * 1000)
                await asyncio.sleep(0.001)  # a job asks now and then, not in a tight loop
            loaded[name] = summarise(samples)
    finally:
        stop.set()
        await producer
    elapsed = time.perf_counter() - t0
    await ph.flush()
    for _ in range(2_400):  # up to 2 minutes for the store to catch up
        if ledger_last_seq(path) >= seq0 + emitted:
            break
        await asyncio.sleep(0.05)
    stored = ledger_last_seq(path) - seq0
    after = (await ph.queries.entropy())["current"]["total_applications"]
    return {
        "under_load": loaded,
        "load": {"rate_per_s": load_rate, "emitted": emitted, "stored": stored, "seconds": round(elapsed, 2),
                 "entropy_applications_before": before, "entropy_applications_after": after},
    }


def upkeep_cost(path: Path, events: int, seed: int) -> dict[str, float]:
    """CPU microseconds per pattern application that `Store.apply` spends on the running entropy aggregate:
    the same batches applied to two copies of this store, with and without its upkeep (the aggregate's
    terms and its row)."""
    import shutil

    from pheromone.contracts import Envelope
    from pheromone.services.store import batch as store_batch
    from pheromone.services.store import patterns as store_patterns

    rng = random.Random(seed + 2)
    n = sqlite3.connect(path).execute("SELECT COUNT(*) FROM patterns").fetchone()[0]
    weights = zipf_weights(n, 0.9)
    envs = [Envelope(workspace="ws-0", job="job-0", payload=PatternApplied(
        pattern_id=f"p_{i:024x}", success=rng.random() < 0.7, grounding_confidence=round(rng.random(), 3)))
        for i in rng.choices(range(n), weights, k=events)]
    raws = [(e, e.model_dump_json().encode()) for e in envs]

    async def apply(copy: Path) -> float:
        async with Store(copy) as st:
            c0 = time.process_time()
            for i in range(0, len(raws), 1000):
                await st.apply(raws[i : i + 1000])
            return (time.process_time() - c0) / len(raws) * 1e6

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="pheromone-bench-") as d:
        for label in ("with", "without", "with_again", "without_again"):
            copy = Path(d) / f"{label}.db"
            shutil.copy(path, copy)
            saved = (store_batch.PatternBatch.add_entropy, store_patterns.c_log2_c)
            if label.startswith("without"):
                store_batch.PatternBatch.add_entropy = lambda self, conn, **kw: None  # type: ignore[method-assign]
                store_patterns.c_log2_c = lambda c: 0.0  # type: ignore[assignment]
            try:
                out[label] = asyncio.run(apply(copy))
            finally:
                store_batch.PatternBatch.add_entropy, store_patterns.c_log2_c = saved  # type: ignore[method-assign]
            copy.unlink()
    with_us = min(out["with"], out["with_again"])
    without_us = min(out["without"], out["without_again"])
    return {"apply_us": round(with_us, 2), "apply_without_entropy_us": round(without_us, 2),
            "entropy_upkeep_us": round(with_us - without_us, 2)}


TARGETS_MS = {
    "patterns_by_tags": 10.0,
    "patterns_by_rare_tags_all": 10.0,
    "patterns_top": 10.0,
    "entropy": 50.0,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patterns", type=int, default=50_000)
    parser.add_argument("--applications", type=int, default=2_000_000)
    parser.add_argument("--executions", type=int, default=1_000_000)
    parser.add_argument("--recoveries", type=int, default=200_000)
    parser.add_argument("--escalations", type=int, default=100_000)
    parser.add_argument("--iterations", type=int, default=500, help="measured runs per query")
    parser.add_argument("--quick", action="store_true", help="a small store and fewer runs (smoke test)")
    parser.add_argument("--db", type=Path, help="keep the generated store here (default: a temporary dir)")
    parser.add_argument("--reuse", action="store_true", help="measure an existing --db without generating")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--service", action=argparse.BooleanOptionalAction, default=True,
                        help="also measure through the client, Redis and the query service, idle and under load")
    parser.add_argument("--load-rate", type=float, default=2_000.0, help="applications a second under load")
    parser.add_argument("--upkeep-events", type=int, default=20_000,
                        help="applications applied to copies of the store to time the entropy upkeep (0: skip)")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of the figures")
    a = parser.parse_args()
    if a.quick:
        a.upkeep_events = min(a.upkeep_events, 2_000)
        a.patterns, a.applications, a.executions, a.recoveries, a.escalations = (
            2_000,
            50_000,
            20_000,
            5_000,
            2_000,
        )
        a.iterations = min(a.iterations, 100)
    if a.reuse and (a.db is None or not a.db.exists()):
        parser.error("--reuse needs an existing --db")

    with tempfile.TemporaryDirectory(prefix="pheromone-bench-") as tmp:
        path = a.db or Path(tmp) / "store.db"
        sizes = {
            "patterns": a.patterns,
            "applications": a.applications,
            "executions": a.executions,
            "recoveries": a.recoveries,
            "escalations": a.escalations,
        }
        timings: dict[str, float] = {}
        if not a.reuse:
            if path.exists():
                parser.error(f"{path} exists; pass --reuse to measure it, or remove it")
            print(f"generating {', '.join(f'{v:,} {k}' for k, v in sizes.items())} ...", file=sys.stderr)
            timings = generate(path, seed=a.seed, quiet=a.json, **sizes)
        size_mb = sum(p.stat().st_size for p in path.parent.glob(path.name + "*")) / 1e6
        results = asyncio.run(measure(path, a.iterations, a.seed))
        upkeep = upkeep_cost(path, a.upkeep_events, a.seed) if a.upkeep_events else {}
        service = asyncio.run(measure_service(path, a.iterations, a.seed, a.load_rate, a.patterns)) \
            if a.service else {}

    print(f"\nstore: {size_mb:,.0f} MB; {a.iterations} runs per query (warm cache)\n")
    ways = {"in-process": results, **({"service": service["service"], "under load": service["under_load"]}
                                      if service else {})}
    print(f"{'query':<28}" + "".join(f"{w + ' p50/p99 ms':>26}" for w in ways) + "  target")
    ok = True
    for name in results:
        target = TARGETS_MS.get(name)
        row = f"{name:<28}"
        met = True
        for figures in ways.values():
            r = figures.get(name)
            row += f"{r['p50_ms']:>15.3f}/{r['p99_ms']:>10.3f}" if r else f"{'':>26}"
            met &= r is None or target is None or r["p99_ms"] <= target
        ok &= met
        print(row + ("" if target is None else f"  p99 <= {target:g} ms " + ("ok" if met else "MISSED")))
    if service:
        load = service["load"]
        print(f"\nunder load: {load['emitted']:,} applications emitted at {load['rate_per_s']:,.0f}/s, "
              f"{load['stored']:,} stored; the entropy answer counted {load['entropy_applications_before']:,} -> "
              f"{load['entropy_applications_after']:,} applications")
    if upkeep:
        print(f"keeping entropy current: {upkeep['entropy_upkeep_us']} us of the {upkeep['apply_us']} us CPU that "
              "Store.apply spends per application on this store")
    if a.json:
        print(
            json.dumps(
                {
                    "bench": "queries",
                    "sizes": sizes,
                    "store_mb": round(size_mb, 1),
                    "iterations": a.iterations,
                    "generate_s": {k: round(v, 2) for k, v in timings.items()},
                    "queries": results,
                    **({"service": service["service"], "under_load": service["under_load"],
                        "load": service["load"]} if service else {}),
                    "entropy_upkeep": upkeep,
                    "targets_met": ok,
                }
            )
        )


if __name__ == "__main__":
    main()
