"""Migrations: processes racing to open a fresh store all succeed and the schema is applied once; an older
store is brought forward; a store newer than the code is refused."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pheromone.services.errors import StoreError
from pheromone.services.store.db import Store
from pheromone.services.store.schema import MIGRATIONS, connect

OPENER = """
import asyncio, sys, time
from pathlib import Path
from pheromone.services.store.db import Store

path, go = Path(sys.argv[1]), Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():  # every process imported and waiting: they open the store together
    time.sleep(0.001)

async def main() -> None:
    async with Store(path):
        pass

asyncio.run(main())
print("opened", flush=True)
"""
RACERS = 4


def schema_of(path: Path) -> tuple[int, list[tuple[str, str]]]:
    conn = sqlite3.connect(path)
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        objects = conn.execute("SELECT type, name FROM sqlite_master ORDER BY type, name").fetchall()
    finally:
        conn.close()
    return version, objects


async def test_processes_opening_a_fresh_store_at_once_all_succeed(tmp_path: Path) -> None:
    path, go = tmp_path / "race" / "store.db", tmp_path / "go"
    path.parent.mkdir()
    procs = [
        subprocess.Popen(  # noqa: ASYNC220 - a quick fork; the waits below run in threads
            [sys.executable, "-c", OPENER, str(path), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[2],
        )
        for _ in range(RACERS)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            assert line == b"ready\n", (line, proc.stderr.read() if proc.stderr else b"")
        go.touch()
        results = [await asyncio.to_thread(proc.communicate, None, 60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for proc, (out, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0 and out == b"opened\n", err.decode(errors="replace")

    # The same schema as one process alone makes, at the newest version: nothing applied twice or skipped.
    alone = tmp_path / "alone.db"
    async with Store(alone):
        pass
    version, objects = schema_of(path)
    assert version == len(MIGRATIONS)
    assert (version, objects) == schema_of(alone)


def test_connections_racing_on_fresh_files_all_succeed(tmp_path: Path) -> None:
    """Many quick races: switching a fresh file to WAL is where racing openers failed with "database is
    locked" (SQLite skips the busy handler there to avoid a deadlock), about once in a hundred opens."""
    failures: list[str] = []

    def open_wal(path: Path, barrier: threading.Barrier) -> None:
        barrier.wait()
        try:
            conn = connect(str(path))
            try:
                assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            finally:
                conn.close()
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    for trial in range(150):
        path, barrier = tmp_path / f"store-{trial}.db", threading.Barrier(6)
        threads = [threading.Thread(target=open_wal, args=(path, barrier)) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert failures == []


async def test_an_older_store_is_brought_forward(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    conn = connect(str(path))
    try:  # a store made by a pheromone that knew only the first migration
        conn.execute("BEGIN IMMEDIATE")
        for statement in (s.strip() for s in MIGRATIONS[0].split(";") if s.strip()):
            conn.execute(statement)
        conn.execute("PRAGMA user_version=1")
        conn.execute("COMMIT")
    finally:
        conn.close()
    async with Store(path) as store:
        assert (await store.counts())["ledger"] == 0
    alone = tmp_path / "alone.db"
    async with Store(alone):
        pass
    assert schema_of(path) == schema_of(alone)
    assert schema_of(path)[0] == len(MIGRATIONS)


async def test_a_store_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with Store(path):
        pass
    newer = len(MIGRATIONS) + 1
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version={newer}")
    conn.close()
    _, objects = schema_of(path)

    store = Store(path)
    try:
        with pytest.raises(StoreError, match=f"store schema version {newer} is newer than this pheromone"):
            await store.open()
    finally:
        await store.close()
    assert schema_of(path) == (newer, objects)  # refused, not touched
