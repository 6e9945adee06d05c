"""The learning model's read side: query operations over the store, for the query service and the CLI.

Each operation takes the store's reads (`services.store.reads.StoreReads`), a validated argument model and the
learning settings, asks the store for rows and returns plain JSON-ready data; the SQL lives in
`services.store.learning_reads`. The rules come from `services.learning`; the settings are the ones the
store recorded (`StoreReads.settings`), so readers use the same thresholds as the projections that wrote the
data. Reads may use the wall clock (e.g. the `calculated_at` of a current entropy reading); writes never do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from pheromone.contracts import QuarantineStatus
from pheromone.contracts.query_args import Args as Args
from pheromone.contracts.query_args import BudgetArgs as BudgetArgs
from pheromone.contracts.query_args import DriftArgs as DriftArgs
from pheromone.contracts.query_args import EntropyArgs as EntropyArgs
from pheromone.contracts.query_args import EscalationArgs as EscalationArgs
from pheromone.contracts.query_args import ExecutionStatsArgs as ExecutionStatsArgs
from pheromone.contracts.query_args import PatternArgs as PatternArgs
from pheromone.contracts.query_args import PatternsArgs as PatternsArgs
from pheromone.contracts.query_args import TrajectoryArgs as TrajectoryArgs
from pheromone.contracts.query_args import WaitArgs as WaitArgs
from pheromone.services.learning.entropy import entropy_from_aggregate
from pheromone.services.learning.executions import optimal_window
from pheromone.services.learning.factors import why
from pheromone.services.learning.trajectory import recurring_issues
from pheromone.services.learning.waits import learned_wait
from pheromone.services.settings import LearningSettings
from pheromone.services.store.reads import StoreReads, UnknownId

# -- patterns ------------------------------------------------------------------------------------------------


async def patterns(reads: StoreReads, a: PatternsArgs, s: LearningSettings) -> list[dict[str, Any]]:
    return await reads.patterns(
        pattern_type=a.pattern_type, tags=a.tags, match_all_tags=a.match_all_tags,
        statuses=[x.value for x in a.status], min_trust=a.min_trust, min_priority=a.min_priority,
        instrument=a.instrument, limit=a.limit,
    )


async def pattern(reads: StoreReads, a: PatternArgs, s: LearningSettings) -> dict[str, Any]:
    record = await reads.find_pattern(a.id)
    history = await reads.pattern_history(record["id"], record["content_hash"], a.transitions, a.applications)
    return {
        "pattern": record,
        "provenance": {
            "job_hash": record["provenance_job_hash"],
            "sheet_num": record["provenance_sheet_num"],
            "instrument": record["instrument_name"],
            "first_seen": record["first_seen"],
            "content_hash": record["content_hash"],
        },
        "same_content": history.same_content,
        "transitions": history.transitions,
        "why": why(history.factors, record["led_to_success_count"], record["led_to_failure_count"], s),
        "recent_applications": history.applications,
        "drift": history.drift,
        "epistemic_drift": history.epistemic_drift,
    }


async def pattern_status(reads: StoreReads, pattern_id: str) -> tuple[str, QuarantineStatus]:
    """(full id, status) of a pattern by id or unique prefix: the CLI's pre-check before a transition."""
    record = await reads.find_pattern(pattern_id)
    return record["id"], QuarantineStatus(record["quarantine_status"])


# -- entropy and budget --------------------------------------------------------------------------------------


async def entropy(reads: StoreReads, a: EntropyArgs, s: LearningSettings) -> dict[str, Any]:
    """The current population entropy from the store's running aggregate (O(1)), and optionally history."""
    total, sum_clogc, unique, effective, max_count = await reads.entropy_state()
    current = entropy_from_aggregate(
        total=total,
        sum_c_log2_c=sum_clogc,
        unique=unique,
        effective=effective,
        max_count=max_count,
        calculated_at=datetime.now(UTC),
        alert_threshold=s.entropy_alert_threshold,
    )
    result: dict[str, Any] = {
        "current": current.model_dump(mode="json"),
        "threshold": s.entropy_alert_threshold,
        # Too few applications to judge diversity by (the entropy service does not respond below this either).
        "min_applications": s.entropy_min_applications,
        "enough_data": current.total_applications >= s.entropy_min_applications,
    }
    if a.history:
        result["history"] = await reads.entropy_history(a.limit)
    return result


