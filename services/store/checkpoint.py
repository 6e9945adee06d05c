"""The SQLite writer's WAL checkpoints, off its commit path.

By default (`wal_autocheckpoint`, 1,000 pages) the commit that takes the WAL past its threshold runs the
checkpoint itself: it copies the WAL into the database file and syncs both, inside the store's batch, on the
loop's thread when the store is alone in its process. The writer's connection turns that off, and a
`Checkpointer` thread with its own connection runs a PASSIVE checkpoint after each commit instead: SQLite
releases the GIL while it copies and syncs, so that work overlaps the reading and parsing of the next batch
(bench/RESULTS.md, "The store fills its core"). A PASSIVE checkpoint never blocks the writer or a reader; what
a reader's snapshot still needs is left for the next one, as SQLite's own automatic checkpoint would.

SQLite starts the WAL over from its beginning only when a write transaction begins after a checkpoint that
copied everything, so a writer that always began while the thread was still copying would grow the WAL
without bound. Once the WAL is `WAIT_FRAMES` long, the writer begins its next transaction only after the
checkpoint in progress is done (`must_wait`, `wait_idle`), and the WAL starts over; below that it begins at
once (bench/RESULTS.md: waiting after every commit cost batches applied back to back 5-10 %).
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
WAIT_FRAMES = 2_000
"""The WAL's length (frames, as the last checkpoint saw it) from which the writer waits for the checkpoint in
progress before it begins: twice SQLite's own threshold. Below it the writer begins at once, and a batch that
lands while the thread copies only lengthens the WAL until a later start catches a finished checkpoint."""
WAIT_LIMIT_S = 10.0
"""The longest a writer waits for a checkpoint (a disk that stalls): past it, it writes on and the WAL grows
until a later checkpoint catches up."""


class Checkpointer:
    """A daemon thread that checkpoints `path`'s WAL whenever `committed()` says a transaction landed.

    Commits that happen while a checkpoint runs are folded into the next one. `close()` stops the thread
    after the checkpoint in progress; the writer's own connection, closed last, checkpoints what remains.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.checkpoints = 0
        self.log_frames = 0
        """The WAL's length in frames at the last checkpoint (SQLite's answer to it)."""
        self._cond = threading.Condition()
        self._pending = False  # a commit not yet checkpointed
        self._running = False
        self._stopping = False
        self._conn = connect(str(path))
        self._thread = threading.Thread(target=self._run, name="pheromone-checkpoint", daemon=True)
        self._thread.start()

    def committed(self) -> None:
        with self._cond:
            self._pending = True
            self._cond.notify_all()

    def idle(self) -> bool:
        """No commit waits for a checkpoint and none runs."""
        with self._cond:
            return not self._pending and not self._running

    def must_wait(self) -> bool:
        """The writer should let the checkpoint in progress finish before it begins (see `WAIT_FRAMES`)."""
        return self.log_frames >= WAIT_FRAMES and not self.idle()

    def wait_idle(self, timeout: float = WAIT_LIMIT_S) -> bool:
        """Block until `idle()` (True) or `timeout` seconds (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._pending and not self._running, timeout)

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self._conn.close()

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending or self._stopping)
                if self._stopping:
                    self._cond.notify_all()
                    return
                self._pending, self._running = False, True
            failed = False
            try:
                ((_, log_frames, _),) = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                self.checkpoints += 1
                self.log_frames = log_frames
            except sqlite3.Error as exc:
                # Nothing is lost: the WAL keeps every committed page until a checkpoint succeeds.
                log.debug("WAL checkpoint of %s failed, retried after the next commit: %s", self.path, exc)
                failed = True
            with self._cond:
                self._running = False
                self._cond.notify_all()
            if failed:
                time.sleep(RETRY_PAUSE_S)
