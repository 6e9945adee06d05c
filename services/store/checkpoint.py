"""The SQLite writer's WAL checkpoints, off its commit path.

By default (`wal_autocheckpoint`, 1,000 pages) the commit that takes the WAL past its threshold runs the
checkpoint itself: it copies the WAL into the database file and syncs both, inside the store's batch, on the
loop's thread when the store is alone in its process. The writer's connection turns that off, and a
`Checkpointer` thread with its own connection runs a PASSIVE checkpoint after each commit instead: SQLite
releases the GIL while it copies and syncs, so that work overlaps the next batch's Python on another core
(bench/RESULTS.md, "The store fills its core"). A PASSIVE checkpoint never blocks the writer or a reader; what
a reader's snapshot still needs is left for the next one, as SQLite's own automatic checkpoint would.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from pathlib import Path

from pheromone.services.store.schema import connect

log = logging.getLogger(__name__)

RETRY_PAUSE_S = 0.05
"""After a failed checkpoint (the database briefly locked by another process's checkpoint, say): the next
commit asks again, but not sooner than this, so a persistent failure cannot spin the thread."""


class Checkpointer:
    """A daemon thread that checkpoints `path`'s WAL whenever `committed()` says a transaction landed.

    Commits that happen while a checkpoint runs are folded into the next one. `close()` stops the thread
    after the checkpoint in progress; the writer's own connection, closed last, checkpoints what remains.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoints = 0
        self._wake = threading.Event()
        self._stopping = False
        self._conn = connect(str(path))
        self._thread = threading.Thread(target=self._run, name="pheromone-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        self._wake.set()

    def close(self) -> None:
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._conn.close()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            try:
                self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
            except sqlite3.Error as exc:
                # Nothing is lost: the WAL keeps every committed page until a checkpoint succeeds.
                log.debug("WAL checkpoint of %s failed, retried after the next commit: %s", self.path, exc)
                time.sleep(RETRY_PAUSE_S)
