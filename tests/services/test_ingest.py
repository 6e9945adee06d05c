"""Many producers, many events, every record family: the ledger holds exactly what was emitted, once, and the
projections count exactly what each family contributed; queries stay inside their workspace."""

from __future__ import annotations

import asyncio
import random
from collections import Counter, defaultdict
from pathlib import Path

import redis.asyncio as aioredis

from pheromone import Pheromone
from pheromone.contracts import EventKind, EventQuery, Payload, pattern_id
from pheromone.contracts.streams import Keys
from pheromone.simulate import SimJob
from tests.services import helpers as h
from tests.services.conftest import StartRuntime
from tests.support import OpenClient

CLIENTS = 8
WORKSPACES = 4
EVENTS_PER_CLIENT = 500


class Emitted:
    """What the producers emitted, tallied the ways the store will be checked."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.by_kind: dict[str, list[str]] = defaultdict(list)
        self.by_workspace_kind: dict[tuple[str, str], set[str]] = defaultdict(set)
        self.observed: Counter[str] = Counter()
        self.successes: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()

    def add(self, event_id: str, workspace: str, record: Payload) -> None:
        self.ids.append(event_id)
        self.by_kind[record.type].append(event_id)
        self.by_workspace_kind[(workspace, record.type)].add(event_id)
        if record.type == "pattern_observed":
            self.observed[pattern_id(record.pattern_type, record.pattern_name)] += 1
        elif record.type == "pattern_applied":
            (self.successes if record.success else self.failures)[record.pattern_id] += 1


async def test_many_producers_every_event_stored_once_and_projected(
    start_runtime: StartRuntime, open_client: OpenClient, db: Path, prefix: str, redis: aioredis.Redis
) -> None:
    await start_runtime(batch_size=200)
    rng = random.Random(2)
    sims = [SimJob(f"ws-{i % WORKSPACES}", f"job-{i}", random.Random(rng.random())) for i in range(CLIENTS)]
    clients = [await open_client(sim.job, workspace=sim.workspace) for sim in sims]
    emitted = Emitted()

    async def produce(sim: SimJob, client: Pheromone) -> None:
        for i, record in enumerate(h.mixed_records(sim, EVENTS_PER_CLIENT)):
            emitted.add(client.emit(record), sim.workspace, record)
            if i % 25 == 0:
                await asyncio.sleep(0)  # interleave the producers

    await asyncio.gather(*(produce(sim, c) for sim, c in zip(sims, clients, strict=True)))
    await asyncio.gather(*(c.flush() for c in clients))
    total = CLIENTS * EVENTS_PER_CLIENT
    assert len(emitted.ids) == len(set(emitted.ids)) == total

    await h.eventually(lambda: h.ledger_count(db) >= total, what=f"{total} events in the ledger")
    await h.eventually(lambda: _settled(redis, prefix), what="store group caught up on every stream")

    assert h.ledger_count(db) == total
    assert set(h.ledger_ids(db)) == set(emitted.ids)
    assert h.kind_counts(db) == {kind: len(ids) for kind, ids in emitted.by_kind.items()}
    assert await h.dead_letters(redis, prefix) == []

    n = {kind: len(ids) for kind, ids in emitted.by_kind.items()}
    # Every family the mix emits is present, so every projection below is really exercised.
    # (Session triggers excepted: they go to the triggers stream, which the store does not read.)
    assert all(n.get(kind.value, 0) > 0 for kind in EventKind if kind is not EventKind.SESSION_TRIGGER), n
    assert h.count(db, "executions") == n["execution"]
    assert h.count(db, "pattern_applications") == n["pattern_applied"]
    # Manual transitions (actor "tests"), keyed by their event id; the learning rules may add derived ones.
    manual = h.query(db, "SELECT event_id FROM pattern_transitions WHERE actor = 'tests'")
    assert {r[0] for r in manual} == set(emitted.by_kind["pattern_transition"])
    assert h.count(db, "error_recoveries") == n["error_recovery"]
    assert h.count(db, "rate_limit_events") == n["rate_limit"]
    assert h.count(db, "escalation_decisions") == n["escalation"]
    assert h.count(db, "escalation_decisions", "outcome_after_action IS NOT NULL") == n["escalation_outcome"]
    assert h.count(db, "pattern_discoveries") == n["pattern_discovery"]
    assert h.count(db, "evolution_trajectory") == n["evolution_entry"]
    assert h.count(db, "exploration_budget") == n["budget"]
    assert h.count(db, "entropy_responses") == n["entropy_response"]
    assert h.count(db, "entropy_history") == n["entropy_metrics"]
    assert h.count(db, "drift_history") == n["drift"] + n["epistemic_drift"]

    # Pattern counters: each observation and each application counted once, whichever arrived first.
    rows = h.query(db, "SELECT id, occurrence_count, led_to_success_count, led_to_failure_count, "
                       "quarantine_status FROM patterns")
    assert {r[0] for r in rows} == set(emitted.observed)
    for pid, occurrences, ok, failed, status in rows:
        want = (emitted.observed[pid], emitted.successes[pid], emitted.failures[pid])
        assert (occurrences, ok, failed) == want
        if pid in {pattern_id("retry_pattern", f"own pattern of {s.job}") for s in sims}:
            assert status == "validated"

    # Executions carry the workspace of the job that emitted them.
    per_ws = dict(h.query(db, "SELECT workspace, COUNT(*) FROM executions GROUP BY workspace"))
    assert per_ws == {f"ws-{w}": len(emitted.by_workspace_kind[(f"ws-{w}", "execution")])
                      for w in range(WORKSPACES)}

    # Workspace boundary: a query names one workspace and gets that workspace's events only, all of them.
    kinds = ["execution", "pattern_applied"]
    for w in range(WORKSPACES):
        ws = f"ws-{w}"
        got = await clients[0].events(EventQuery(workspace=ws, kinds=kinds, limit=10_000))
        assert {e.workspace for e in got} == {ws}
        assert {e.kind for e in got} == set(kinds)
        wanted = set().union(*(emitted.by_workspace_kind[(ws, kind)] for kind in kinds))
        assert {e.event_id for e in got} == wanted
        assert len(got) == len(wanted)
    newest = await clients[0].events(EventQuery(workspace="ws-1", limit=7))
    assert len(newest) == 7 and {e.workspace for e in newest} == {"ws-1"}
    assert await clients[0].events(EventQuery(workspace="ws-nobody", limit=10)) == []


async def _settled(redis: aioredis.Redis, prefix: str) -> bool:
    keys = Keys(prefix)
    return all([await h.group_caught_up(redis, s) for s in (keys.ingest, keys.ratelimits, keys.discoveries)])
