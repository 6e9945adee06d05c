"""`pheromone demo`: the main job. A fleet of simulated jobs emits for a few seconds; then the store is
checked: every event this run emitted must be in the ledger exactly once.

The verdict is about this run's event ids, not the ledger's totals, so a demo run again on the same
`--data-dir` (adding to what earlier runs stored) is judged on its own events.
"""

from __future__ import annotations

import asyncio
import shlex
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from pheromone.cli.common import JsonOpt, RedisUrlOpt, Table, console, err, print_json, redis_url_for, settings
from pheromone.contracts import QuarantineStatus
from pheromone.contracts.streams import CONSOLIDATOR_JOB, ENTROPY_JOB
from pheromone.services.errors import StoreNotMigrated

if TYPE_CHECKING:
    from pheromone.services.settings import StoreLocation


def demo(
    seconds: Annotated[float, typer.Option("--seconds", min=0.5, max=600, help="How long the fleet runs")] = 3.0,
    workspaces: Annotated[int, typer.Option("--workspaces", min=1, max=50)] = 4,
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=50, help="Jobs per workspace")] = 4,
    rate: Annotated[float, typer.Option("--rate", min=1, max=10_000, help="Sheets per second per job")] = 50.0,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="Keep the demo's data here")] = None,
) -> None:
    """Run the services and a fleet of simulated jobs, then show what the store learned."""
    with tempfile.TemporaryDirectory(prefix="pheromone-demo-") as tmp:
        root = data_dir or Path(tmp)
        # A configured (shared) server, by flag or PHEROMONE_REDIS_URL, gets a fresh prefix: the demo's own
        # services must never take entries meant for a real installation's groups.
        shared = settings(redis_url, root).redis_url is not None
        prefix = f"demo-{uuid.uuid4().hex[:8]}" if shared else "pheromone"
        s = settings(redis_url, root, prefix=prefix)
        with redis_url_for(s, announce=False) as url:
            report = asyncio.run(_run(s, url, seconds, workspaces, jobs, rate, quiet=as_json))
        report["data_dir"] = str(data_dir) if data_dir is not None else None
    if as_json:
        print_json(report)
    else:
        _print(report)
        _next_steps(data_dir)
    if not report["ok"]:
        sys.exit(1)


async def _run(s: Any, url: str, seconds: float, workspaces: int, jobs: int, rate: float, *, quiet: bool
               ) -> dict[str, Any]:
    from pheromone.client import Pheromone
    from pheromone.services.runtime import Runtime
    from pheromone.services.store.location import open_reader
    from pheromone.simulate import fleet

    before = await _last_seq(s.store)  # what earlier runs stored: not this run's to judge
    runtime = Runtime(s, url)
    await runtime.start()
    sims = fleet(workspaces, jobs)
    emitted: set[str] = set()
    clients = [
        Pheromone(url, workspace=sim.workspace, job=sim.job, prefix=s.prefix, data_dir=s.data_dir,
                  spool_dir=s.data_dir / "spool" / sim.job)
        for sim in sims
    ]
    try:
        for c in clients:
            await c.open()

        async def run_job(i: int) -> None:
            sim, client, period = sims[i], clients[i], 1.0 / rate
            deadline = time.monotonic() + seconds
            next_at = time.monotonic()
            while time.monotonic() < deadline:
                for record in sim.step():
                    emitted.add(client.emit(record))
                next_at += period
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))

        # A progress bar is for a terminal: on a pipe or a log it would only leave a blank line on stderr.
        progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[n]} events"),
                            TimeElapsedColumn(), console=err, disable=quiet or not err.is_terminal, transient=True)
        with progress:
            task = progress.add_task(f"{len(sims)} jobs in {workspaces} workspaces", total=seconds, n=0)
            runner = asyncio.gather(*(run_job(i) for i in range(len(sims))))
            start = time.monotonic()
            while not runner.done():
                await asyncio.sleep(0.1)
                progress.update(task, completed=min(seconds, time.monotonic() - start), n=len(emitted))
            await runner
            for c in clients:
                await c.flush(timeout=30)
            progress.update(task, description="waiting for the store")
            found = await _wait_stored(s.store, emitted, before, timeout=60)
    finally:
        for c in clients:
            await c.close()
        await runtime.stop()

    async with open_reader(s.store) as reader:
        # Ranked as jobs are served them: by the learning model's priority (docs/LEARNING.md).
        top = await reader.patterns(statuses=[x.value for x in QuarantineStatus], limit=5)
        limits = await reader.active_rate_limits(int(time.time() * 1e6))
        ledger_rows = await reader.job_event_count(SERVICE_JOBS)
    missing = len(emitted - found.rows.keys())
    duplicates = sum(n - 1 for n in found.rows.values())
    return {
        "ok": missing == 0 and duplicates == 0,
        "emitted": len(emitted),
        "stored": sum(found.rows.values()),
        "missing": missing,
        "duplicates": duplicates,
        "ledger_total": ledger_rows,
        "jobs": len(sims),
        "workspaces": workspaces,
        "seconds": seconds,
        "counts": dict(sorted(found.kinds.items())),
        "top_patterns": [
            {"pattern": p["pattern_name"], "successes": p["led_to_success_count"],
             "failures": p["led_to_failure_count"], "status": p["quarantine_status"],
             "effectiveness": round(p["effectiveness_score"], 3), "priority": round(p["priority_score"], 3)}
            for p in top
        ],
        "active_rate_limits": [
            {"model": m, "error_code": code, "expires_in_s": round(exp / 1e6 - time.time(), 1)}
            for m, code, exp in limits
        ],
    }


