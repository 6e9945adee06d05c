"""`SyncPheromone`: the client for jobs that are not asyncio: the same operations as `Pheromone`, blocking.

    with SyncPheromone(workspace="acme", job="nightly-42") as ph:
        ph.emit(record)                          # returns the event id; never waits on the network
        ph.flush()
        events = ph.events(EventQuery(limit=10))
        best = ph.queries.patterns(tags=["api"]) # every QueryClient operation, blocking
        for msg in ph.subscribe(kinds={"discovery"}, timeout=30):
            ...

It runs an ordinary `Pheromone` on an event loop of its own, in a daemon thread, and hands each call to it: the
buffering, spooling, at-least-once delivery and ordering guarantees are that client's, unchanged. `emit()` costs
one hand-off to that thread (no network); a query or `flush()` blocks the caller until the answer. A client is
used from any number of threads; `close()` (or leaving `with`) flushes, closes and ends the thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, Self, TypeVar

from pheromone.client import ClientStats, Pheromone
from pheromone.contracts import Envelope, EventQuery, Payload
from pheromone.contracts.broadcast import BroadcastKind, BroadcastMessage, RateLimitStatus
from pheromone.errors import ClientClosedError
from pheromone.subscriptions import Subscription

T = TypeVar("T")


class _Loop:
    """An event loop on a daemon thread, and the two ways to use it from another thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="pheromone-sync", daemon=True)
        self.thread.start()

    def run(self, coro: Awaitable[T], timeout: float | None = None) -> T:
        """Run `coro` on the loop and wait for its result (its exception is raised here)."""
        if threading.current_thread() is self.thread:
            raise RuntimeError("a SyncPheromone call from its own loop thread would wait for itself")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)  # type: ignore[arg-type]

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Call a plain function on the loop's thread (loop state is not thread-safe) and return its result."""
        done: Future[T] = Future()

        def call() -> None:
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                done.set_exception(exc)

        self.loop.call_soon_threadsafe(call)
        return done.result()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            self.loop.close()


class SyncPheromone:
    """A job's blocking handle on pheromone; takes `Pheromone`'s arguments (url, workspace, job, prefix, …)."""

    def __init__(self, url: str | None = None, **kwargs: Any) -> None:
        self._loop = _Loop()
        try:
            # Built and opened on the loop's thread: its tasks and events belong to that loop.
            self._client: Pheromone = self._loop.run(_make(url, kwargs))
        except BaseException:
            self._loop.stop()
            raise
        self.workspace, self.job, self.keys = self._client.workspace, self._client.job, self._client.keys
        self.queries = _Blocking(self._client.queries, self._loop)
        """Every `pheromone.queries.QueryClient` operation (patterns, pattern, entropy, …), blocking."""
        self._closed = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Flush (up to the client's `close_timeout`), close and end the loop's thread; idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run(self._client.close())
        finally:
            self._loop.stop()

    def _live(self) -> _Loop:
        if self._closed:
            raise ClientClosedError("call on a SyncPheromone that is closed")
        return self._loop

    # -- emitting: return at once, like Pheromone's ---------------------------------------------------

    def emit(self, record: Payload, *, correlation_id: str | None = None, occurred_at: Any = None) -> str:
        return self._live().call(self._client.emit, record, correlation_id=correlation_id, occurred_at=occurred_at)

    def report_rate_limit(self, model: str, error_code: str, duration_seconds: float, **kwargs: Any) -> str:
        return self._live().call(self._client.report_rate_limit, model, error_code, duration_seconds, **kwargs)

    def publish_discovery(self, pattern_type: str, pattern_name: str, effectiveness_score: float,
                          **kwargs: Any) -> str:
        return self._live().call(self._client.publish_discovery, pattern_type, pattern_name, effectiveness_score,
                                 **kwargs)

    def flush(self, timeout: float | None = 10.0) -> None:
        self._live().run(self._client.flush(timeout))

    @property
    def backlog(self) -> int:
        return self._live().call(lambda: self._client.backlog)

    @property
    def spool_bytes(self) -> int:
        return self._live().call(lambda: self._client.spool_bytes)

    @property
    def stats(self) -> ClientStats:
        return self._client.stats

    # -- queries and rate limits: block until the answer ------------------------------------------------

    def events(self, query: EventQuery | None = None, *, timeout: float = 10.0) -> list[Envelope]:
        return self._live().run(self._client.events(query, timeout=timeout))

    def playbook(self, workspace: str | None = None, *, timeout: float = 10.0) -> str:
        return self._live().run(self._client.playbook(workspace, timeout=timeout))

    def guidance(self, model: str | None = None, *, limit: int = 20, timeout: float = 10.0) -> dict[str, Any]:
        return self._live().run(self._client.guidance(model, limit=limit, timeout=timeout))

    def rate_limit(self, model: str, error_code: str | None = None) -> RateLimitStatus:
        return self._live().run(self._client.rate_limit(model, error_code))

    def rate_limits(self) -> list[RateLimitStatus]:
        return self._live().run(self._client.rate_limits())

    def wait_until_free(self, model: str, timeout: float, *, error_code: str | None = None) -> bool:
        return self._live().run(self._client.wait_until_free(model, timeout, error_code=error_code))

    # -- broadcasts ------------------------------------------------------------------------------------

    def subscribe(
        self, *, kinds: Iterable[BroadcastKind | str] | None = None, tags: Iterable[str] | None = None,
        min_effectiveness: float | None = None, include_own: bool = False, max_queue: int = 10_000,
        timeout: float | None = None,
    ) -> SyncSubscription:
        """`Pheromone.subscribe`'s filter; iterating ends when it is closed, or after `timeout` seconds without
        a message (None: never)."""
        sub = self._live().call(self._client.subscribe, kinds=kinds, tags=tags, min_effectiveness=min_effectiveness,
                                include_own=include_own, max_queue=max_queue)
        return SyncSubscription(sub, self._loop, timeout)


class SyncSubscription:
    """A blocking iterator of `BroadcastMessage`s; `get(timeout)` takes one; `close()` ends it."""

    def __init__(self, sub: Subscription, loop: _Loop, timeout: float | None) -> None:
        self._sub, self._loop, self._timeout = sub, loop, timeout

    def __iter__(self) -> Iterator[BroadcastMessage]:
        while True:
            try:
                yield self.get(self._timeout)
            except (StopAsyncIteration, TimeoutError):
                return

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, timeout: float | None = None) -> BroadcastMessage:
        """The next message; TimeoutError after `timeout` seconds, StopAsyncIteration once closed."""
        return self._loop.run(self._sub.get(timeout))

    def live(self, timeout: float | None = None) -> None:
        """Block until the reader has caught up with the broadcast stream (`Subscription.live`)."""
        self._loop.run(self._sub.live(timeout))

    def close(self) -> None:
        if not self._loop.loop.is_closed():
            self._loop.call(self._sub.close)

    @property
    def dropped(self) -> int:
        return self._sub.dropped


class _Blocking:
    """Wraps an object whose methods are coroutines: each call runs on the loop and returns the result."""

    def __init__(self, target: Any, loop: _Loop) -> None:
        self._target, self._loop = target, loop

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._target, name)
        if not callable(method) or name.startswith("_"):
            raise AttributeError(name)

        def blocking(*args: Any, **kwargs: Any) -> Any:
            return self._loop.run(method(*args, **kwargs))

        return blocking


async def _make(url: str | None, kwargs: dict[str, Any]) -> Pheromone:
    client = Pheromone(url, **kwargs)
    await client.open()
    return client
