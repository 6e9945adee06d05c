"""The benchmark scripts stay runnable: a small run of each ends with its JSON line.

Only the shape is checked; speed is measured by the benchmarks themselves (bench/RESULTS.md), never asserted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_bench(*args: str, timeout: float = 110, returncode: int = 0) -> dict[str, Any]:
    """Run a benchmark in its own process group and return its JSON line. On a timeout the whole group is
    killed: bench/ingest.py starts a Valkey server and store workers that would otherwise outlive it."""
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{args[0]} did not finish within {timeout:g}s: {err[-2000:]}") from None
    assert proc.returncode == returncode, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_store_bench_reports_every_figure() -> None:
    result = run_bench("bench/store.py", "--events", "2000", "--json")
    assert result["bench"] == "store"
    assert 1_900 <= result["events"] <= 2_000
    for key in ("validation_us", "validation_us_default_gc", "apply_cpu_us", "apply_wall_us",
                "ledger_only_cpu_us", "ratio_to_ledger_only", "ceiling_events_per_s"):
        assert result[key] > 0, key
    assert sum(row["events"] for row in result["per_kind"].values()) == result["events"]
    assert {"execution", "pattern_applied", "pattern_observed"} <= set(result["per_kind"])


def test_ingest_bench_reports_every_figure() -> None:
    """A small run on its own embedded server: the raw limits, the store alone with one producer process (as
    fast as it can, then at the rate it measured), every service in one process, the naive baseline, and the
    JSON line bench/RESULTS.md quotes."""
    result = run_bench("bench/ingest.py", "--quick", "--events", "1500", "--naive-events", "200", "--producers", "1",
                       "--paced-seconds", "0.5", "--json")
    for key in ("events_per_s_1p", "events_per_s", "all_in_one_events_per_s", "naive_events_per_s", "ratio",
                "limit_events_per_s", "limit_redis_per_s", "limit_sqlite_per_s", "limit_fraction", "emit_p50_us",
                "emit_p99_us", "emit_max_us", "machine_reference_us", "store_core_share", "store_cpu_us_per_event"):
        assert result[key] > 0, key
    for key in ("loop_stall_p99_ms", "loop_stall_max_ms", "loop_stall_net_p99_ms", "paced_loop_stall_p99_ms",
                "paced_loop_stall_max_ms"):
        assert result[key] >= 0, key
    assert result["per_run"]["1p"]["stall_ms"]["n"] > 0, "the ticker reached the producer's loop"
    assert result["events_per_s"] == result["events_per_s_1p"], "the headline is the largest producer count run"
    assert result["limit_events_per_s"] == min(result["limit_redis_per_s"], result["limit_sqlite_per_s"])
    assert result["emit_calls"] == 1_500, "emit() is timed in the store-alone run"
    assert set(result["targets_met"]) == {"loop_stall_p99_ms", "loop_stall_max_ms", "emit_p99_us", "limit_fraction",
                                          "ratio"}


def test_ingest_bench_with_the_store_on_postgresql_reports_both_stores() -> None:
    """`--store postgres`: each producer count again with the store on its own PostgreSQL, beside SQLite, and
    the two headline figures and their ratio in the JSON line."""
    result = run_bench("bench/ingest.py", "--quick", "--events", "1000", "--naive-events", "100", "--producers", "1",
                       "--paced-seconds", "0", "--no-all-in-one", "--store", "postgres", "--json")
    assert result["postgres_events_per_s"] == result["postgres_events_per_s_1p"] > 0
    assert result["sqlite_events_per_s"] == result["events_per_s"] > 0
    ratio = result["postgres_events_per_s"] / result["sqlite_events_per_s"]
    assert abs(result["postgres_fraction"] - ratio) < 0.002
    assert result["per_run"]["1p-pg"]["events"] == 1_000
    assert "postgres_fraction" in result["targets_met"]


def test_efficacy_bench_reports_every_figure(tmp_path: Path) -> None:
    """A few seeds through the real store and pipeline: the JSON line has every key the issue lists, and the
    stress picture is written."""
    picture = tmp_path / "stress.svg"
    result = run_bench("bench/efficacy.py", "--seeds", "2", "--workers", "1", "--json", "--svg", str(picture))
    for key in ("lift", "lift_ci_low", "oracle_lift", "lift_share", "recall", "null_false_rate", "accept_harmful",
                "accept_subtle", "accept_useless", "accept_helpful", "applied_on_staged", "quarantine_good_100",
                "quarantine_bad_15", "recover_30", "stress_gated_min_delta", "seeds"):
        assert key in result, key
    assert result["seeds"] == 2 and result["applied_on_staged"] == 0
    assert 0 <= result["recall"] <= 1 and result["oracle_lift"] > 0
    assert picture.read_text().startswith("<svg") and "gated" in picture.read_text()


def test_queries_bench_reports_every_way() -> None:
    """A small store: every query in-process, through the client and the query service, and under load, with
    the store service applying what a job emits meanwhile (the entropy answer moves)."""
    result = run_bench("bench/queries.py", "--quick", "--iterations", "20", "--upkeep-events", "500", "--json")
    assert set(result["queries"]) == set(result["service"]) >= {"patterns_by_tags", "entropy"}
    assert set(result["under_load"]) == {"entropy", "patterns_by_tags"}
    for way in ("queries", "service", "under_load"):
        assert all(r["p50_ms"] > 0 for r in result[way].values()), way
    load = result["load"]
    assert load["stored"] == load["emitted"] > 0
    assert load["entropy_applications_after"] == load["entropy_applications_before"] + load["stored"]
    assert result["entropy_upkeep"]["apply_us"] > 0


def test_partitions_bench_reports_every_figure_and_keeps_each_keys_order() -> None:
    """Two small runs of one and two writer processes: routed by key, every ordering holds and the partitions
    together equal one writer's store; routed by workspace alone (a pattern split across partitions), the
    same checks fail, so they can."""
    args = ("bench/partitions.py", "--events", "2000", "--partitions", "1,2", "--repeat", "1", "--json")
    result = run_bench(*args, timeout=60)
    assert result["bench"] == "partitions" and result["orderings_hold"] and not result["failures"]
    assert set(result["partitions"]) == {"1", "2"}
    for parts, run in result["partitions"].items():
        assert len(run["per_partition"]) == int(parts)
        assert sum(p["events"] for p in run["per_partition"]) == result["events"] == 2_000
        assert run["events_per_s"] > 0 and all(p["events_per_s"] > 0 for p in run["per_partition"])
    assert result["events_per_s"] == max(r["events_per_s"] for r in result["partitions"].values())
    assert result["events_per_sheet"] > 1 and result["jobs_per_writer_demo"] > 0

    split = run_bench(*args, "--route", "workspace", timeout=60, returncode=1)
    assert not split["orderings_hold"]
    assert any("differs from one writer" in f for f in split["failures"]), split["failures"]

def test_pg_driver_bench_runs() -> None:
    """bench/pg_driver.py (asyncpg vs psycopg on the ingest path) against its own embedded PostgreSQL."""
    result = run_bench("bench/pg_driver.py", "--events", "400", "--json")
    assert result["events"] == 400
    assert set(result["events_per_s"]) == {
        "psycopg_per_statement", "psycopg_executemany", "psycopg_pipeline", "asyncpg_per_statement",
        "asyncpg_executemany",
    }
    assert all(v > 0 for v in result["events_per_s"].values())
