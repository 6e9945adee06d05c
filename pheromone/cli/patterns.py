"""`pheromone patterns`: list by priority, show one, and move patterns through the quarantine lifecycle.

Lifecycle commands emit a `PatternTransitioned` event through `pheromone.Pheromone`: they check the transition
against the store first (an illegal one is a one-line error), then wait until the store has applied it.
"""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.measure import Measurement

from pheromone.cli.common import (
    PIPE_WIDTH,
    CliError,
    DataDirOpt,
    DbOpt,
    JsonOpt,
    PrefixOpt,
    RedisUrlOpt,
    Table,
    console,
    print_json,
    redis_url_for,
    require_store,
    settings,
)
from pheromone.cli.reads import fmt, kv_table, parse_args, query_store, read_store, readable
from pheromone.contracts import PatternTransitioned, QuarantineStatus
from pheromone.services.learning.lifecycle import IllegalTransition, check_transition
from pheromone.services.query import learning as q
from pheromone.services.store.location import StoreLocation, open_reader

patterns_app = typer.Typer(
    help="Patterns: list (by priority), show, and move through the quarantine lifecycle.",
    invoke_without_command=True,
)

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
    args = parse_args(
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
    rows = query_store(db, data_dir, q.patterns, args)
    if as_json:
        print_json(rows)
        return
    table = _patterns_table(rows, compact=False)
    if Measurement.get(console, console.options.update_width(PIPE_WIDTH), table).minimum > console.width:
        table = _patterns_table(rows, compact=True)
    console.print(table)
    console.print(f"[dim]{len(rows)} pattern(s)[/dim]")


def _patterns_table(rows: list[dict[str, Any]], *, compact: bool) -> Table:
    """The list as a table; `compact` fits 80 columns: no rules, and ids shown as their first 14
    characters (a unique prefix in practice; `show` accepts prefixes, and --json prints them whole)."""
    table = Table(title="Patterns (by priority)", title_justify="left",
                  **({"box": None, "pad_edge": False} if compact else {}))
    table.add_column("id", no_wrap=True)
    table.add_column("type: name", overflow="fold", min_width=14, ratio=3)
    for name in ("status", "prio", "eff", "trust", "ok/fail"):
        table.add_column(name, no_wrap=True, justify="left" if name == "status" else "right")
    table.add_column("tags", overflow="fold", min_width=6, ratio=2)
    for p in rows:
        table.add_row(
            p["id"][:14] if compact else p["id"],
            f"{p['pattern_type']}: {p['pattern_name']}",
            p["quarantine_status"],
            fmt(p["priority_score"], 2),
            fmt(p["effectiveness_score"], 2),
            fmt(p["trust_score"], 2),
            f"{p['led_to_success_count']}/{p['led_to_failure_count']}",
            ", ".join(p["context_tags"]),
        )
    return table


IdArg = Annotated[str, typer.Argument(help="Pattern id (or a unique prefix of it)")]


@patterns_app.command("show")
def show(pattern_id: IdArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None, db: DbOpt = None) -> None:
    """One pattern: scores, provenance, transitions, success factors and the "why" analysis."""
    r = query_store(db, data_dir, q.pattern, parse_args(q.PatternArgs, {"id": "pattern id"}, id=pattern_id))
    if as_json:
        print_json(r)
        return
    p, why = r["pattern"], r["why"]
    console.print(
        kv_table(
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
    console.print(kv_table("Provenance", r["provenance"]))
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
        kv_table(
            "Why it works",
            {
                "summary": why["factors_summary"],
                "key conditions": "; ".join(why["key_conditions"]),
                "confidence": why["confidence"],
                "observations": why["observation_count"],
                "recommendations": "; ".join(why["recommendations"]) or "none",
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
            f["factor"], f["value"], str(f["applications"]), fmt(f["success_rate"]), f"{f['lift']:+.3f}"
        )
    console.print(lift)
    for key, title in (("drift", "Effectiveness drift"), ("epistemic_drift", "Epistemic drift")):
        if r[key]:
            console.print(kv_table(title, {k: v for k, v in r[key].items() if k not in ("type", "pattern_id")}))


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
    pid, current = read_store(path, lambda reads: q.pattern_status(reads, pattern_id))
    try:
        check_transition(current, to)
    except IllegalTransition as exc:
        raise CliError(f"{exc} for pattern {pid}") from exc
    record = PatternTransitioned(
        pattern_id=pid, to_status=to, reason=reason, actor=actor or f"operator:{getpass.getuser()}",
        from_status=current,
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


async def _applied(path: StoreLocation, event_id: str, wait_s: float) -> dict[str, Any] | None:
    """The transition the event recorded, once the store has applied it; None when `wait_s` runs out."""
    deadline = time.monotonic() + wait_s
    readable(path)
    while wait_s > 0:
        async with open_reader(path) as reader:
            applied = await reader.transition_of(event_id)
        if applied is not None:
            return applied
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
