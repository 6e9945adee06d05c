"""The benchmark scripts stay runnable: a small run of bench/store.py ends with its JSON line.

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
