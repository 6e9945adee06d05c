"""PostgreSQL's readers give the SQLite readers' answers: `PgReader` (every `StoreReads` method and the entropy
service's reads) and `PgSessionStore` (every `SessionStore` method) against `Reader` and `SessionStore`.

One SQLite store is filled through `Store` with every family of events (four simulated jobs in two
workspaces, the services' records, a learning session per workspace) and sessions indexed; each of its tables
is then copied row by row into a migrated PostgreSQL database, so both hold the same rows whatever the
PostgreSQL writer does. Each read runs on both with several argument sets (filters, limits, unknown ids) and
must return equal values, or raise the same error with the same message.
"""

from __future__ import annotations

import asyncio
import math
import random
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pheromone.contracts import EventKind, EventQuery, TimeRange
from pheromone.contracts.sessions import AutonomyMode, LearningSession, SessionStatus, TriggerKind
from pheromone.services.errors import StoreBusyError, StoreError, StoreNotMigrated
from pheromone.services.sessions import artifacts
from pheromone.services.settings import LearningSettings
from pheromone.services.store.db import Store
from pheromone.services.store.embedded_pg import EmbeddedPostgres
from pheromone.services.store.pg.conn import PgConn
from pheromone.services.store.pg.read_sql import nullable_columns, nulls_as_sqlite
from pheromone.services.store.pg.reader import PgReader
from pheromone.services.store.pg.schema import migrate
from pheromone.services.store.pg.session_store import PgSessionStore
from pheromone.services.store.reader import Reader
from pheromone.services.store.reads import StoreReads
from pheromone.services.store.session_store import SessionStore, guidance_checksum
from pheromone.simulate import SimJob
from tests.services import helpers as h

HOSTILE = "ws'; DROP TABLE ledger; -- %s ? :name %(x)s \\"
"""A filter value that would break a statement built from it: it must stay a bound parameter."""


@dataclass
class Stores:
    sqlite: Path
    url: str
    ids: dict[str, Any]
    """Ids and values found in the store, for the reads' arguments."""


def session(i: int, workspace: str) -> LearningSession:
    t = datetime(2025, 1, 1, i, tzinfo=UTC)
    return LearningSession(id=f"s{i}", workspace=workspace, trigger=TriggerKind.ON_DEMAND, trigger_id=f"t{i}",
                           autonomy=AutonomyMode.TIERED, status=SessionStatus.COMPLETED, started_at=t,
                           ended_at=t if i % 2 else None)


async def fill(db: Path) -> None:
    rng = random.Random(23)
    sims = [SimJob(f"ws-{i % 2}", f"job-{i}", random.Random(rng.random())) for i in range(4)]
    async with Store(db) as store:
        for sim in sims:
            records = h.mixed_records(sim, 300)
            # A pattern quarantined without a time (NULL quarantined_at) beside timed ones: NULL order matters.
            records += [h.observed("back off"), h.applied("back off", False), h.drift(), h.epistemic_drift(),
                        h.escalation(), h.rate_limit(seconds=3600), h.recovery()]
            envs = [h.envelope(r, workspace=sim.workspace, job=sim.job,
                               **({"correlation_id": f"corr-{k % 5}"} if k % 7 == 0 else {}))
                    for k, r in enumerate(records)]
            for start in range(0, len(envs), 50):
                await store.apply([(e, e.model_dump_json().encode()) for e in envs[start:start + 50]])
        # Groups of equal size, one of them NULL: SQLite lists NULL first among equals, PostgreSQL last unless
        # told (`execution_stats(..., by="model")` in ws-9).
        ties = [h.envelope(h.execution(model=m), workspace="ws-9") for m in (None, "m-a", None, "m-a", "m-b")]
        await store.apply([(e, e.model_dump_json().encode()) for e in ties])


