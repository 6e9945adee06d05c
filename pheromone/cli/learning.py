"""The learning model's commands: patterns (and their lifecycle), entropy, budget, drift, learned wait,
similar escalations, execution statistics, the evolution trajectory and export.

Read commands open the SQLite store file directly (operators run them next to the store) through the same
query functions the query service uses (`services.query.learning`). Lifecycle commands emit a
`PatternTransitioned` event through `pheromone.Pheromone`: they check the transition against the store first
(an illegal one is a one-line error), then wait until the store has applied it.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

import aiosqlite
import typer
from pydantic import ValidationError
from rich.table import Table

from contracts import PatternTransitioned, QuarantineStatus
from pheromone.cli.common import (
    CliError,
    DataDirOpt,
    DbOpt,
    JsonOpt,
    PrefixOpt,
    RedisUrlOpt,
    console,
    print_json,
    redis_url_for,
    require_store,
    settings,
)
from services.learning.lifecycle import IllegalTransition, check_transition
from services.query import learning as q
from services.settings import LearningSettings

A = TypeVar("A", bound=q.Args)
T = TypeVar("T")

patterns_app = typer.Typer(
    help="Patterns: list (by priority), show, and move through the quarantine lifecycle.",
    invoke_without_command=True,
)
escalations_app = typer.Typer(help="Escalation decisions.", no_args_is_help=True)
executions_app = typer.Typer(help="Sheet executions.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the learning commands to the `pheromone` app."""
    app.add_typer(patterns_app, name="patterns")
    app.command("entropy")(entropy)
    app.command("budget")(budget)
    app.command("drift")(drift)
    app.command("wait")(wait)
    app.add_typer(escalations_app, name="escalations")
    app.add_typer(executions_app, name="executions")
    app.command("trajectory")(trajectory)
    app.command("export")(export)


# -- plumbing ------------------------------------------------------------------------------------------------


def _args(schema: type[A], /, **values: Any) -> A:
    try:
        return schema.model_validate(values)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(x) for x in first["loc"]) or "arguments"
        raise CliError(f"invalid {where.replace('_', '-')}: {first['msg']}") from exc


def _uri(path: Path) -> str:
    """A read-only SQLite URI for `path`, after a synchronous probe: a path aiosqlite cannot open fails inside
    its worker thread, which then reports into an event loop `asyncio.run` has closed (a stray traceback)."""
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        probe = sqlite3.connect(uri, uri=True)
        try:
            probe.execute("PRAGMA schema_version")
        finally:
            probe.close()
    except sqlite3.Error as exc:
        raise CliError(f"cannot read the store at {path}: {exc}") from exc
    return uri


def _read(path: Path, fn: Callable[[aiosqlite.Connection, LearningSettings], Awaitable[T]]) -> T:
    uri = _uri(path)

    async def run() -> T:
        try:
            async with aiosqlite.connect(uri, uri=True) as db:
                await db.execute("PRAGMA busy_timeout=10000")
                return await fn(db, await q.recorded_settings(db))
        except q.UnknownId as exc:
            raise CliError(str(exc)) from exc
        except sqlite3.Error as exc:
            raise CliError(f"cannot read the store at {path}: {exc}") from exc

    return asyncio.run(run())


def _query(db: Path | None, data_dir: Path | None, fn: Any, args: q.Args) -> Any:
    path = require_store(settings(data_dir=data_dir, db=db))
    return _read(path, lambda conn, s: fn(conn, args, s))


