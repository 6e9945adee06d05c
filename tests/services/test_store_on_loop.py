"""`Store(on_loop=True)`, what the store service uses alone in its process: batches are applied on the event
loop's thread with the same effect as on the writer thread, waiting for the write lock does not block the
loop, and a batch cancelled during that wait leaves nothing behind."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pheromone.contracts import Envelope
from pheromone.services.errors import StoreBusyError
from pheromone.services.store import db as store_db
from pheromone.services.store.db import Store
from tests.services import helpers as h
from tests.services.conftest import StartRuntime
from tests.support import OpenClient, eventually


def batch(n: int = 40) -> list[tuple[Envelope, bytes]]:
    records: list[Any] = []
    for i in range(n // 4):
        records += [h.observed(f"p{i % 3}"), h.applied(f"p{i % 3}", i % 2 == 0), h.execution(), h.recovery()]
    envs = [h.envelope(r) for r in records]
    return [(e, e.model_dump_json().encode()) for e in envs]


def recording_threads(monkeypatch: pytest.MonkeyPatch) -> set[int]:
    """Patch every projection to note the thread it runs on; returns the set it fills."""
    threads: set[int] = set()

    def wrap(fn: Callable[..., None]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            threads.add(threading.get_ident())
            fn(*args)

        return run

    monkeypatch.setattr(store_db, "PROJECTIONS", {k: wrap(f) for k, f in store_db.PROJECTIONS.items()})
    return threads


async def test_on_loop_applies_on_the_callers_thread_with_the_same_effect(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events = batch()
    threads = recording_threads(monkeypatch)
    sums = {}
    for on_loop in (False, True):
        threads.clear()
        async with Store(tmp_path / f"{on_loop}.db", on_loop=on_loop) as store:
            results = [await store.apply(events[i : i + 10]) for i in range(0, len(events), 10)]
            sums[on_loop] = await store.checksum()
        assert sum(len(r.inserted) for r in results) == len(events)
        assert (threads == {threading.get_ident()}) is on_loop, threads
    assert sums[True] == sums[False]


async def test_concurrent_batches_on_loop_take_turns(tmp_path: Path) -> None:
    """The store service has one subscriber per stream: their batches arrive at once."""
    async with Store(tmp_path / "store.db", on_loop=True) as store:
        results = await asyncio.gather(*(store.apply(batch(20)) for _ in range(5)))
        assert [len(r.inserted) for r in results] == [20] * 5
        assert (await store.counts())["ledger"] == 100


async def test_on_loop_waits_for_the_write_lock_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with Store(path, on_loop=True) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        applying = asyncio.ensure_future(store.apply(batch(8)))
        try:
            # `eventually` polls on this loop: it returns only if the loop runs while the apply waits (a wait in
            # SQLite's busy handler would hold the loop for the whole 30 s busy timeout).
            await eventually(lambda: in_lock_wait(store), what="the loop running while apply waits for the lock")
            assert not applying.done()
            other.execute("COMMIT")
            result = await asyncio.wait_for(applying, 30)
        finally:
            other.close()
        assert len(result.inserted) == 8


def in_lock_wait(store: Store) -> bool:
    """The store is in `_begin_on_loop`'s wait: its connection's busy timeout is 0 only there."""
    return bool(store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0)


async def test_a_batch_cancelled_while_waiting_for_the_lock_leaves_no_transaction(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with Store(path, on_loop=True) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        waiting = asyncio.ensure_future(store.apply(batch(4)))
        await eventually(lambda: in_lock_wait(store), what="the batch waiting for the lock")
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not store.conn.in_transaction and not in_lock_wait(store)
        queued = asyncio.ensure_future(store.apply(batch(8)))
        await eventually(lambda: in_lock_wait(store), what="the next batch waiting for the lock")
        other.execute("COMMIT")
        other.close()
        result = await queued
        assert len(result.inserted) == 8
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] == 30_000, "the busy timeout restored"
        assert (await store.counts())["ledger"] == 8
    # Nothing holds the lock once the batch is committed: another writer gets it at once.
    probe = sqlite3.connect(path, isolation_level=None, timeout=0)
    probe.execute("BEGIN IMMEDIATE")
    probe.execute("ROLLBACK")
    probe.close()


async def test_a_lock_held_past_the_busy_timeout_is_store_busy(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    async with Store(path, on_loop=True) as store:
        store.conn.execute("PRAGMA busy_timeout=50")
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(StoreBusyError, match="locked"):
                await store.apply(batch(4))
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert len((await store.apply(batch(4))).inserted) == 4


@pytest.mark.parametrize(("services", "on_loop"), [(("store",), True), (("store", "query"), False)])
async def test_the_store_service_applies_on_the_loop_only_when_alone(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, monkeypatch: pytest.MonkeyPatch,
    services: tuple[str, ...], on_loop: bool,
) -> None:
    threads = recording_threads(monkeypatch)
    await start_runtime(services=services)
    client = await open_client("one")
    client.emit(h.execution())
    await client.flush()
    await eventually(lambda: h.ledger_count(db) == 1, what="the event stored")
    assert (threads == {threading.get_ident()}) is on_loop, threads


async def test_a_synchronous_writer_on_the_same_loop_never_finds_the_store_mid_transaction(tmp_path: Path) -> None:
    """The store holds the write lock only inside one synchronous stretch: another writer on the same loop (a
    consolidator's session index, a test) never meets it, so never blocks the thread that must commit."""
    path = tmp_path / "store.db"
    async with Store(path, on_loop=True) as store:
        other = sqlite3.connect(path, isolation_level=None, timeout=0)  # no waiting: a held lock is an error
        other.execute("CREATE TABLE side (n INTEGER)")

        async def writer() -> None:
            for i in range(200):
                other.execute("INSERT INTO side VALUES (?)", (i,))
                await asyncio.sleep(0)

        try:
            await asyncio.gather(writer(), *(store.apply(batch(8)) for _ in range(20)))
        finally:
            other.close()
        assert (await store.counts())["ledger"] == 160
