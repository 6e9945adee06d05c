"""The SQLite writer's WAL checkpoints run on a thread of their own (`services.store.checkpoint`), not inside the
writer's commits: the commit path never copies the WAL into the database file, yet committed events reach
that file soon after, a reader meanwhile sees every commit, and a checkpoint failing loses nothing."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from pheromone.services.store import checkpoint
from pheromone.services.store.db import Store
from tests.services.test_store_on_loop import batch
from tests.support import eventually


def file_only_count(path: Path) -> int:
    """Ledger rows in the database file itself (`immutable=1` makes SQLite ignore the WAL); -1 while the file
    cannot be read that way (a checkpoint is writing it)."""
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


@pytest.mark.parametrize("on_loop", [True, False])
async def test_commits_reach_the_database_file_through_the_checkpoint_thread(tmp_path: Path, on_loop: bool) -> None:
    path = tmp_path / "store.db"
    events = batch(40)
    async with Store(path, on_loop=on_loop) as store:
        # The writer's own connection never checkpoints: with SQLite's default it would, once the WAL
        # passed 1,000 pages, inside whichever commit took it there.
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        for i in range(0, len(events), 10):
            await store.apply(events[i : i + 10])
        # Far below 1,000 pages: without the thread these rows would sit in the WAL until the store closed.
        await eventually(lambda: file_only_count(path) == len(events), what="rows checkpointed into the file")
        reader = sqlite3.connect(path)
        try:
            assert reader.execute("SELECT COUNT(*) FROM ledger").fetchone()[0] == len(events)
        finally:
            reader.close()


class FailingFirst:
    """The checkpoint thread's connection, failing its first checkpoint as a locked database would."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn, self.failures = conn, 0

    def execute(self, sql: str) -> sqlite3.Cursor:
        if self.failures == 0:
            self.failures += 1
            raise sqlite3.OperationalError("database is locked")
        return self.conn.execute(sql)

    def close(self) -> None:
        self.conn.close()


async def test_a_failing_checkpoint_loses_nothing_and_the_next_commit_retries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpoint, "RETRY_PAUSE_S", 0.0)
    path = tmp_path / "store.db"
    events = batch(20)
    async with Store(path, on_loop=True) as store:
        assert store._checkpointer is not None
        # Opening checkpoints the schema into the file.
        await eventually(lambda: file_only_count(path) == 0, what="the empty ledger in the file")
        flaky = FailingFirst(store._checkpointer._conn)
        monkeypatch.setattr(store._checkpointer, "_conn", flaky)
        await store.apply(events[:10])
        await eventually(lambda: flaky.failures == 1, what="the first checkpoint failing")
        assert file_only_count(path) == 0  # the batch is in the WAL only
        assert (await store.counts())["ledger"] == 10  # and there for every reader
        await store.apply(events[10:])
        await eventually(lambda: file_only_count(path) == len(events), what="rows checkpointed after the failure")


class Slow:
    """The checkpoint thread's connection, each checkpoint taking `pause` seconds longer (a slow disk)."""

    def __init__(self, conn: sqlite3.Connection, pause: float) -> None:
        self.conn, self.pause = conn, pause

    def execute(self, sql: str) -> sqlite3.Cursor:
        time.sleep(self.pause)
        return self.conn.execute(sql)

    def close(self) -> None:
        self.conn.close()


@pytest.mark.parametrize("on_loop", [True, False])
async def test_the_wal_starts_over_although_checkpoints_are_slower_than_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_loop: bool
) -> None:
    """SQLite starts the WAL over only when a write transaction begins after a checkpoint that copied it all:
    a writer that began while the thread was still checkpointing would grow the WAL by every batch. Here the
    WAL is past the writer's threshold from the start (`WAIT_FRAMES` 0), so it waits before every batch."""
    monkeypatch.setattr(checkpoint, "WAIT_FRAMES", 0)
    events = batch(40)
    async with Store(tmp_path / "store.db", on_loop=on_loop) as store:
        cp = store._checkpointer
        assert cp is not None
        monkeypatch.setattr(cp, "_conn", Slow(cp._conn, 0.05))
        await store.apply(events[:4])
        assert cp.wait_idle()
        one_batch = cp.log_frames  # the schema's pages and one batch's
        for i in range(4, len(events), 4):
            await store.apply(events[i : i + 4])
        assert cp.wait_idle()
        assert cp.log_frames <= one_batch, (cp.log_frames, one_batch)
        assert (await store.counts())["ledger"] == len(events)


@pytest.mark.parametrize("on_loop", [True, False])
async def test_below_the_threshold_the_writer_does_not_wait_for_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_loop: bool
) -> None:
    """A short WAL is not worth a wait: the writer begins at once, however slow the checkpoint in progress."""
    events = batch(40)
    async with Store(tmp_path / "store.db", on_loop=on_loop) as store:
        cp = store._checkpointer
        assert cp is not None
        monkeypatch.setattr(cp, "_conn", Slow(cp._conn, 0.05))
        waits: list[float] = []
        wait_idle = cp.wait_idle

        def counted(timeout: float = checkpoint.WAIT_LIMIT_S) -> bool:
            waits.append(timeout)
            return wait_idle(timeout)

        monkeypatch.setattr(cp, "wait_idle", counted)
        for i in range(0, len(events), 4):
            await store.apply(events[i : i + 4])
        assert waits == []
        assert wait_idle() and cp.log_frames < checkpoint.WAIT_FRAMES
        assert (await store.counts())["ledger"] == len(events)