def _f(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _kv(title: str, rows: dict[str, Any]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    for key, value in rows.items():
        table.add_row(key, _f(value) if isinstance(value, float) else "" if value is None else str(value))
    return table


# -- patterns ------------------------------------------------------------------------------------------------

TypeOpt = Annotated[str | None, typer.Option("--type", "-t", help="Only this pattern type")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Context tag (repeatable; any matches)")]


@patterns_app.callback()
def patterns(
    ctx: typer.Context,
    pattern_type: TypeOpt = None,
    tag: TagOpt = None,
    all_tags: Annotated[bool, typer.Option("--all-tags", help="Require every --tag, not any")] = False,
    status: Annotated[
        list[QuarantineStatus] | None,
        typer.Option("--status", "-s", help="Only these statuses (repeatable; default: all but retired)"),
    ] = None,
    min_trust: Annotated[float, typer.Option("--min-trust", help="Minimum trust (0-1)")] = 0.0,
    min_priority: Annotated[float, typer.Option("--min-priority", help="Minimum priority (0-1)")] = 0.0,
    instrument: Annotated[str | None, typer.Option("--instrument", help="Only this instrument")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many")] = 20,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """List patterns, highest priority first."""
    if ctx.invoked_subcommand is not None:
        return
    args = _args(
        q.PatternsArgs,
        pattern_type=pattern_type,
        tags=tag or [],
        match_all_tags=all_tags,
        status=status or [],
        min_trust=min_trust,
        min_priority=min_priority,
        instrument=instrument,
        limit=limit,
    )
    rows = _query(db, data_dir, q.patterns, args)
    if as_json:
        print_json(rows)
        return
    # Ids are shown as their first 14 characters (a unique prefix in practice; `show` accepts prefixes, and
    # --json prints them whole) so that the table stays readable in 80 columns.
    table = Table(box=None, pad_edge=False)
    table.add_column("id", no_wrap=True)
    table.add_column("type: name", overflow="fold", min_width=14, ratio=3)
    for name in ("status", "prio", "eff", "trust", "ok/fail"):
        table.add_column(name, no_wrap=True, justify="left" if name == "status" else "right")
    table.add_column("tags", overflow="fold", min_width=6, ratio=2)
    for p in rows:
        table.add_row(
            p["id"][:14],
            f"{p['pattern_type']}: {p['pattern_name']}",
            p["quarantine_status"],
            _f(p["priority_score"], 2),
            _f(p["effectiveness_score"], 2),
            _f(p["trust_score"], 2),
            f"{p['led_to_success_count']}/{p['led_to_failure_count']}",
            ", ".join(p["context_tags"]),
        )
    console.print(table)
    console.print(f"[dim]{len(rows)} pattern(s)[/dim]")


IdArg = Annotated[str, typer.Argument(help="Pattern id (or a unique prefix of it)")]


@patterns_app.command("show")
def show(pattern_id: IdArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None, db: DbOpt = None) -> None:
    """One pattern: scores, provenance, transitions, success factors and the "why" analysis."""
    r = _query(db, data_dir, q.pattern, _args(q.PatternArgs, id=pattern_id))
    if as_json:
        print_json(r)
        return
    p, why = r["pattern"], r["why"]
    console.print(
        _kv(
            f"{p['pattern_name']} ({p['pattern_type']})",
            {
                "id": p["id"],
                "status": p["quarantine_status"],
                "description": p["description"],
                "suggested action": p["suggested_action"],
                "tags": ", ".join(p["context_tags"]),
                "occurrences": p["occurrence_count"],
                "applications": f"{p['led_to_success_count']} ok / {p['led_to_failure_count']} failed",
                "effectiveness": p["effectiveness_score"],
                "variance": p["variance"],
                "priority": p["priority_score"],
                "trust": p["trust_score"],
                "first seen": p["first_seen"],
                "last confirmed": p["last_confirmed"],
                "quarantine reason": p["quarantine_reason"],
                "re-quarantine grace until": (
                    f"{p['grace_until_applications']} applications" if p["grace_until_applications"] else None
                ),
            },
        )
    )
    console.print(_kv("Provenance", r["provenance"]))
    if r["same_content"]:
        names = ", ".join(f"{x['pattern_name']} ({x['id'][:14]})" for x in r["same_content"])
        console.print(f"same content under other names: {names}")
    transitions = Table(
        "at", "from", "to", "actor", "reason", title="Transitions (newest first)", title_justify="left"
    )
    for t in r["transitions"]:
        transitions.add_row(t["at"], t["from_status"], t["to_status"], t["actor"], t["reason"])
    console.print(transitions)
    console.print(
        _kv(
            "Why it works",
            {
                "summary": why["factors_summary"],
                "key conditions": "; ".join(why["key_conditions"]),
                "confidence": why["confidence"],
                "observations": why["observation_count"],
                "recommendations": "; ".join(why["recommendations"]),
            },
        )
    )
    lift = Table(
        "factor",
        "value",
        "applications",
        "success rate",
        "lift",
        title="Success factors",
        title_justify="left",
    )
    for f in why["factor_lift"][:15]:
        lift.add_row(
            f["factor"], f["value"], str(f["applications"]), _f(f["success_rate"]), f"{f['lift']:+.3f}"
        )
    console.print(lift)
    for key, title in (("drift", "Effectiveness drift"), ("epistemic_drift", "Epistemic drift")):
        if r[key]:
            console.print(_kv(title, {k: v for k, v in r[key].items() if k not in ("type", "pattern_id")}))


ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded with the transition)")]
ActorOpt = Annotated[str | None, typer.Option("--actor", help="Who (default operator:<user>)")]
WaitOpt = Annotated[
    float, typer.Option("--timeout", help="Seconds to wait for the store to apply it (0: don't)")
]


def _transition(
    to: QuarantineStatus,
    pattern_id: str,
    reason: str,
    actor: str | None,
    timeout: float,
    as_json: bool,
    redis_url: str | None,
    data_dir: Path | None,
    db: Path | None,
    prefix: str | None,
) -> None:
    if not reason.strip():
        raise CliError("--reason must not be empty")
    if timeout < 0:
        raise CliError("--timeout must be >= 0")
    s = settings(redis_url, data_dir, db, prefix)
    path = require_store(s)
    pid, current = _read(path, lambda conn, _: q.pattern_status(conn, pattern_id))
    try:
        check_transition(current, to)
    except IllegalTransition as exc:
        raise CliError(f"{exc} for pattern {pid}") from exc
    record = PatternTransitioned(
        pattern_id=pid, to_status=to, reason=reason, actor=actor or f"operator:{getpass.getuser()}"
    )

    async def send(url: str) -> tuple[str, dict[str, Any] | None]:
        from pheromone.client import Pheromone

        async with Pheromone(
            url,
            workspace="operator",
            job="cli",
            prefix=s.prefix,
            data_dir=s.data_dir,
            spool_dir=s.data_dir / "spool" / "cli",
        ) as ph:
            event_id = ph.emit(record)
            await ph.flush(timeout=10)
        return event_id, await _applied(path, event_id, timeout)

    with redis_url_for(s) as url:
        event_id, applied = asyncio.run(send(url))
    result = {
        "pattern_id": pid,
        "from_status": current.value,
        "to_status": to.value,
        "event_id": event_id,
        "applied": applied is not None,
        "transition": applied,
    }
    if as_json:
        print_json(result)
    elif applied is not None:
        console.print(f"{pid}: {current.value} -> {to.value} (event {event_id})")
    elif timeout == 0:
        console.print(f"sent {current.value} -> {to.value} for {pid} (event {event_id})")
    if applied is None and timeout > 0:
        raise CliError(
            f"sent event {event_id}, but the store did not apply it within {timeout:g}s "
            "(is the store service running? see `pheromone dead list`)"
        )


APPLIED = "SELECT from_status, to_status, reason, actor, at_us FROM pattern_transitions WHERE event_id = ?"


async def _applied(path: Path, event_id: str, wait_s: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + wait_s
    uri = _uri(path)
    while wait_s > 0:
        async with (
            aiosqlite.connect(uri, uri=True) as conn,
            conn.execute(APPLIED, (event_id,)) as cur,
        ):
            row = await cur.fetchone()
        if row is not None:
            return dict(zip(("from_status", "to_status", "reason", "actor", "at_us"), row, strict=True))
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.1)
    return None


def _lifecycle_command(to: QuarantineStatus, doc: str) -> Callable[..., None]:
    def command(
        pattern_id: IdArg,
        reason: ReasonOpt,
        actor: ActorOpt = None,
        timeout: WaitOpt = 10.0,
        as_json: JsonOpt = False,
        redis_url: RedisUrlOpt = None,
        data_dir: DataDirOpt = None,
        db: DbOpt = None,
        prefix: PrefixOpt = None,
    ) -> None:
        _transition(to, pattern_id, reason, actor, timeout, as_json, redis_url, data_dir, db, prefix)

    command.__doc__ = doc
    command.__name__ = to.value
    return command


patterns_app.command("quarantine")(
    _lifecycle_command(
        QuarantineStatus.QUARANTINED, "Quarantine a pattern (pending or validated) for review."
    )
)
patterns_app.command("validate")(
    _lifecycle_command(
        QuarantineStatus.VALIDATED, "Validate a pattern (pending or quarantined) after review."
    )
)
patterns_app.command("retire")(
    _lifecycle_command(
        QuarantineStatus.RETIRED, "Retire a pattern: it stays for history and is never applied again."
    )
)


# -- entropy, budget, drift ----------------------------------------------------------------------------------


def entropy(
    history: Annotated[
        bool, typer.Option("--history", help="Also show recorded entropy measurements")
    ] = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="History rows")] = 20,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """Shannon entropy of pattern applications: is the fleet relying on too few patterns?"""
    r = _query(db, data_dir, q.entropy, _args(q.EntropyArgs, history=history, limit=limit))
    if as_json:
        print_json(r)
        return
    c = r["current"]
    verdict = (
        "[red]below threshold: low diversity[/red]" if c["threshold_exceeded"] else "[green]healthy[/green]"
    )
    console.print(
        _kv(
            "Pattern entropy (now)",
            {
                "shannon entropy (bits)": c["shannon_entropy"],
                "max possible": c["max_possible_entropy"],
                "diversity index": c["diversity_index"],
                "threshold": r["threshold"],
                "unique patterns": c["unique_pattern_count"],
                "effective patterns": c["effective_pattern_count"],
                "applications": c["total_applications"],
                "dominant share": c["dominant_pattern_share"],
            },
        )
    )
    console.print(verdict)
    if history:
        table = Table(
            "calculated_at",
            "entropy",
            "diversity",
            "unique",
            "effective",
            "applications",
            "dominant",
            "alert",
            title="History (newest first)",
            title_justify="left",
        )
        for h in r["history"]:
            table.add_row(
                h["calculated_at"],
                _f(h["shannon_entropy"]),
                _f(h["diversity_index"]),
                str(h["unique_pattern_count"]),
                str(h["effective_pattern_count"]),
                str(h["total_applications"]),
                _f(h["dominant_pattern_share"]),
                "yes" if h["threshold_exceeded"] else "",
            )
        console.print(table)


def budget(
    job: Annotated[str | None, typer.Option("--job", help="Only this job hash")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="History rows")] = 20,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """The exploration budget: current value, every adjustment and its reason."""
    r = _query(db, data_dir, q.budget, _args(q.BudgetArgs, job_hash=job, limit=limit))
    if as_json:
        print_json(r)
        return
    cur = r["current"]
    console.print(
        _kv(
            "Exploration budget",
            {
                "current": cur["budget_value"] if cur else f"none recorded (initial {r['rules']['initial']})",
                "last adjustment": f"{cur['adjustment_type']}: {cur['adjustment_reason']}" if cur else None,
                **{k.replace("_", " "): v for k, v in r["statistics"].items()},
                "rules": ", ".join(f"{k} {v}" for k, v in r["rules"].items()),
            },
        )
    )
    table = Table(
        "recorded_at",
        "job",
        "budget",
        "entropy",
        "type",
        "reason",
        title="Adjustments (newest first)",
        title_justify="left",
    )
    for b in r["history"]:
        table.add_row(
            b["recorded_at"],
            b["job_hash"],
            _f(b["budget_value"]),
            _f(b["entropy_at_time"]),
            b["adjustment_type"],
            b["adjustment_reason"] or "",
        )
    console.print(table)


def drift(
    epistemic: Annotated[
        bool, typer.Option("--epistemic", help="Belief (grounding) drift, not effectiveness")
    ] = False,
    all_: Annotated[bool, typer.Option("--all", help="Include patterns below the threshold")] = False,
    pattern: Annotated[str | None, typer.Option("--pattern", help="Only this pattern id")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """Patterns drifting between their last two windows of applications."""
    args = _args(q.DriftArgs, epistemic=epistemic, include_stable=all_, pattern_id=pattern, limit=limit)
    r = _query(db, data_dir, q.drift, args)
    if as_json:
        print_json(r)
        return
    console.print(_kv("Epistemic drift" if epistemic else "Effectiveness drift", r["summary"]))
    if epistemic:
        table = Table("pattern", "before", "after", "change", "belief entropy", "direction", "alert")
        for d in r["patterns"]:
            table.add_row(
                d["pattern_name"],
                _f(d["confidence_before"]),
                _f(d["confidence_after"]),
                f"{d['belief_change']:+.3f}",
                _f(d["belief_entropy"]),
                d["drift_direction"],
                "yes" if d["threshold_exceeded"] else "",
            )
    else:
        table = Table("pattern", "before", "after", "magnitude", "grounding", "direction", "alert")
        for d in r["patterns"]:
            table.add_row(
                d["pattern_name"],
                _f(d["effectiveness_before"]),
                _f(d["effectiveness_after"]),
                _f(d["drift_magnitude"]),
                _f(d["grounding_confidence_avg"]),
                d["drift_direction"],
                "yes" if d["threshold_exceeded"] else "",
            )
    console.print(table)


# -- wait, escalations, executions, trajectory, export -------------------------------------------------------


def wait(
    error_code: Annotated[str, typer.Argument(help="Error code, e.g. 429 or rate_limit")],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only recoveries on this model")] = None,
    static: Annotated[float | None, typer.Option("--static", help="Static fallback wait in seconds")] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """The learned wait before retrying after an error code (and model)."""
    r = _query(
        db, data_dir, q.wait, _args(q.WaitArgs, error_code=error_code, model=model, static_seconds=static)
    )
    if as_json:
        print_json(r)
        return
    console.print(
        _kv(
            f"Wait after {error_code}" + (f" on {model}" if model else ""),
            {
                "wait (s)": r["wait_seconds"],
                "strategy": r["strategy"],
                "confidence": r["confidence"],
                "learned (s)": r["learned_seconds"],
                "static fallback (s)": r["static_seconds"],
                "samples": r["samples"],
            },
        )
    )


@escalations_app.command("similar")
def similar(
    confidence: Annotated[float, typer.Option("--confidence", "-c", help="Current confidence (0-1)")],
    pass_rate: Annotated[float, typer.Option("--pass-rate", "-p", help="Validation pass rate (0-1)")],
    limit: Annotated[int, typer.Option("--limit", "-n")] = 5,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """Past escalation decisions most like this one; successful outcomes first."""
    args = _args(q.EscalationArgs, confidence=confidence, validation_pass_rate=pass_rate, limit=limit)
    r = _query(db, data_dir, q.escalations_similar, args)
    if as_json:
        print_json(r)
        return
    sug = r["suggestion"]
    console.print(
        f"suggested action: [bold]{sug['action']}[/bold] (outcome {sug['outcome'] or 'unknown'}, "
        f"distance {sug['distance']:.3f})"
        if sug
        else "no similar escalation recorded"
    )
    table = Table(
        "recorded_at", "action", "outcome", "confidence", "pass rate", "retries", "distance", "guidance"
    )
    for d in r["similar"]:
        table.add_row(
            d["recorded_at"],
            d["action"],
            d["outcome_after_action"] or "",
            _f(d["confidence"]),
            _f(d["validation_pass_rate"]),
            str(d["retry_count"]),
            _f(d["distance"]),
            d["guidance"] or "",
        )
    console.print(table)


@executions_app.command("stats")
def stats(
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="Only this workspace hash")
    ] = None,
    job: Annotated[str | None, typer.Option("--job", help="Only this job hash")] = None,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Only this model")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Group by workspace, job or model")] = None,
    error_code: Annotated[
        str | None, typer.Option("--error-code", help="Optimal window for this error")
    ] = None,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """Execution statistics and the optimal execution window (hours of day)."""
    args = _args(
        q.ExecutionStatsArgs,
        workspace_hash=workspace,
        job_hash=job,
        model=model,
        by=by,
        error_code=error_code,
    )
    r = _query(db, data_dir, q.execution_stats, args)
    if as_json:
        print_json(r)
        return
    cols = [by] if by else []
    table = Table(
        *cols,
        "executions",
        "first-try rate",
        "confidence",
        "computed conf.",
        "pass rate",
        "duration (s)",
        "retries",
        "workspaces",
        title="Executions",
        title_justify="left",
    )
    for g in r["stats"]:
        table.add_row(
            *([str(g[by])] if by else []),
            str(g["executions"]),
            _f(g["success_without_retry_rate"]),
            _f(g["avg_confidence_score"]),
            _f(g["avg_computed_confidence"]),
            _f(g["avg_validation_pass_rate"]),
            _f(g["avg_duration_seconds"], 1),
            _f(g["avg_retry_count"], 2),
            str(g["unique_workspaces"]),
        )
    console.print(table)
    w = r["optimal_window"]
    console.print(
        _kv(
            "Optimal execution window (UTC hours)",
            {
                "optimal hours": ", ".join(map(str, w["optimal_hours"])) or "none yet",
                "avoid hours": ", ".join(map(str, w["avoid_hours"])) or "none",
                "confidence": w["confidence"],
                "samples": w["sample_count"],
            },
        )
    )


def trajectory(
    start: Annotated[int | None, typer.Option("--from", help="First cycle")] = None,
    end: Annotated[int | None, typer.Option("--to", help="Last cycle")] = None,
    window: Annotated[
        int | None, typer.Option("--window", help="Recurring issues over the last N cycles")
    ] = None,
    min_occurrences: Annotated[
        int | None, typer.Option("--min-occurrences", help="Cycles to count as recurring")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 50,
    as_json: JsonOpt = False,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """The evolution trajectory and its recurring issue classes."""
    args = _args(
        q.TrajectoryArgs,
        start_cycle=start,
        end_cycle=end,
        window_cycles=window,
        min_occurrences=min_occurrences,
        limit=limit,
    )
    r = _query(db, data_dir, q.trajectory, args)
    if as_json:
        print_json(r)
        return
    table = Table(
        "cycle",
        "recorded_at",
        "done",
        "deferred",
        "issue classes",
        "cv avg",
        "impl LOC",
        "test LOC",
        "LOC accuracy",
        title="Evolution trajectory",
        title_justify="left",
    )
    for e in r["entries"]:
        table.add_row(
            str(e["cycle"]),
            e["recorded_at"],
            str(e["evolutions_completed"]),
            str(e["evolutions_deferred"]),
            ", ".join(e["issue_classes"]),
            _f(e["cv_avg"], 2),
            str(e["implementation_loc"]),
            str(e["test_loc"]),
            _f(e["loc_accuracy"], 2),
        )
    console.print(table)
    recurring = Table(
        "issue class",
        "cycles",
        title=f"Recurring issues (>= {r['min_occurrences']} cycles)",
        title_justify="left",
    )
    for issue, cycles in r["recurring_issues"].items():
        recurring.add_row(issue, ", ".join(map(str, cycles)))
    console.print(recurring)


def export(
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown or json")] = "markdown",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many patterns")] = 1_000,
    data_dir: DataDirOpt = None,
    db: DbOpt = None,
) -> None:
    """Export what the store learned: patterns, entropy, budget, drift and trajectory."""
    if fmt not in ("markdown", "json"):
        raise CliError(f"unknown format {fmt!r}; choose markdown or json")
    if not 1 <= limit <= 1_000_000:
        raise CliError("--limit must be between 1 and 1000000")
    path = require_store(settings(data_dir=data_dir, db=db))
    data = _read(path, lambda conn, _: q.export(conn, limit=limit))
    text = json.dumps(data, indent=2) + "\n" if fmt == "json" else to_markdown(data)
    if output is None:
        import sys

        sys.stdout.write(text)
    else:
        output.write_text(text)
        console.print(f"exported {len(data['patterns'])} pattern(s) to {output}")


def _md_cell(value: Any) -> str:
    return str(value if value is not None else "").replace("|", "\\|").replace("\n", " ")


def to_markdown(data: dict[str, Any]) -> str:
    """The export as a Markdown report."""
    e = data["entropy"]["current"]
    b = data["budget"]["current"]
    lines = [
        "# pheromone export",
        "",
        f"Exported at {data['exported_at']}.",
        "",
        "## Entropy",
        "",
        f"- Shannon entropy: {e['shannon_entropy']:.3f} bits of {e['max_possible_entropy']:.3f} possible",
        f"- Diversity index: {e['diversity_index']:.3f} (alert below {data['entropy']['threshold']})",
        f"- Patterns: {e['unique_pattern_count']} known, {e['effective_pattern_count']} applied; "
        f"{e['total_applications']} applications; dominant share {e['dominant_pattern_share']:.3f}",
        "",
        "## Exploration budget",
        "",
        f"- Current: {b['budget_value']:.3f} ({b['adjustment_type']}: {b['adjustment_reason']})"
        if b
        else "- No adjustment recorded yet.",
        "",
        "## Patterns (by priority)",
        "",
        "| id | type | name | status | priority | effectiveness | trust | ok | failed | tags |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in data["patterns"]:
        lines.append(
            "| "
            + " | ".join(
                _md_cell(x)
                for x in (
                    p["id"],
                    p["pattern_type"],
                    p["pattern_name"],
                    p["quarantine_status"],
                    f"{p['priority_score']:.3f}",
                    f"{p['effectiveness_score']:.3f}",
                    f"{p['trust_score']:.3f}",
                    p["led_to_success_count"],
                    p["led_to_failure_count"],
                    ", ".join(p["context_tags"]),
                )
            )
            + " |"
        )
    lines += ["", "## Drift", "", "| pattern | kind | before | after | direction |", "|---|---|---|---|---|"]
    for d in data["drift"]["patterns"]:
        lines.append(
            f"| {_md_cell(d['pattern_name'])} | effectiveness | {d['effectiveness_before']:.3f} | "
            f"{d['effectiveness_after']:.3f} | {d['drift_direction']} |"
        )
    for d in data["epistemic_drift"]["patterns"]:
        lines.append(
            f"| {_md_cell(d['pattern_name'])} | epistemic | {d['confidence_before']:.3f} | "
            f"{d['confidence_after']:.3f} | {d['drift_direction']} |"
        )
    lines += [
        "",
        "## Evolution trajectory",
        "",
        "| cycle | completed | deferred | issue classes |",
        "|---|---|---|---|",
    ]
    for t in data["trajectory"]["entries"]:
        lines.append(
            f"| {t['cycle']} | {t['evolutions_completed']} | {t['evolutions_deferred']} | "
            f"{_md_cell(', '.join(t['issue_classes']))} |"
        )
    recurring = data["trajectory"]["recurring_issues"]
    if recurring:
        lines += [
            "",
            "Recurring issue classes: " + "; ".join(f"{k} ({len(v)} cycles)" for k, v in recurring.items()),
        ]
    return "\n".join(lines) + "\n"