def copy_tables(db: Path, url: str) -> None:
    """Every table of the SQLite store into the migrated PostgreSQL database, row by row, in rowid order."""
    conn = PgConn.connect(url)
    src = sqlite3.connect(db)
    try:
        migrate(conn)
        tables = [r[0] for r in src.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            rows = src.execute(f"SELECT * FROM {table}").fetchall()
            with conn.raw.cursor() as cur, cur.copy(f"COPY {table} FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
    finally:
        src.close()
        conn.close()


def found_ids(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)

    def one(sql: str) -> Any:
        return conn.execute(sql).fetchone()[0]

    try:
        return {
            "pattern": one("SELECT id FROM patterns ORDER BY priority_score DESC LIMIT 1"),
            "quarantined": one("SELECT id FROM patterns WHERE quarantine_status = 'quarantined' LIMIT 1"),
            "content_hash": one("SELECT content_hash FROM patterns WHERE content_hash IS NOT NULL LIMIT 1"),
            "drifting": one("SELECT pattern_id FROM pattern_drift LIMIT 1"),
            "transition_event": one("SELECT event_id FROM pattern_transitions LIMIT 1"),
            "mid_seq": one("SELECT seq FROM ledger ORDER BY seq LIMIT 1 OFFSET 500"),
            "mid_us": one("SELECT occurred_us FROM ledger ORDER BY seq LIMIT 1 OFFSET 600"),
            "correlation": one("SELECT correlation_id FROM ledger WHERE correlation_id IS NOT NULL LIMIT 1"),
            "error_code": one("SELECT error_code FROM error_recoveries GROUP BY 1 ORDER BY COUNT(*) DESC LIMIT 1"),
            "model": one("SELECT model FROM error_recoveries GROUP BY 1 ORDER BY COUNT(*) DESC LIMIT 1"),
            "job_hash": one("SELECT job_hash FROM exploration_budget LIMIT 1"),
            "tags": [r[0] for r in conn.execute("SELECT tag FROM tag_counts ORDER BY patterns DESC LIMIT 3")],
            "execution": one("SELECT id FROM executions LIMIT 1"),
            "event": one("SELECT event_id FROM ledger WHERE kind = 'execution' LIMIT 1"),
            "session": one("SELECT session_id FROM session_state LIMIT 1"),
            "edit": one("SELECT key FROM guidance LIMIT 1"),
        }
    finally:
        conn.close()


@pytest.fixture(scope="module")
def stores(pg_server: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Stores:
    root = tmp_path_factory.mktemp("pg-reads")
    db = root / "store.db"
    asyncio.run(fill(db))
    view = SessionStore(db)
    try:
        for i, ws in enumerate(("ws-0", "ws-1", "ws-0", "ws-1"), 1):
            view.index(session(i, ws), root / f"s{i}.json")
    finally:
        view.close()
    url = pg_server.create_database(f"reads_{uuid4().hex[:10]}")
    copy_tables(db, url)
    return Stores(db, url, found_ids(db))


def same(a: Any, b: Any) -> bool:
    """Equal, but for floats, which may differ in their last bits: an average or sum over REAL columns adds
    the rows in the order each engine visits them (SQLite by an index, PostgreSQL by a heap scan), and
    floating-point addition is not associative."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-300)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


async def outcome(call: Callable[[], Awaitable[Any]]) -> tuple[Any, ...]:
    """A call's value, or its error's type and message: what the two backends must agree on."""
    try:
        return ("value", await call())
    except Exception as exc:  # an error is an answer too: the same on both
        return ("error", type(exc).__name__, str(exc))


Read = Callable[[Any], Awaitable[Any]]


def event_query(**fields: Any) -> EventQuery:
    """An EventQuery; with HOSTILE, which the contract would refuse, built without validation (the reader
    must bind whatever it is given)."""
    return EventQuery.model_construct(**fields) if HOSTILE in fields.values() else EventQuery(**fields)


def reads(ids: dict[str, Any]) -> list[tuple[str, Read]]:
    """(method, a call of it on a reader) for every read, with several argument sets each."""
    mid = datetime.fromtimestamp(ids["mid_us"] / 1e6, UTC)
    queries = [
        EventQuery(), EventQuery(limit=7), EventQuery(workspace="ws-0", limit=500), EventQuery(job="job-1"),
        EventQuery(kinds=[EventKind.EXECUTION, EventKind.PATTERN_APPLIED], limit=50),
        EventQuery(correlation_id=ids["correlation"]),
        EventQuery(time_range=TimeRange(start=mid), limit=30),
        EventQuery(time_range=TimeRange(end=mid), workspace="ws-1", limit=30),
        EventQuery(workspace="nope"), EventQuery(workspace="ws:name"),
        event_query(workspace=HOSTILE), event_query(job=HOSTILE),
    ]
    pattern, tags = ids["pattern"], ids["tags"]
    out: list[tuple[str, Read]] = []
    for q in queries:
        out += [("events", lambda r, q=q: r.events(q)), ("page", lambda r, q=q: r.page(q, 0)),
                ("page", lambda r, q=q: r.page(q, ids["mid_seq"]))]
    out += [
        ("counts", lambda r: r.counts()),
        ("ledger_summary", lambda r: r.ledger_summary()),
        *(("ledger_since", lambda r, s=s: r.ledger_since(s)) for s in (0, ids["mid_seq"], 10**9)),
        *(("job_event_count", lambda r, j=j: r.job_event_count(j))
          for j in ((), ("job-0",), ("job-0", "job-1", HOSTILE))),
        ("settings", lambda r: r.settings()),
        *(("patterns", lambda r, kw=kw: r.patterns(**kw)) for kw in (
            {}, {"limit": 3}, {"pattern_type": "retry_pattern"}, {"tags": tags[:1]}, {"tags": tags},
            {"tags": tags[:2], "match_all_tags": True}, {"tags": ["no-such-tag"], "match_all_tags": True},
            {"statuses": ["pending", "quarantined", "validated", "retired"], "limit": 100},
            {"statuses": ["quarantined"]}, {"min_trust": 0.5}, {"min_priority": 0.1}, {"instrument": "x"},
            {"tags": tags, "min_trust": 0.3, "limit": 2}, {"pattern_type": HOSTILE, "tags": [HOSTILE]},
        )),
        *(("find_pattern", lambda r, p=p: r.find_pattern(p)) for p in (pattern, pattern[:8], "zzz", HOSTILE, "")),
        *(("pattern_history", lambda r, p=p, c=c: r.pattern_history(p, c, 5, 5))
          for p, c in ((pattern, ids["content_hash"]), (ids["quarantined"], None), ("nope", None))),
        *(("transition_of", lambda r, e=e: r.transition_of(e)) for e in (ids["transition_event"], HOSTILE)),
        ("entropy_state", lambda r: r.entropy_state()),
        *(("entropy_history", lambda r, n=n: r.entropy_history(n)) for n in (2, 1000)),
        *(("budget", lambda r, j=j: r.budget(j, 5)) for j in (None, ids["job_hash"], "nope")),
        *(("drift", lambda r, e=e, s=s: r.drift(epistemic=e, include_stable=s, limit=20))
          for e in (False, True) for s in (False, True)),
        *(("drift_of", lambda r, p=p: r.drift_of(p)) for p in (ids["drifting"], "nope")),
        ("drift_summary", lambda r: r.drift_summary()),
        *(("recovery_waits", lambda r, a=a: r.recovery_waits(*a))
          for a in ((ids["error_code"], None, 5, 100), (ids["error_code"], ids["model"], 50, 3), ("nope", None, 5, 5))),
        *(("similar_escalations", lambda r, a=a: r.similar_escalations(*a))
          for a in ((0.3, 0.4, 0.2, 0.3, 5), (0.5, 0.5, 1.0, 1.0, 50), (0.01, 0.01, 0.01, 0.01, 3))),
        *(("execution_stats", lambda r, f=f, b=b: r.execution_stats(f, b, 10))
          for f in ({}, {"workspace": "ws-0"}, {"workspace": "ws-9"}, {"model": ids["model"]}, {"job_hash": HOSTILE})
          for b in (None, "workspace", "job", "model")),
        *(("recovery_hours", lambda r, a=a: r.recovery_hours(*a))
          for a in ((None, None, None), ("ws-0", ids["error_code"], None), (None, None, ids["model"]))),
        *(("trajectory", lambda r, a=a: r.trajectory(*a)) for a in ((0, 10**6, 10), (2, 4, 10), (9, 1, 10))),
        *(("issue_classes", lambda r, n=n: r.issue_classes(n)) for n in (1, 100)),
        *(("active_rate_limits", lambda r, t=t: r.active_rate_limits(t)) for t in (0, ids["mid_us"], 2**62)),
        *(("guidance", lambda r, w=w: r.guidance(w)) for w in ("ws-0", "ws-1", HOSTILE)),
        *(("hand", lambda r, w=w: r.hand(w)) for w in ("ws-0", "nope")),
        ("playbook_workspaces", lambda r: r.playbook_workspaces()),
        *(("session_of_trigger", lambda r, t=t: r.session_of_trigger(t)) for t in ("t1", "t3", "nope")),
        # The entropy service's reads (EntropyReads), not part of StoreReads.
        ("entropy", lambda r: r.entropy(calculated_at=datetime(2025, 1, 1, tzinfo=UTC), alert_threshold=0.5)),
        ("latest_budget", lambda r: r.latest_budget()),
        *(("quarantined", lambda r, n=n: r.quarantined(n)) for n in (0, 1, 100)),
        *(("drifting", lambda r, n=n: r.drifting(n)) for n in (1, 100)),
    ]
    return out


def protocol_methods(cls: type) -> set[str]:
    return {n for n in vars(cls) if not n.startswith("_")} - {"open", "close"}


async def test_every_store_read_answers_alike_on_both_backends(stores: Stores) -> None:
    calls = reads(stores.ids)
    assert protocol_methods(StoreReads) <= {name for name, _ in calls}
    async with Reader(stores.sqlite) as lite, PgReader(stores.url) as pg:
        for name, call in calls:
            expected = await outcome(lambda c=call: c(lite))
            got = await outcome(lambda c=call: c(pg))
            assert same(got, expected), (name, got, expected)
    # The data reaches the reads' interesting branches (not a comparison of empty answers).
    async with Reader(stores.sqlite) as lite:
        assert len(await lite.counts()) >= 10
        assert await lite.drift(epistemic=False, include_stable=True, limit=5)
        assert await lite.similar_escalations(0.5, 0.5, 1.0, 1.0, 5)
        assert [r[0] for r in await lite.execution_stats({"workspace": "ws-9"}, "model", 10)] == [None, "m-a", "m-b"]
        assert await lite.active_rate_limits(0)
        assert await lite.quarantined(100)
        assert await lite.playbook_workspaces() == ["ws-0", "ws-1"]


@given(
    workspace=st.sampled_from([None, "ws-0", "ws-1", "nope", HOSTILE]),
    job=st.sampled_from([None, "job-0", "job-3"]),
    kinds=st.lists(st.sampled_from(list(EventKind)), max_size=4, unique=True),
    start=st.one_of(st.none(), st.integers(0, 1300)),
    span=st.one_of(st.none(), st.integers(0, 800)),
    limit=st.integers(1, 60),
    after=st.integers(0, 1400),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_ledger_queries_answer_alike(stores: Stores, workspace: str | None, job: str | None,
                                     kinds: list[EventKind], start: int | None, span: int | None, limit: int,
                                     after: int) -> None:
    # Times from the ledger's own spread (one event per offset), so ranges cut through the events.
    first = datetime.fromtimestamp(stores.ids["mid_us"] / 1e6, UTC) - timedelta(milliseconds=600)
    begin = None if start is None else first + timedelta(milliseconds=start)
    end = None if span is None else (begin or first) + timedelta(milliseconds=span)
    query = event_query(workspace=workspace, job=job, kinds=kinds, limit=limit,
                        time_range=TimeRange(start=begin, end=end) if begin or end else None)

    async def both() -> None:
        async with Reader(stores.sqlite) as lite, PgReader(stores.url) as pg:
            assert await pg.events(query) == await lite.events(query)
            assert await pg.page(query, after) == await lite.page(query, after)

    asyncio.run(both())


SessionCall = Callable[[SessionStore], Any]


def session_reads(ids: dict[str, Any]) -> list[tuple[str, SessionCall]]:
    return [
        *(("ledger", lambda v, a=a: v.ledger(*a)) for a in (("ws-0", 0, 20), ("ws-1", ids["mid_seq"], 5),
                                                            (HOSTILE, 0, 5))),
        *(("event_applied", lambda v, e=e: v.event_applied(e)) for e in (ids["event"], "nope")),
        *(("seq_of", lambda v, e=e: v.seq_of(e)) for e in (ids["event"], ids["execution"], "nope")),
        *(("workspace_of", lambda v, e=e: v.workspace_of(e)) for e in (ids["event"], ids["execution"], HOSTILE)),
        ("workspaces_with_new_runs", lambda v: v.workspaces_with_new_runs()),
        *(("watermark", lambda v, w=w: v.watermark(w)) for w in ("ws-0", "nope")),
        *(("active_sessions", lambda v, w=w: v.active_sessions(w)) for w in ("ws-0", "ws-1")),
        *(("session_status", lambda v, s=s: v.session_status(s)) for s in (ids["session"], "nope")),
        *(("edit_statuses", lambda v, s=s: v.edit_statuses(s)) for s in (ids["session"], "nope")),
        *(("edits_newest_first", lambda v, s=s: v.edits_newest_first(s)) for s in (ids["session"], "nope")),
        *(("staged", lambda v, w=w: list(v.staged(w))) for w in (None, "ws-0", HOSTILE)),
        *(("guidance", lambda v, w=w: v.guidance(w).entries) for w in ("ws-0", "nope")),
        *(("guidance_entry", lambda v, a=a: v.guidance_entry(*a))
          for a in (("ws-0", "playbook", ids["edit"]), ("ws-1", "playbook", ids["edit"]), ("ws-0", "x", "y"))),
        *(("hand", lambda v, w=w: v.hand(w)) for w in ("ws-0", "nope")),
        *(("session_for_trigger", lambda v, t=t: v.session_for_trigger(t)) for t in ("t2", "nope")),
        *(("sessions", lambda v, a=a: v.sessions(*a)) for a in ((None, 10), ("ws-0", 1), (HOSTILE, 5))),
        *(("guidance_checksum", lambda v, w=w: guidance_checksum(v.conn, w)) for w in (None, "ws-1")),
    ]


@pytest.fixture
def views(stores: Stores) -> Iterator[tuple[SessionStore, SessionStore]]:
    lite, pg = SessionStore(stores.sqlite), PgSessionStore(stores.url)
    try:
        yield lite, pg
    finally:
        lite.close()
        pg.close()


def test_every_session_store_method_answers_alike(stores: Stores, views: tuple[SessionStore, SessionStore],
                                                 tmp_path: Path) -> None:
    lite, pg = views
    calls = session_reads(stores.ids)
    public = {n for n in vars(SessionStore) if not n.startswith("_")} - {"conn", "close", "index", "reindex"}
    assert public <= {name for name, _ in calls}
    for name, call in calls:
        got, expected = call(pg), call(lite)
        assert same(got, expected), (name, got, expected)
    assert lite.workspaces_with_new_runs() and lite.edits_newest_first(stores.ids["session"])

    # The index writes, done alike on both, leave equal indexes.
    root = tmp_path / "sessions"
    for view in views:
        view.index(session(9, "ws-1"), root / "s9.json")
    assert pg.sessions(None, 20) == lite.sessions(None, 20)
    for i in (5, 6):
        artifacts.write_session(root, session(i, "ws-0"))
    (root / "junk").mkdir()
    (root / "junk" / artifacts.SESSION_FILE).write_text("{not a session")
    assert pg.reindex(root) == lite.reindex(root)
    assert [r["session_id"] for r in pg.sessions(None, 20)] == ["s6", "s5"]
    assert pg.sessions(None, 20) == lite.sessions(None, 20)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_an_unreachable_store_is_a_one_line_store_error() -> None:
    url = f"postgresql://someone:secret@127.0.0.1:{free_port()}/store"
    with pytest.raises(StoreBusyError) as caught:
        await PgReader(url).open()
    message = str(caught.value)
    assert "\n" not in message and "unavailable" in message and "secret" not in message
    with pytest.raises(StoreBusyError):
        PgSessionStore(url).hand("ws")


async def test_a_stopped_server_is_a_store_error_and_the_reader_reconnects(private_pg: EmbeddedPostgres) -> None:
    url = private_pg.create_database("stopped")
    conn = PgConn.connect(url)
    try:
        migrate(conn)
    finally:
        conn.close()
    async with PgReader(url) as reader:
        assert await reader.counts() == {}
        private_pg.stop()
        with pytest.raises(StoreBusyError) as caught:
            await reader.counts()
        assert "\n" not in str(caught.value)
        with pytest.raises(StoreBusyError):  # still down: the reconnect fails alike
            await reader.ledger_summary()
        private_pg.start()
        assert await reader.ledger_summary() == (0, None)


async def test_a_database_without_the_schema_is_not_migrated(pg_url: str) -> None:
    """An empty database (the store service has not run yet): the readers' missing table, as on SQLite."""
    async with PgReader(pg_url) as reader:
        with pytest.raises(StoreNotMigrated):
            await reader.counts()
        assert await reader.settings() == LearningSettings()  # a store from before the learning model


async def test_the_reader_cannot_write_and_serves_concurrent_reads(stores: Stores) -> None:
    async with PgReader(stores.url) as reader:
        # The query service shares one reader between its requests.
        answers = await asyncio.gather(*(reader.counts() for _ in range(10)),
                                       *(reader.patterns(limit=50) for _ in range(10)))
        assert all(a == answers[0] for a in answers[:10]) and all(a == answers[10] for a in answers[10:])
        with pytest.raises(StoreError, match="read-only"):
            async with reader.db.execute("DELETE FROM ledger"):
                pass
        assert (await reader.ledger_summary())[0] > 0


def test_nulls_are_ordered_as_sqlite_orders_them_only_where_a_column_may_hold_null() -> None:
    nullable = frozenset({"model", "drift_magnitude"})
    sql = ("SELECT a FROM (SELECT model FROM t ORDER BY model DESC, seq LIMIT 3) "
           "ORDER BY COUNT(*) DESC, model, ABS(drift_magnitude) DESC NULLS FIRST, seq DESC LIMIT ?")
    assert nulls_as_sqlite(sql, nullable) == (
        "SELECT a FROM (SELECT model FROM t ORDER BY model DESC NULLS LAST, seq LIMIT 3) "
        "ORDER BY COUNT(*) DESC, model NULLS FIRST, ABS(drift_magnitude) DESC NULLS FIRST, seq DESC LIMIT ?"
    )
    assert nulls_as_sqlite("SELECT seq FROM ledger ORDER BY seq", nullable) == "SELECT seq FROM ledger ORDER BY seq"
    assert {"model", "quarantined_at_us", "drift_magnitude"} <= nullable_columns()
    assert not {"seq", "id", "event_id", "workspace", "priority_score"} & nullable_columns()