SERVICE_JOBS = (ENTROPY_JOB, CONSOLIDATOR_JOB)
"""The services' own events (entropy responses, learning sessions) are theirs, not the jobs': not counted."""


@dataclass
class Found:
    """Ledger rows of this run's event ids, read in `seq` order from where the run started."""

    last_seq: int
    rows: Counter[str] = field(default_factory=Counter)
    """Rows per event id: 1 each when every event was stored exactly once."""
    kinds: Counter[str] = field(default_factory=Counter)


async def _last_seq(location: StoreLocation) -> int:
    from pheromone.services.store.location import ensure_store, is_postgres, open_reader

    if is_postgres(location):
        await ensure_store(location)  # a database the store service has not set up yet
    elif not Path(location).exists():  # noqa: ASYNC240 - one stat() before the run
        return 0
    async with open_reader(location) as reader:
        try:
            _, last = await reader.ledger_summary()
        except StoreNotMigrated:  # a store file the store service has not set up yet
            return 0
    return 0 if last is None else last[0]


async def _wait_stored(location: StoreLocation, emitted: set[str], after_seq: int, timeout: float) -> Found:
    """Read the ledger rows committed after `after_seq` (each row once, in commit order: the store assigns
    `seq` under its write lock) until every emitted id is found, or `timeout` seconds have passed."""
    from pheromone.services.store.location import is_postgres, open_reader

    deadline = time.monotonic() + timeout
    found = Found(after_seq)
    while True:
        if is_postgres(location) or Path(location).exists():  # noqa: ASYNC240 - one stat() while polling
            async with open_reader(location) as reader:
                for seq, event_id, kind in await reader.ledger_since(found.last_seq):
                    found.last_seq = seq
                    if event_id in emitted:
                        found.rows[event_id] += 1
                        found.kinds[kind] += 1
        if len(found.rows) >= len(emitted) or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(0.1)


def _print(r: dict[str, Any]) -> None:
    if r["ok"]:
        verdict = "[green]every event stored exactly once[/green]"
    else:
        verdict = f"[red]{r['missing']} missing, {r['duplicates']} stored more than once[/red]"
    console.print(f"\n{r['jobs']} jobs in {r['workspaces']} workspaces emitted [bold]{r['emitted']}[/bold] "
                  f"events in {r['seconds']:g}s; the ledger holds [bold]{r['stored']}[/bold] of them: {verdict}"
                  + (f" ({r['ledger_total']} job events in the ledger with earlier runs')"
                     if r["ledger_total"] != r["stored"] else ""))
    counts = Table("record type", "events", title="This run's events by record type")
    for kind, n in sorted(r["counts"].items()):
        counts.add_row(kind, str(n))
    console.print(counts)
    top = Table("pattern", "priority", "effectiveness", "ok/fail", "status", title="Top patterns (by priority)")
    for p in r["top_patterns"]:
        top.add_row(p["pattern"], f"{p['priority']:.2f}", f"{p['effectiveness']:.2f}",
                    f"{p['successes']}/{p['failures']}", p["status"])
    console.print(top)
    limits = Table("model", "error", "expires in (s)", title="Active rate limits")
    for lim in r["active_rate_limits"]:
        limits.add_row(lim["model"], lim["error_code"], f"{lim['expires_in_s']:g}")
    console.print(limits)


def _next_steps(data_dir: Path | None) -> None:
    """Where the data went, and commands to read it."""
    if data_dir is None:
        console.print("\nThe demo ran in a temporary directory, now removed. To keep its store and explore it, run "
                      "[bold]pheromone demo --data-dir DIR[/bold] (again on the same DIR adds to it), then e.g. "
                      "[bold]pheromone patterns --data-dir DIR[/bold].", highlight=False)
        return
    d = shlex.quote(str(data_dir))
    console.print(f"\nThe store and the sessions' artifacts are in {data_dir}. Try:", highlight=False)
    for command in (f"pheromone patterns --data-dir {d}", f"pheromone executions stats --data-dir {d} --by model",
                    f"pheromone events --data-dir {d} --limit 20", f"pheromone entropy --data-dir {d}",
                    f"pheromone sessions list --data-dir {d}", f"pheromone export --data-dir {d}"):
        console.print(f"  {command}", highlight=False, markup=False)
