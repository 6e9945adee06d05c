"""The store's write seam (services/store/backend.py): the store service and a rebuild need nothing of a backend
but `StoreBackend`'s methods, and the consolidator's index writes nothing but `SessionIndex`'s.

The SQLite `Store` is driven here through `ProtocolOnly`, a proxy that has exactly the protocol's methods (a
test holds the two lists equal): a method the service calls beyond the protocol, or one the Store loses, fails
these tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import redis.asyncio as aioredis

from pheromone.contracts import Envelope
from pheromone.contracts.sessions import AutonomyMode, LearningSession, SessionStatus, TriggerKind
from pheromone.contracts.streams import Keys
from pheromone.services.context import ServiceContext
from pheromone.services.sessions import artifacts
from pheromone.services.store.backend import ApplyResult, SessionIndex, StoreBackend
from pheromone.services.store.db import Store
from pheromone.services.store.service import build
from pheromone.services.store.session_store import SessionStore
from tests.services import helpers as h


class ProtocolOnly:
    """A `StoreBackend` with nothing else: each method delegates to `inner` and is counted in `calls`."""

    def __init__(self, inner: StoreBackend) -> None:
        self._inner = inner
        self.calls: list[str] = []

    async def open(self) -> None:
        self.calls.append("open")
        await self._inner.open()

    async def close(self) -> None:
        self.calls.append("close")
        await self._inner.close()

    async def apply(self, events: Sequence[tuple[Envelope, bytes | str]]) -> ApplyResult:
        self.calls.append("apply")
        return await self._inner.apply(events)

    async def rebuild(self) -> int:
        self.calls.append("rebuild")
        return await self._inner.rebuild()

    async def checksum(self) -> str:
        self.calls.append("checksum")
        return await self._inner.checksum()


def members(cls: type) -> set[str]:
    return {name for name in vars(cls) if not name.startswith("_")}


def test_the_proxy_has_exactly_the_protocols_methods() -> None:
    assert members(ProtocolOnly) == members(StoreBackend) == {"open", "close", "apply", "rebuild", "checksum"}
    assert members(SessionIndex) == {"index", "reindex"}


def batch(*payloads: object) -> list[tuple[Envelope, bytes]]:
    envs = [h.envelope(p) for p in payloads]  # type: ignore[arg-type]
    return [(env, env.model_dump_json().encode()) for env in envs]


async def test_the_store_service_and_a_rebuild_use_only_the_protocol(
    tmp_path: Path, db: Path, prefix: str, redis: aioredis.Redis, redis_url: str
) -> None:
    backend = ProtocolOnly(Store(db))
    ctx = ServiceContext(h.settings(tmp_path, prefix), redis, Keys(prefix), redis_url)
    parts = await build(ctx, backend)
    handle = parts.workers[0].handler
    first = batch(h.execution(), h.observed("back off"), h.applied("back off", True), h.evolution(cycle=9_001))
    assert list(await handle(first)) == []
    applied = await backend.checksum()
    # Delivered again: exactly once, nothing changes. A second entry for a recorded cycle is refused alone.
    assert list(await handle(first)) == []
    assert await backend.checksum() == applied
    refused = await handle(batch(h.evolution(cycle=9_001), h.execution()))
    assert [(r[0], "already recorded" in r[1]) for r in refused] == [(0, True)]
    changed = await backend.checksum()
    assert changed != applied  # the second execution
    assert parts.close is not None
    await parts.close()
    assert set(backend.calls) == {"open", "apply", "checksum", "close"}

    again = ProtocolOnly(Store(db))
    await again.open()
    try:
        assert await again.rebuild() == 5  # the ledger's events: four, then the second execution
        assert await again.checksum() == changed
    finally:
        await again.close()


def session(i: int) -> LearningSession:
    t = datetime(2025, 1, 1, i, tzinfo=UTC)
    return LearningSession(id=f"s{i}", workspace="ws", trigger=TriggerKind.ON_DEMAND, trigger_id=f"t{i}",
                           autonomy=AutonomyMode.TIERED, status=SessionStatus.COMPLETED, started_at=t, ended_at=t)


async def test_the_session_index_is_written_through_its_protocol(tmp_path: Path, db: Path) -> None:
    async with Store(db):
        pass
    root = tmp_path / "sessions"
    store = SessionStore(db)
    index: SessionIndex = store
    try:
        index.index(session(1), artifacts.write_session(root, session(1)))
        artifacts.write_session(root, session(2))  # written, not indexed: a reindex finds it
        assert [r["session_id"] for r in store.sessions(None, 10)] == ["s1"]
        (root / "junk").mkdir()
        (root / "junk" / artifacts.SESSION_FILE).write_text("{not a session")
        assert index.reindex(root) == (2, [str(root / "junk" / artifacts.SESSION_FILE)])
        assert [r["session_id"] for r in store.sessions(None, 10)] == ["s2", "s1"]
        assert store.session_for_trigger("t2") == "s2"
    finally:
        store.close()
