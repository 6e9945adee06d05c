"""The store service tunes CPython's collector for its batch hot path (services/collector.py)."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from pheromone.services import collector
from tests.services.conftest import StartRuntime

ROOT = Path(__file__).resolve().parents[2]


async def test_the_store_service_raises_the_young_threshold(start_runtime: StartRuntime) -> None:
    await start_runtime(services=("store",))
    assert gc.get_threshold() == (collector.YOUNG_THRESHOLD, *collector.OLDER_THRESHOLDS)


def test_tune_freezes_start_up_objects_once_per_process() -> None:
    # In a child: the test process's own collector state is not the thing under test.
    code = (
        "import gc; from services import collector\n"
        "assert gc.get_freeze_count() == 0 and gc.get_threshold() == (700, 10, 10)\n"
        "first = collector.tune(); frozen = gc.get_freeze_count()\n"
        "junk = [[i] for i in range(1000)]\n"
        "second = collector.tune()\n"
        "print(first == second, frozen > 1000, gc.get_freeze_count() == frozen, first)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    same, froze, once, thresholds = out.stdout.split(maxsplit=3)
    assert (same, froze, once) == ("True", "True", "True")
    assert thresholds.strip() == str((collector.YOUNG_THRESHOLD, *collector.OLDER_THRESHOLDS))
