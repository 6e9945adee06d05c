"""A local append-only spool for records that could not reach Redis, replayed in order on reconnect.

Files in the directory, per spool file (names start with a zero-padded `time.time_ns()`, so they sort by age):
    spool-<ns>-<pid>-<random>.jsonl   one record per line, `record + b"\\n"`, only ever appended to
    spool-….jsonl.lock                whoever holds an exclusive flock on it owns the .jsonl
    spool-….jsonl.offset              bytes consumed so far, replaced atomically (absent: 0)

Guarantees:
- Each open Spool appends to a file of its own, so processes can share a directory. `open()` adopts every
  file whose lock nobody holds (its owner closed or died) and replays those, oldest first, before its own.
- `append()` hands its records to the OS in one write(2) (there is no user-space buffer to flush), so they
  survive the process being killed; surviving an OS crash needs `fsync()`, which the caller may call.
- Only `commit()` consumes. A crash between sending a batch and committing it re-reads that batch: delivery
  is at-least-once, and the receiver dedupes by event id.
- A writer killed mid-append may leave a torn last line. Its adopter logs a warning and drops it: `append()`
  never returned, so nobody was told it was stored.
- Not thread-safe: the client calls a Spool from its event-loop thread only. Calls are short blocking file
  operations (no fsync), cheap enough not to need a thread.

Errors (an OSError is mapped at the boundary):
    SpoolError           the spool cannot do what was asked
    └── SpoolFullError   over `max_bytes` (unless `append(..., over_limit=True)`), or the disk is full;
                         nothing was written
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

__all__ = ["Cursor", "Spool", "SpoolError", "SpoolFullError"]

logger = logging.getLogger(__name__)


class SpoolError(Exception):
    """The spool cannot do what was asked."""


class SpoolFullError(SpoolError):
    """Over `max_bytes`, or the disk is full; nothing was written."""


@dataclass(frozen=True)
class Cursor:
    """Opaque: where a `read_batch` ended, as (file name, byte offset past the last record) per file."""

    ends: tuple[tuple[str, int], ...]


@dataclass
class _File:
    path: Path
    lock_fd: int
    size: int  # bytes of whole lines; only the owner appends, so this is exact without stat()
    offset: int = 0  # bytes consumed, always at a line boundary

    def sidecar(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name + suffix)


@contextlib.contextmanager
def _mapped(action: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        kind = SpoolFullError if exc.errno in (errno.ENOSPC, errno.EDQUOT) else SpoolError
        raise kind(f"spool {action} failed: {exc}") from exc


def _lock(path: Path) -> int | None:
    """Take the exclusive flock on `path` without waiting; None if a live process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    with contextlib.suppress(BlockingIOError, FileNotFoundError):
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # A holder deletes its lock file last; if we opened that inode just before, our lock guards a name
        # nobody can see any more, so it does not count.
        if os.path.samestat(os.stat(path), os.fstat(fd)):
            return fd
    os.close(fd)
    return None


def _whole_lines(path: Path) -> int:
    """Length of `path` up to and including its last newline."""
    with path.open("rb") as fh:
        end = fh.seek(0, os.SEEK_END)
        while end > 0:
            start = fh.seek(max(0, end - 65536))
            newline = fh.read(end - start).rfind(b"\n")
            if newline >= 0:
                return start + newline + 1
            end = start
    return 0


