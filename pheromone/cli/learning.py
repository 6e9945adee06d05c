"""The learning model's read commands: patterns (pheromone/cli/patterns.py), entropy, budget, drift, learned
wait, similar escalations, execution statistics, the evolution trajectory and export.

They open the SQLite store file directly through the query service's own functions (pheromone/cli/reads.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from pheromone.cli.common import (
    CliError,
    DataDirOpt,
    DbOpt,
    JsonOpt,
    Table,
    console,
    print_json,
    require_store,
    settings,
)
from pheromone.cli.patterns import patterns_app
from pheromone.cli.reads import fmt, kv_table, parse_args, query_store, read_store
from pheromone.services.query import learning as q

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
    r = query_store(db, data_dir, q.entropy, parse_args(q.EntropyArgs, history=history, limit=limit))
    if as_json:
        print_json(r)
        return
    c = r["current"]
    if not r["enough_data"]:
        verdict = (f"[yellow]not enough data: {c['total_applications']} pattern application(s); diversity is "
                   f"judged from {r['min_applications']}[/yellow]")
    elif c["threshold_exceeded"]:
        verdict = "[red]below threshold: low diversity[/red]"
    else:
        verdict = "[green]healthy[/green]"
    console.print(
        kv_table(
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
                fmt(h["shannon_entropy"]),
                fmt(h["diversity_index"]),
                str(h["unique_pattern_count"]),
                str(h["effective_pattern_count"]),
                str(h["total_applications"]),
                fmt(h["dominant_pattern_share"]),
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
    r = query_store(db, data_dir, q.budget, parse_args(q.BudgetArgs, job_hash=job, limit=limit))
    if as_json:
        print_json(r)
        return
    cur = r["current"]
    console.print(
        kv_table(
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
            fmt(b["budget_value"]),
            fmt(b["entropy_at_time"]),
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
    args = parse_args(q.DriftArgs, epistemic=epistemic, include_stable=all_, pattern_id=pattern, limit=limit)
    r = query_store(db, data_dir, q.drift, args)
    if as_json:
        print_json(r)
        return
    console.print(kv_table("Epistemic drift" if epistemic else "Effectiveness drift", r["summary"]))
    if epistemic:
        table = Table("pattern", "before", "after", "change", "belief entropy", "direction", "alert")
        for d in r["patterns"]:
            table.add_row(
                d["pattern_name"],
                fmt(d["confidence_before"]),
                fmt(d["confidence_after"]),
                f"{d['belief_change']:+.3f}",
                fmt(d["belief_entropy"]),
                d["drift_direction"],
                "yes" if d["threshold_exceeded"] else "",
            )
    else:
        table = Table("pattern", "before", "after", "magnitude", "grounding", "direction", "alert")
        for d in r["patterns"]:
            table.add_row(
                d["pattern_name"],
                fmt(d["effectiveness_before"]),
                fmt(d["effectiveness_after"]),
                fmt(d["drift_magnitude"]),
                fmt(d["grounding_confidence_avg"]),
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
    args = parse_args(q.WaitArgs, {"error_code": "error code"}, error_code=error_code, model=model,
                      static_seconds=static)
    r = query_store(db, data_dir, q.wait, args)
    if as_json:
        print_json(r)
        return
    console.print(
        kv_table(
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
    args = parse_args(q.EscalationArgs, confidence=confidence, validation_pass_rate=pass_rate, limit=limit)
    r = query_store(db, data_dir, q.escalations_similar, args)
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
            fmt(d["confidence"]),
            fmt(d["validation_pass_rate"]),
            str(d["retry_count"]),
            fmt(d["distance"]),
            d["guidance"] or "",
        )
    console.print(table)


@executions_app.command("stats")
def stats(
    workspace: Annotated[
        str | None, typer.Option("--workspace", "-w", help="Only what this workspace reported")
    ] = None,
    workspace_hash: Annotated[
        str | None, typer.Option("--workspace-hash", help="Only records with this workspace_hash field")
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
    args = parse_args(
        q.ExecutionStatsArgs,
        workspace=workspace,
        workspace_hash=workspace_hash,
        job_hash=job,
        model=model,
        by=by,
        error_code=error_code,
    )
    r = query_store(db, data_dir, q.execution_stats, args)
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
            fmt(g["success_without_retry_rate"]),
            fmt(g["avg_confidence_score"]),
            fmt(g["avg_computed_confidence"]),
            fmt(g["avg_validation_pass_rate"]),
            fmt(g["avg_duration_seconds"], 1),
            fmt(g["avg_retry_count"], 2),
            str(g["unique_workspaces"]),
        )
    console.print(table)
    w = r["optimal_window"]
    if w["enough_data"]:
        window: dict[str, Any] = {
            "optimal hours": ", ".join(map(str, w["optimal_hours"])) or "none",
            "avoid hours": ", ".join(map(str, w["avoid_hours"])) or "none",
            "confidence": w["confidence"],
        }
    else:
        window = {"optimal hours": f"not enough data: {w['measured_hours']} hour(s) of the day with "
                                   f"{w['min_samples_per_hour']}+ recoveries, needs {w['min_hours']}"}
    window |= {"hours measured": w["measured_hours"], "recoveries": w["sample_count"]}
    console.print(kv_table("Optimal execution window (UTC hours)", window))


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
    args = parse_args(
        q.TrajectoryArgs,
        {"": "--from/--to"},
        start_cycle=start,
        end_cycle=end,
        window_cycles=window,
        min_occurrences=min_occurrences,
        limit=limit,
    )
    r = query_store(db, data_dir, q.trajectory, args)
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
            fmt(e["cv_avg"], 2),
            str(e["implementation_loc"]),
            str(e["test_loc"]),
            fmt(e["loc_accuracy"], 2),
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
    data = read_store(path, lambda reads: q.export(reads, limit=limit))
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
