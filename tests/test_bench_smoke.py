"""The benchmark scripts stay runnable: a small run of bench/store.py and of bench/ingest.py ends with its JSON
line.

Only the shape is checked; speed is measured by the benchmarks themselves (bench/RESULTS.md), never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_store_bench_reports_every_figure() -> None:
    out = subprocess.run(
        [sys.executable, "bench/store.py", "--events", "2000", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == "store"
    assert 1_900 <= result["events"] <= 2_000
    for key in ("validation_us", "validation_us_default_gc", "apply_cpu_us", "apply_wall_us",
                "ledger_only_cpu_us", "ratio_to_ledger_only", "ceiling_events_per_s"):
        assert result[key] > 0, key
    assert sum(row["events"] for row in result["per_kind"].values()) == result["events"]
    assert {"execution", "pattern_applied", "pattern_observed"} <= set(result["per_kind"])


def test_ingest_bench_reports_every_figure() -> None:
    """A small run on its own embedded server: the store alone, every service in one process, the naive
    baseline, and the JSON line bench/RESULTS.md quotes."""
    out = subprocess.run(
        [sys.executable, "bench/ingest.py", "--events", "1500", "--naive-events", "200", "--producers", "1",
         "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for key in ("events_per_s_1p", "events_per_s", "all_in_one_events_per_s", "naive_events_per_s", "ratio",
                "emit_p50_us", "emit_p99_us", "machine_reference_us"):
        assert result[key] > 0, key
    assert result["events_per_s"] == result["events_per_s_1p"], "the best figure is the store-alone run's"
    assert result["emit_calls"] == 1_500, "emit() is timed in the store-alone run"