class Spool:
    """The spool files of one directory that this process owns or has adopted. See the module docstring."""

    def __init__(self, directory: Path, *, max_bytes: int = 256 * 1024 * 1024) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._is_open = False
        self._adopted: list[_File] = []  # replayed first, oldest first
        self._own: _File | None = None  # created by the first append, deleted once fully consumed
        self._fd = -1  # O_APPEND descriptor of the own file

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def open(self) -> None:
        if self._is_open:
            raise SpoolError("spool is already open")
        try:
            with _mapped("open"):
                self.directory.mkdir(parents=True, exist_ok=True)
                for path in sorted(self.directory.glob("spool-*.jsonl")):
                    self._adopt(path)
        except BaseException:
            self.close()  # give back the files adopted so far
            raise
        self._is_open = True

    def close(self) -> None:
        """Release every file; what is not consumed stays on disk for the next opener to adopt."""
        if self._own is not None:
            os.close(self._fd)
        for f in self._files():
            os.close(f.lock_fd)
        self._adopted, self._own, self._fd, self._is_open = [], None, -1, False

    def append(self, records: Sequence[bytes], *, over_limit: bool = False) -> None:
        """Store `records` (each a line without its newline) after everything already spooled.

        `over_limit`: write even past `max_bytes` (only a full disk refuses). The client's last spill on close
        uses it: past that point the records have nowhere else to go, and a soft bound is not worth losing them.
        """
        self._check_open()
        if any(b"\n" in record for record in records):
            raise ValueError("a spool record must not contain a newline")
        data = b"".join(record + b"\n" for record in records)
        if not data:
            return
        if not over_limit and sum(f.size for f in self._files()) + len(data) > self.max_bytes:
            raise SpoolFullError(f"spooling {len(data)} more bytes would exceed {self.max_bytes}")
        with _mapped("append"):
            if self._own is None:
                self._own = self._create()
            try:
                view = memoryview(data)
                while view:  # one write(2) unless the kernel writes short
                    view = view[os.write(self._fd, view) :]
            except OSError:
                # Cut off a partly written line, or the next append would glue a record onto it.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._own.size)
                raise
            self._own.size += len(data)

    def fsync(self) -> None:
        """Make what `append` has written survive an OS crash or power loss."""
        self._check_open()
        if self._own is not None:
            with _mapped("fsync"):
                os.fsync(self._fd)

    def pending(self) -> bool:
        return self.backlog_bytes() > 0

    def backlog_bytes(self) -> int:
        """Bytes of records not yet consumed, newlines included."""
        return sum(f.size - f.offset for f in self._files())

    def read_batch(self, max_records: int) -> tuple[list[bytes], Cursor]:
        """Up to `max_records` of the oldest unconsumed records, without consuming them; see `commit`."""
        self._check_open()
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        records: list[bytes] = []
        ends: list[tuple[str, int]] = []
        with _mapped("read"):
            for f in self._files():
                if len(records) == max_records:
                    break
                with f.path.open("rb") as fh:
                    fh.seek(pos := f.offset)
                    while pos < f.size and len(records) < max_records:
                        line = fh.readline()
                        if not line.endswith(b"\n"):
                            raise SpoolError(f"{f.path.name} changed under its owner at byte {pos}")
                        records.append(line[:-1])
                        pos += len(line)
                ends.append((f.path.name, pos))
        return records, Cursor(tuple(ends))

    def commit(self, cursor: Cursor) -> None:
        """Mark the records of a `read_batch` consumed. A cursor already committed changes nothing."""
        self._check_open()
        files = {f.path.name: f for f in self._files()}
        with _mapped("commit"):
            for name, end in cursor.ends:
                f = files.get(name)
                if f is None or end <= f.offset:  # deleted once consumed, or committed before
                    continue
                f.offset = end
                if f.offset < f.size:
                    tmp = f.sidecar(".offset.tmp")  # only the lock holder writes it: a fixed name is safe
                    tmp.write_bytes(b"%d" % f.offset)
                    os.replace(tmp, f.sidecar(".offset"))
                    continue
                # Consumed: a fresh own file is made by the next append, so a name is never reused and a
                # stale cursor can never point into newer records.
                if f is self._own:
                    os.close(self._fd)
                    self._own, self._fd = None, -1
                else:
                    self._adopted.remove(f)
                self._delete(f)

    def _files(self) -> list[_File]:
        return [*self._adopted, self._own] if self._own is not None else list(self._adopted)

    def _check_open(self) -> None:
        if not self._is_open:
            raise SpoolError("spool is not open")

    def _create(self) -> _File:
        # time first, so names sort by age; pid and random bits keep names unique across processes.
        path = self.directory / f"spool-{time.time_ns():020d}-{os.getpid()}-{secrets.token_hex(4)}.jsonl"
        f = _File(path, -1, 0)
        # The lock exists and is held before the data file does, so no opener mistakes it for an orphan.
        lock_fd = _lock(f.sidecar(".lock"))
        if lock_fd is None:
            raise SpoolError(f"cannot lock new spool file {path.name}")
        f.lock_fd = lock_fd
        try:
            self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        except OSError:
            self._delete(f)
            raise
        return f

    def _adopt(self, path: Path) -> None:
        lock_fd = _lock(path.with_name(path.name + ".lock"))
        if lock_fd is None:
            return  # its owner is alive, or another opener adopted it first
        f = _File(path, lock_fd, 0)
        try:
            f.size = _whole_lines(path)
        except FileNotFoundError:  # its holder consumed and deleted it after we listed the directory
            self._delete(f)
            return
        if (torn := path.stat().st_size - f.size) > 0:
            logger.warning("spool %s: dropped a torn last record of %d bytes (writer died)", path.name, torn)
            os.truncate(path, f.size)
        try:
            f.offset = min(int(f.sidecar(".offset").read_bytes()), f.size)
        except FileNotFoundError:
            pass
        except ValueError:  # lost in an OS crash: replaying everything is what at-least-once allows
            logger.warning("spool %s: unreadable offset file, replaying from the start", path.name)
        if f.offset == f.size:
            self._delete(f)
        else:
            self._adopted.append(f)

    def _delete(self, f: _File) -> None:
        # Data first and lock last: while the lock file exists and is held, nobody else touches the file.
        for suffix in ("", ".offset", ".offset.tmp", ".lock"):
            f.sidecar(suffix).unlink(missing_ok=True)
        os.close(f.lock_fd)
