"""Workspaces are a boundary: a query scoped to one workspace never returns another's records.

Three workspaces (one named like a path) hold overlapping data: the same job names, correlation id, pattern
name and tags, error code and model. Every query operation of the query service is classified below as
workspace-scoped or fleet-wide by design (docs/SECURITY.md, "Tenancy"); a new operation fails
`test_every_query_operation_is_classified` until it is classified and, if scoped, tested here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from pheromone import Pheromone
from pheromone.contracts import EventQuery
from pheromone.errors import QueryError
from pheromone.services.query.service import OPS
from pheromone.services.runtime import Runtime
from tests.cli.helpers import Cli
from tests.services.helpers import escalation, execution, ledger_count, now, observed, recovery
from tests.support import eventually, settings

WORKSPACES = ("ws-alpha", "ws-beta", "../../etc/passwd")
JOBS = ("job-1", "job-2")
CORRELATION = "corr-shared"

SCOPED = {"events": "workspace", "execution_stats": "workspace", "playbook": "workspace", "guidance": "workspace"}
"""Operation -> the argument that scopes it to one workspace (playbook and guidance: issue 6's sessions, whose
workspace argument is required; their per-workspace data is not populated here)."""
FLEET_WIDE = {"counts", "patterns", "pattern", "entropy", "budget", "drift", "wait", "escalations_similar",
              "trajectory"}
"""Fleet-wide by design: the learning store is shared across workspaces (seed 000's global store)."""
REQUIRED = {"pattern": {"id": "abc"}, "wait": {"error_code": "timeout"},
            "escalations_similar": {"confidence": 0.5, "validation_pass_rate": 0.5}}


class Fleet:
    def __init__(self, client: Pheromone, ids: dict[str, dict[str, set[str]]], db: Path) -> None:
        self.client, self.ids, self.db = client, ids, db


@pytest.fixture
async def fleet(tmp_path: Path, prefix: str, redis_url: str) -> AsyncIterator[Fleet]:
    """Store and query services; every workspace's jobs emit the same-looking records."""
    s = settings(tmp_path, prefix)
    runtime = Runtime(s, redis_url, ("store", "query"))
    await runtime.start()
    ids: dict[str, dict[str, set[str]]] = {}
    clients: list[Pheromone] = []
    try:
        for ws in WORKSPACES:
            ids[ws] = {"all": set(), "execution": set(), "corr": set(), **{j: set() for j in JOBS}}
            for job in JOBS:
                ph = Pheromone(redis_url, workspace=ws, job=job, prefix=prefix, data_dir=tmp_path,
                               spool_dir=tmp_path / "spool" / f"{len(clients)}", close_timeout=1.0)
                await ph.open()
                clients.append(ph)
                emitted = [
                    ("execution", ph.emit(execution(workspace_hash=ws, job_hash=job), correlation_id=CORRELATION)),
                    ("execution", ph.emit(execution(workspace_hash=ws, job_hash=job, sheet_num=2))),
                    ("other", ph.emit(observed("shared pattern"))),
                    ("other", ph.emit(recovery(), correlation_id=CORRELATION)),
                    ("other", ph.emit(escalation())),
                ]
                for kind, event_id in emitted:
                    ids[ws]["all"].add(event_id)
                    ids[ws][job].add(event_id)
                    if kind == "execution":
                        ids[ws]["execution"].add(event_id)
                for ph_ in clients:
                    await ph_.flush()
        total = sum(len(v["all"]) for v in ids.values())
        await eventually(lambda: ledger_count(s.store_path) == total, what=f"{total} events in the ledger")
        for ws in WORKSPACES:
            # correlation ids: the first execution and the recovery of each job
            ids[ws]["corr"] = {e.event_id for e in await clients[0].events(EventQuery(workspace=ws, limit=1000))
                               if e.correlation_id == CORRELATION}
        yield Fleet(clients[0], ids, s.store_path)
    finally:
        for ph in clients:
            await ph.close()
        await runtime.stop()


def test_every_query_operation_is_classified() -> None:
    assert set(OPS) == set(SCOPED) | FLEET_WIDE, "classify the new query operation here and in docs/SECURITY.md"
    assert not set(SCOPED) & FLEET_WIDE


async def test_events_scoped_to_a_workspace_never_return_another(fleet: Fleet) -> None:
    client = fleet.client
    later = now() + timedelta(minutes=5)
    for ws in WORKSPACES:
        expected = fleet.ids[ws]
        assert len(expected["corr"]) == 4  # the shared correlation id exists in every workspace
        cases: list[tuple[dict[str, Any], set[str]]] = [
            ({}, expected["all"]),
            ({"job": "job-1"}, expected["job-1"]),
            ({"correlation_id": CORRELATION}, expected["corr"]),
            ({"kinds": ["execution"]}, expected["execution"]),
            ({"time_range": {"end": later.isoformat()}}, expected["all"]),
        ]
        for extra, want in cases:
            query = EventQuery.model_validate_json(json.dumps({"workspace": ws, "limit": 1000, **extra}))
            got = await client.events(query)
            assert {e.workspace for e in got} == {ws}, (ws, extra)
            assert {e.event_id for e in got} == want, (ws, extra)


async def test_execution_stats_scoped_to_a_workspace_never_count_another(fleet: Fleet) -> None:
    assert fleet.client.queries is not None
    for ws in WORKSPACES:
        result = await fleet.client.queries.execution_stats(workspace=ws)
        (only,) = result["stats"]
        assert only["executions"] == len(fleet.ids[ws]["execution"]) and only["unique_workspaces"] == 1
        per_job = await fleet.client.queries.execution_stats(workspace=ws, by="job")
        assert {g["job"]: g["executions"] for g in per_job["stats"]} == {"job-1": 2, "job-2": 2}
    grouped = await fleet.client.queries.execution_stats(by="workspace")
    assert {g["workspace"]: g["executions"] for g in grouped["stats"]} == {ws: 4 for ws in WORKSPACES}


@pytest.mark.parametrize("op", sorted(FLEET_WIDE))
async def test_fleet_wide_operations_refuse_a_workspace_filter_rather_than_ignore_it(fleet: Fleet, op: str) -> None:
    """A caller who passes a workspace to a fleet-wide query gets an error, never silently everyone's data."""
    assert fleet.client.queries is not None
    with pytest.raises(QueryError, match="workspace"):
        await fleet.client.queries.call(op, {**REQUIRED.get(op, {}), "workspace": "ws-alpha"})


def test_cli_workspace_filters_stay_in_their_workspace(fleet_db: tuple[Path, dict[str, Any]], cli: Cli) -> None:
    db, ids = fleet_db
    for ws in WORKSPACES:
        run = cli("events", "--workspace", ws, "--limit", "1000", "--json", "--db", str(db))
        assert run.code == 0, str(run)
        events = json.loads(run.out)
        assert {e["workspace"] for e in events} == {ws}
        assert {e["event_id"] for e in events} == ids[ws]["all"]
        run = cli("executions", "stats", "--workspace", ws, "--json", "--db", str(db))
        assert run.code == 0, str(run)
        (only,) = json.loads(run.out)["stats"]
        assert only["executions"] == 4 and only["unique_workspaces"] == 1


@pytest.fixture
async def fleet_db(fleet: Fleet) -> tuple[Path, dict[str, Any]]:
    return fleet.db, fleet.ids