async def budget(reads: StoreReads, a: BudgetArgs, s: LearningSettings) -> dict[str, Any]:
    history, stats = await reads.budget(a.job_hash, a.limit)
    n, avg, lo, hi, floors, ceilings, boosts, decays = stats
    return {
        "current": history[0] if history else None,
        "history": history,
        "statistics": {
            "total_adjustments": n,
            "avg_budget": avg or 0.0,
            "min_budget": lo or 0.0,
            "max_budget": hi or 0.0,
            "floor_enforcements": floors or 0,
            "ceiling_enforcements": ceilings or 0,
            "boost_count": boosts or 0,
            "decay_count": decays or 0,
        },
        "rules": {
            "initial": s.budget_initial,
            "floor": s.budget_floor,
            "ceiling": s.budget_ceiling,
            "decay": s.budget_decay,
            "boost": s.budget_boost,
            "entropy_threshold": s.entropy_alert_threshold,
        },
    }


# -- drift ---------------------------------------------------------------------------------------------------


async def drift(reads: StoreReads, a: DriftArgs, s: LearningSettings) -> dict[str, Any]:
    """Current drift per pattern (kept up to date by the projections), most drifting first."""
    if a.pattern_id is not None:
        record = await reads.find_pattern(a.pattern_id)
        found = (await reads.drift_of(record["id"]))[1 if a.epistemic else 0]
        items = [found] if found else []
    else:
        items = await reads.drift(epistemic=a.epistemic, include_stable=a.include_stable, limit=a.limit)
    total, analyzed, drifting, avg, e_analyzed, e_drifting, e_avg = await reads.drift_summary()
    summary = (
        {
            "total_patterns": total,
            "patterns_analyzed": e_analyzed,
            "patterns_drifting": e_drifting,
            "avg_belief_change": e_avg or 0.0,
            "threshold": s.epistemic_threshold,
            "window": s.epistemic_window,
        }
        if a.epistemic
        else {
            "total_patterns": total,
            "patterns_analyzed": analyzed,
            "patterns_drifting": drifting,
            "avg_drift_magnitude": avg or 0.0,
            "threshold": s.drift_threshold,
            "window": s.drift_window,
        }
    )
    return {"kind": "epistemic_drift" if a.epistemic else "drift", "summary": summary, "patterns": items}


# -- learned wait, escalations, executions, trajectory -------------------------------------------------------


async def wait(reads: StoreReads, a: WaitArgs, s: LearningSettings) -> dict[str, Any]:
    """The learned wait for an error code (and model), blended with the static fallback by confidence."""
    # Confidence saturates at `wait_full_confidence_samples`: count no further than that.
    waits, samples = await reads.recovery_waits(
        a.error_code, a.model, s.wait_recent_samples, s.wait_full_confidence_samples
    )
    return learned_wait(a.error_code, a.model, waits, samples, s, static_seconds=a.static_seconds).as_dict()


async def escalations_similar(reads: StoreReads, a: EscalationArgs, s: LearningSettings) -> dict[str, Any]:
    """Similar past escalation decisions, best first (successful outcomes first, then closest)."""
    decisions = await reads.similar_escalations(
        a.confidence, a.validation_pass_rate, s.escalation_confidence_tolerance, s.escalation_pass_rate_tolerance,
        a.limit,
    )
    top = decisions[0] if decisions else None
    return {
        "suggestion": {
            "action": top["action"],
            "based_on": top["id"],
            "outcome": top["outcome_after_action"],
            "distance": top["distance"],
        }
        if top
        else None,
        "similar": decisions,
    }


