"""The largest numbers the contracts accept are stored, aggregated and answered as standard JSON; an
aggregate that still overflows (rows stored before the bounds) is answered as null, never as `Infinity`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from pheromone.contracts import Envelope, ExecutionRecord
from pheromone.contracts.types import MAX_FLOAT, MAX_INT
from pheromone.services.query.service import answer, reply_json
from pheromone.services.store.db import Store
from pheromone.services.store.reader import Reader
from tests.cli.helpers import PHEROMONE
from tests.services import helpers as h

PATTERN = re.compile(r"p:reply:[0-9a-f]{32}")
REPLY = "p:reply:" + "0" * 32


def _strict(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"not standard JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


async def _store(path: Path, events: list[Envelope]) -> None:
    async with Store(path) as store:
        result = await store.apply([(e, e.model_dump_json()) for e in events])
        assert not result.rejected and len(result.inserted) == len(events)


def _old_rows() -> list[Envelope]:
    """Executions as a version without the bounds stored them: built without validation."""
    fields = h.execution().model_dump()
    return [h.envelope(ExecutionRecord.model_construct(**{**fields, "id": f"old{i}", "duration_seconds": 1e308}))
            for i in range(2)]


async def _stats(path: Path, events: list[Envelope]) -> dict[str, Any]:
    await _store(path, events)
    async with Reader(path) as reader:
        request = json.dumps({"op": "execution_stats", "args": {}, "reply": REPLY}).encode()
        reply, response = await answer(reader, request, PATTERN)
    assert reply == REPLY and response["ok"], response
    parsed: dict[str, Any] = _strict(reply_json(response))["result"]["stats"][0]
    return parsed


async def test_largest_accepted_numbers_are_stored_and_answered_as_json(tmp_path: Path) -> None:
    biggest = h.execution(duration_seconds=MAX_FLOAT, retry_count=MAX_INT, sheet_num=MAX_INT)
    stats = await _stats(tmp_path / "store.db", [h.envelope(biggest.model_copy(update={"id": f"x{i}"}))
                                                 for i in range(3)])
    assert stats["executions"] == 3
    assert stats["avg_duration_seconds"] == MAX_FLOAT
    assert stats["avg_retry_count"] == MAX_INT


async def test_an_overflowing_aggregate_is_answered_as_null(tmp_path: Path) -> None:
    stats = await _stats(tmp_path / "store.db", _old_rows())
    assert stats["executions"] == 2
    assert stats["avg_duration_seconds"] is None


async def test_the_cli_prints_an_overflowing_aggregate_as_null(tmp_path: Path) -> None:
    await _store(tmp_path / "store.db", _old_rows())
    env = {k: v for k, v in os.environ.items() if not k.startswith("PHEROMONE_")}
    run = await asyncio.to_thread(
        subprocess.run, [str(PHEROMONE), "executions", "stats", "--json", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )
    assert run.returncode == 0, run.stderr
    [stats] = _strict(run.stdout)["stats"]
    assert stats["executions"] == 2 and stats["avg_duration_seconds"] is None
