"""Stops an embedded server once the process that started it is gone, however it went (SIGKILL included).

`pheromone.plumbing.embedded` runs this file as `python -I -S embedded_watch.py SERVER_PID` right after launching the
server, with stdin the read end of a pipe whose write end only the starting process holds. The kernel closes
that end when the process ends, whether it exits, crashes or is killed, so end-of-file on stdin means the
starter is gone: the server gets SIGTERM (Valkey's graceful shutdown, which flushes the AOF), then SIGKILL if
it is still up `GRACE_S` later. The watcher also ends when the server does, and a clean `stop()` kills it first.

Where the kernel offers it (Linux), the server is watched through a pidfd, which names that very process and
never a later one that reuses its pid; elsewhere, by polling its pid. Standard library only: it runs without
the virtualenv's packages (`-I -S`).
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

GRACE_S = 10.0
POLL_S = 1.0
"""Without a pidfd: how often the server's pid is checked."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def main(pid: int) -> None:
    try:
        handle: int | None = os.pidfd_open(pid)
    except (AttributeError, OSError):
        handle = None  # no pidfd (not Linux, or an old kernel); or the server already exited
        if not _alive(pid):
            return
    starter = sys.stdin.fileno()
    watched = [starter] if handle is None else [starter, handle]
    while True:
        ready, _, _ = select.select(watched, [], [], POLL_S if handle is None else None)
        if handle in ready or (handle is None and not _alive(pid)):
            return  # the server ended by itself: nothing to stop
        if starter in ready and not os.read(starter, 4096):
            break  # end of file: the starter is gone
    for sig, wait_s in ((signal.SIGTERM, GRACE_S), (signal.SIGKILL, GRACE_S)):
        try:
            if handle is not None:
                signal.pidfd_send_signal(handle, sig)
            else:
                os.kill(pid, sig)
        except ProcessLookupError:
            return
        if handle is not None:
            if select.select([handle], [], [], wait_s)[0]:
                return
        else:
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                if not _alive(pid):
                    return
                time.sleep(0.05)


if __name__ == "__main__":
    main(int(sys.argv[1]))