async def execution_stats(reads: StoreReads, a: ExecutionStatsArgs, s: LearningSettings) -> dict[str, Any]:
    """Execution statistics (overall or per workspace/job/model) and the optimal execution window."""
    filters = {"workspace": a.workspace, "workspace_hash": a.workspace_hash, "job_hash": a.job_hash,
               "model": a.model}
    groups = []
    for row in await reads.execution_stats(filters, a.by, a.limit):
        key, values = (row[0], row[1:]) if a.by else (None, row)
        n, first_try, conf, computed, vpr, duration, retries, workspaces = values
        scope: dict[str, Any] = {a.by: key} if a.by else {}
        groups.append(
            {
                **scope,
                "executions": n,
                "success_without_retry_rate": (first_try or 0) / n if n else 0.0,
                "avg_confidence_score": conf or 0.0,
                "avg_computed_confidence": computed or 0.0,
                "avg_validation_pass_rate": vpr or 0.0,
                "avg_duration_seconds": duration or 0.0,
                "avg_retry_count": retries or 0.0,
                "unique_workspaces": workspaces,
            }
        )
    hours = await reads.recovery_hours(a.workspace, a.error_code, a.model)
    return {"stats": groups, "optimal_window": optimal_window(hours, s)}


async def trajectory(reads: StoreReads, a: TrajectoryArgs, s: LearningSettings) -> dict[str, Any]:
    """Evolution trajectory entries (newest cycle first) and recurring issue classes over a window."""
    end = a.end_cycle if a.end_cycle is not None else 2**62
    entries = await reads.trajectory(a.start_cycle or 0, end, a.limit)
    classes = await reads.issue_classes(a.window_cycles or 2**62)
    minimum = a.min_occurrences or s.recurring_min_occurrences
    return {
        "entries": entries,
        "recurring_issues": recurring_issues(classes, min_occurrences=minimum, window_cycles=a.window_cycles),
        "window_cycles": a.window_cycles,
        "min_occurrences": minimum,
    }


async def export(reads: StoreReads, limit: int = 1_000) -> dict[str, Any]:
    """What an operator exports: patterns (by priority, retired too), entropy, budget, drift, trajectory."""
    s = await reads.settings()
    statuses = list(QuarantineStatus)
    return {
        "exported_at": datetime.now(UTC).isoformat(),
        "settings": s.model_dump(mode="json"),
        "patterns": await patterns(reads, PatternsArgs(status=statuses, limit=limit), s),
        "entropy": await entropy(reads, EntropyArgs(history=True, limit=100), s),
        "budget": await budget(reads, BudgetArgs(limit=100), s),
        "drift": await drift(reads, DriftArgs(limit=100), s),
        "epistemic_drift": await drift(reads, DriftArgs(epistemic=True, limit=100), s),
        "trajectory": await trajectory(reads, TrajectoryArgs(limit=1_000), s),
    }


# -- the query service's operations --------------------------------------------------------------------------

Reading = Callable[[StoreReads, Any, LearningSettings], Awaitable[Any]]


def _op(fn: Reading, model: type[Args]) -> Callable[[StoreReads, dict[str, Any]], Awaitable[Any]]:
    async def run(reads: StoreReads, args: dict[str, Any]) -> Any:
        parsed = model.model_validate(args)
        try:
            return await fn(reads, parsed, await reads.settings())
        except UnknownId as exc:
            raise LookupError(str(exc)) from exc

    run.__name__ = fn.__name__
    run.args_model = model  # type: ignore[attr-defined]  # `pheromone schema --queries` exports its schema
    return run


LEARNING_OPS: dict[str, Callable[[StoreReads, dict[str, Any]], Awaitable[Any]]] = {
    "patterns": _op(patterns, PatternsArgs),
    "pattern": _op(pattern, PatternArgs),
    "entropy": _op(entropy, EntropyArgs),
    "budget": _op(budget, BudgetArgs),
    "drift": _op(drift, DriftArgs),
    "wait": _op(wait, WaitArgs),
    "escalations_similar": _op(escalations_similar, EscalationArgs),
    "execution_stats": _op(execution_stats, ExecutionStatsArgs),
    "trajectory": _op(trajectory, TrajectoryArgs),
}
"""Registered into `services.query.service.OPS`: name -> op(reads, args)."""
