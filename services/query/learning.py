"""The learning model's read side: query operations over the store, for the query service and the CLI.

Each operation takes an open aiosqlite connection and a validated argument model, runs SQL constants with
bound parameters (filters only ever add `?` placeholders), and returns plain JSON-ready data. The rules come
from `services.learning`; the settings are the ones the store recorded (`recorded_settings`), so readers
use the same thresholds as the projections that wrote the data. Reads may use the wall clock (e.g. the
`calculated_at` of a current entropy reading); writes never do.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Self

import aiosqlite
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pheromone.contracts import EscalationDecisionRecord, EvolutionTrajectoryEntry, PatternRecord, QuarantineStatus
from pheromone.contracts.types import Identifier, NonNegInt
from pheromone.services.learning.entropy import entropy_from_aggregate
from pheromone.services.learning.escalations import OUTCOME_RANK
from pheromone.services.learning.executions import optimal_window
from pheromone.services.learning.factors import FactorCount, why
from pheromone.services.learning.trajectory import recurring_issues
from pheromone.services.learning.waits import learned_wait
from pheromone.services.settings import LearningSettings
from pheromone.services.store.codec import from_us

_Limit = Annotated[int, Field(ge=1, le=1_000)]
_Unit = Annotated[float, Field(ge=0.0, le=1.0)]
_Text = Annotated[str, Field(min_length=1, max_length=256)]


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PatternsArgs(Args):
    """`patterns`: filters, sorted by priority (highest first). Retired patterns only when asked by status."""

    pattern_type: _Text | None = None
    tags: Annotated[list[_Text], Field(max_length=64)] = Field(default_factory=list)
    match_all_tags: bool = False
    status: Annotated[list[QuarantineStatus], Field(max_length=4)] = Field(default_factory=list)
    min_trust: _Unit = 0.0
    min_priority: _Unit = 0.0
    instrument: _Text | None = None
    limit: _Limit = 20


class PatternArgs(Args):
    """`pattern`: one pattern by id or unique id prefix, with its history and "why" analysis."""

    id: Annotated[str, Field(min_length=3, max_length=128)]
    transitions: _Limit = 50
    applications: _Limit = 10


class EntropyArgs(Args):
    history: bool = False
    limit: _Limit = 20


class BudgetArgs(Args):
    job_hash: _Text | None = None
    limit: _Limit = 20


class DriftArgs(Args):
    epistemic: bool = False
    include_stable: bool = False
    """Also list patterns whose drift is below the threshold."""
    pattern_id: _Text | None = None
    limit: _Limit = 20


class WaitArgs(Args):
    error_code: _Text
    model: _Text | None = None
    static_seconds: Annotated[float, Field(gt=0.0, le=86_400.0)] | None = None


class EscalationArgs(Args):
    confidence: _Unit
    validation_pass_rate: _Unit
    limit: Annotated[int, Field(ge=1, le=100)] = 5


class ExecutionStatsArgs(Args):
    workspace: Identifier | None = None
    """The tenant: only executions (and recoveries) this workspace reported (the envelope's workspace)."""
    workspace_hash: _Text | None = None
    """The record's own `workspace_hash` field, as its producer wrote it (seed 000); not a boundary."""
    job_hash: _Text | None = None
    model: _Text | None = None
    by: Literal["workspace", "job", "model"] | None = None
    error_code: _Text | None = None
    """Optimal window: only recoveries from this error code."""
    limit: _Limit = 50


class TrajectoryArgs(Args):
    # The records' own bound (NonNegInt, <= 2**53): an unbounded int would overflow SQLite's INTEGER.
    start_cycle: NonNegInt | None = None
    end_cycle: NonNegInt | None = None
    window_cycles: Annotated[int, Field(ge=1, le=10_000)] | None = None
    min_occurrences: Annotated[int, Field(ge=1, le=10_000)] | None = None
    limit: _Limit = 50

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start_cycle is not None and self.end_cycle is not None and self.start_cycle > self.end_cycle:
            raise ValueError(f"the first cycle ({self.start_cycle}) is after the last ({self.end_cycle})")
        return self


class UnknownId(LookupError):
    """An id that names nothing in the store (or a prefix that names several things)."""


# -- settings ------------------------------------------------------------------------------------------------

SELECT_SETTINGS = "SELECT body FROM learning_settings WHERE id = 1"


async def recorded_settings(db: aiosqlite.Connection) -> LearningSettings:
    """The learning settings the store derives with (recorded by its writer), else the defaults."""
    try:
        async with db.execute(SELECT_SETTINGS) as cur:
            row = await cur.fetchone()
    except aiosqlite.OperationalError:  # a store from before the learning model: no table yet
        return LearningSettings()
    return LearningSettings.model_validate_json(row[0]) if row else LearningSettings()


# -- patterns ------------------------------------------------------------------------------------------------

PATTERN_COLUMNS = (
    "id",
    "pattern_type",
    "pattern_name",
    "description",
    "occurrence_count",
    "first_seen_us",
    "last_seen_us",
    "last_confirmed_us",
    "led_to_success_count",
    "led_to_failure_count",
    "effectiveness_score",
    "variance",
    "suggested_action",
    "context_tags",
    "priority_score",
    "quarantine_status",
    "provenance_job_hash",
    "provenance_sheet_num",
    "quarantined_at_us",
    "validated_at_us",
    "quarantine_reason",
    "trust_score",
    "trust_calculation_us",
    "success_factors",
    "success_factors_updated_us",
    "active",
    "content_hash",
    "instrument_name",
    "last_applied_us",
    "grace_until_apps",
)
_SELECT_PATTERNS = f"SELECT {', '.join('p.' + c for c in PATTERN_COLUMNS)} FROM patterns p"
_TIMES = {
    "first_seen_us": "first_seen",
    "last_seen_us": "last_seen",
    "last_confirmed_us": "last_confirmed",
    "quarantined_at_us": "quarantined_at",
    "validated_at_us": "validated_at",
    "trust_calculation_us": "trust_calculation_date",
    "success_factors_updated_us": "success_factors_updated_at",
}

F_TYPE = "p.pattern_type = ?"
F_STATUS = "p.quarantine_status IN ({})"
F_NOT_RETIRED = "p.quarantine_status != 'retired'"
F_TRUST = "p.trust_score >= ?"
F_PRIORITY = "p.priority_score >= ?"
F_INSTRUMENT = "p.instrument_name = ?"
# Tag filters come in two plans (see `patterns`): "matches" drives from the tag index and sorts what it finds;
# "scan" walks patterns by priority and probes each one's tags by primary key, stopping at the limit.
F_TAGS_ANY = "p.id IN (SELECT pattern_id FROM pattern_tags WHERE tag IN ({}))"
F_TAGS_ANY_SCAN = "EXISTS (SELECT 1 FROM pattern_tags t WHERE t.pattern_id = p.id AND t.tag IN ({}))"
F_TAGS_ALL = (  # intersect on the (covering) tag indexes first: only patterns with every tag are read
    "p.id IN (SELECT t.pattern_id FROM pattern_tags t WHERE t.tag = ? AND "
    "(SELECT COUNT(*) FROM pattern_tags u WHERE u.pattern_id = t.pattern_id AND u.tag IN ({})) = ?)"
)
F_TAGS_ALL_SCAN = "(SELECT COUNT(*) FROM pattern_tags t WHERE t.pattern_id = p.id AND t.tag IN ({})) = ?"
TAG_COUNTS = "SELECT tag, patterns FROM tag_counts WHERE tag IN ({})"
KNOWN_PATTERNS = "SELECT unique_patterns FROM entropy_state WHERE id = 1"
ORDER_PRIORITY = " ORDER BY p.priority_score DESC, p.id LIMIT ?"
SCAN_COST_US = 1.0
"""Cost of one step of the scan plan: one entry of the covering `patterns_rank` index plus a tag probe."""
MATCH_COST_US = 3.0
"""Cost of one candidate of the matches plan: a tag-index entry, its probes and the pattern row it loads.
Both measured with bench/queries.py on 50,000 patterns; only their ratio matters."""


def scan_is_cheaper(driver: int, expected_matches: float, known: int, limit: int) -> bool:
    """The plan choice: the scan visits about limit x known / matches index entries before it has `limit`
    rows; the matches plan reads `driver` candidates (all of any-of's tags, or all-of's rarest tag)."""
    scan = SCAN_COST_US * limit * known / max(expected_matches, 1e-9)
    return scan < MATCH_COST_US * driver


PATTERN_BY_PREFIX = _SELECT_PATTERNS + " WHERE p.id >= ? AND p.id < ? ORDER BY p.id LIMIT 2"
PATTERN_TRANSITIONS = """
SELECT event_id, seq, from_status, to_status, reason, actor, at_us FROM pattern_transitions
WHERE pattern_id = ? ORDER BY seq DESC, event_id DESC LIMIT ?
"""
PATTERN_FACTORS = """
SELECT factor, value, applications, successes, grounding_sum_micro / 1e6, grounding_n
FROM success_factor_counts
WHERE pattern_id = ? ORDER BY factor, value
"""
PATTERN_APPLICATIONS = """
SELECT event_id, workspace, job, applied_us, success, grounding_confidence, model FROM pattern_applications
WHERE pattern_id = ? ORDER BY applied_us DESC, event_id DESC LIMIT ?
"""
PATTERN_DRIFT = "SELECT drift, epistemic FROM pattern_drift WHERE pattern_id = ?"
SAME_CONTENT = """
SELECT id, pattern_type, pattern_name FROM patterns WHERE content_hash = ? AND id != ? ORDER BY id LIMIT 20
"""
PATTERN_STATE = "SELECT id, quarantine_status FROM patterns WHERE id = ?"


def pattern_record(row: tuple[Any, ...]) -> dict[str, Any]:
    """A `patterns` row as the seed's PatternRecord (JSON mode) plus the store's own derived fields."""
    raw = dict(zip(PATTERN_COLUMNS, row, strict=True))
    extra = {
        "last_applied": _iso(raw.pop("last_applied_us")),
        "grace_until_applications": raw.pop("grace_until_apps"),
    }
    data: dict[str, Any] = {
        _TIMES.get(k, k): (from_us(v) if k in _TIMES and v is not None else v) for k, v in raw.items()
    }
    data["context_tags"] = json.loads(data["context_tags"])
    data["success_factors"] = json.loads(data["success_factors"]) if data["success_factors"] else None
    data["active"] = bool(data["active"])
    record = PatternRecord.model_validate(data, strict=False)
    return {**record.model_dump(mode="json"), **extra}


async def patterns(db: aiosqlite.Connection, a: PatternsArgs, s: LearningSettings) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    if a.pattern_type is not None:
        where.append(F_TYPE)
        params.append(a.pattern_type)
    if a.status:
        where.append(F_STATUS.format(",".join("?" * len(a.status))))
        params.extend(x.value for x in a.status)
    else:
        where.append(F_NOT_RETIRED)
    if a.min_trust > 0:
        where.append(F_TRUST)
        params.append(a.min_trust)
    if a.min_priority > 0:
        where.append(F_PRIORITY)
        params.append(a.min_priority)
    if a.instrument is not None:
        where.append(F_INSTRUMENT)
        params.append(a.instrument)
    tags = sorted(set(a.tags))
    if tags:
        marks = ",".join("?" * len(tags))
        async with db.execute(TAG_COUNTS.format(marks), tags) as cur:
            counts = {tag: n for tag, n in await cur.fetchall()}
        if a.match_all_tags and len(counts) < len(tags):
            return []  # a tag no pattern has: nothing can have them all
        # Expected matches: any-of, at most the sum of the counts; all-of, the intersection if tags were
        # independent (N x product of count/N); both discounted by the filters no index serves.
        async with db.execute(KNOWN_PATTERNS) as cur:
            known = max(1, ((await cur.fetchone()) or (1,))[0])
        if a.match_all_tags:
            driver = min(counts.values())
            expected = known * math.prod(n / known for n in counts.values())
        else:
            driver = sum(counts.values())
            expected = float(driver)
        expected *= (1.0 - a.min_trust) * (0.25 if a.instrument is not None else 1.0)
        scan = scan_is_cheaper(driver, expected, known, a.limit)
        if a.match_all_tags:
            rarest = min(tags, key=lambda t: (counts[t], t))
            where.append((F_TAGS_ALL_SCAN if scan else F_TAGS_ALL).format(marks))
            params.extend([*([] if scan else [rarest]), *tags, len(tags)])
        else:
            where.append((F_TAGS_ANY_SCAN if scan else F_TAGS_ANY).format(marks))
            params.extend(tags)
    sql = f"{_SELECT_PATTERNS} WHERE {' AND '.join(where)}{ORDER_PRIORITY}"
    async with db.execute(sql, [*params, a.limit]) as cur:
        return [pattern_record(tuple(r)) for r in await cur.fetchall()]


async def find_pattern(db: aiosqlite.Connection, pattern_id: str) -> tuple[Any, ...]:
    """The pattern row for an id or unique id prefix; UnknownId otherwise."""
    async with db.execute(PATTERN_BY_PREFIX, (pattern_id, pattern_id + "\x7f")) as cur:
        rows = list(await cur.fetchall())
    exact = [r for r in rows if r[0] == pattern_id]
    if exact:
        return tuple(exact[0])
    if not rows:
        raise UnknownId(f"no pattern {pattern_id!r} in the store")
    if len(rows) > 1:
        raise UnknownId(f"pattern id prefix {pattern_id!r} is ambiguous")
    return tuple(rows[0])


async def pattern(db: aiosqlite.Connection, a: PatternArgs, s: LearningSettings) -> dict[str, Any]:
    row = await find_pattern(db, a.id)
    record = pattern_record(row)
    pid = record["id"]
    async with db.execute(PATTERN_TRANSITIONS, (pid, a.transitions)) as cur:
        transitions = [
            {
                "id": e,
                "seq": q,
                "from_status": f,
                "to_status": t,
                "reason": r,
                "actor": ac,
                "at": _iso(at),
                "derived": "/" in e,
            }
            for e, q, f, t, r, ac, at in await cur.fetchall()
        ]
    async with db.execute(PATTERN_FACTORS, (pid,)) as cur:
        factors = [FactorCount(*r) for r in await cur.fetchall()]
    async with db.execute(PATTERN_APPLICATIONS, (pid, a.applications)) as cur:
        applications = [
            {
                "event_id": e,
                "workspace": w,
                "job": j,
                "applied_at": _iso(at),
                "success": bool(ok),
                "grounding_confidence": g,
                "model": m,
            }
            for e, w, j, at, ok, g, m in await cur.fetchall()
        ]
    async with db.execute(PATTERN_DRIFT, (pid,)) as cur:
        drift_row = await cur.fetchone()
    async with db.execute(SAME_CONTENT, (record["content_hash"], pid)) as cur:
        same = [{"id": i, "pattern_type": t, "pattern_name": n} for i, t, n in await cur.fetchall()]
    return {
        "pattern": record,
        "provenance": {
            "job_hash": record["provenance_job_hash"],
            "sheet_num": record["provenance_sheet_num"],
            "instrument": record["instrument_name"],
            "first_seen": record["first_seen"],
            "content_hash": record["content_hash"],
        },
        "same_content": same,
        "transitions": transitions,
        "why": why(factors, record["led_to_success_count"], record["led_to_failure_count"], s),
        "recent_applications": applications,
        "drift": json.loads(drift_row[0]) if drift_row and drift_row[0] else None,
        "epistemic_drift": json.loads(drift_row[1]) if drift_row and drift_row[1] else None,
    }


async def pattern_status(db: aiosqlite.Connection, pattern_id: str) -> tuple[str, QuarantineStatus]:
    """(full id, status) of a pattern by id or unique prefix: the CLI's pre-check before a transition."""
    row = await find_pattern(db, pattern_id)
    return row[0], QuarantineStatus(row[PATTERN_COLUMNS.index("quarantine_status")])


# -- entropy and budget --------------------------------------------------------------------------------------

ENTROPY_STATE = (
    "SELECT total, sum_c_log2_c, unique_patterns, effective_patterns FROM entropy_state WHERE id = 1"
)
MAX_APPLICATIONS = "SELECT MAX(applications) FROM pattern_counts"
ENTROPY_HISTORY = """
SELECT event_id, calculated_us, shannon_entropy, max_possible_entropy, diversity_index, unique_pattern_count,
       effective_pattern_count, total_applications, dominant_pattern_share, threshold_exceeded
FROM entropy_history ORDER BY seq DESC LIMIT ?
"""
BUDGET_LATEST = """
SELECT id, job_hash, recorded_us, budget_value, entropy_at_time, adjustment_type, adjustment_reason
FROM exploration_budget {where} ORDER BY seq DESC LIMIT ?
"""
BUDGET_STATS = """
SELECT COUNT(*), AVG(budget_value), MIN(budget_value), MAX(budget_value),
       SUM(adjustment_type = 'floor_enforced'), SUM(adjustment_type = 'ceiling_enforced'),
       SUM(adjustment_type = 'boost'), SUM(adjustment_type = 'decay')
FROM exploration_budget {where}
"""
F_JOB_HASH = "WHERE job_hash = ?"


async def entropy(db: aiosqlite.Connection, a: EntropyArgs, s: LearningSettings) -> dict[str, Any]:
    """The current population entropy from the store's running aggregate (O(1)), and optionally history."""
    async with db.execute(ENTROPY_STATE) as cur:
        state = await cur.fetchone()
    async with db.execute(MAX_APPLICATIONS) as cur:
        top = await cur.fetchone()
    total, sum_clogc, unique, effective = state if state else (0, 0.0, 0, 0)
    current = entropy_from_aggregate(
        total=total,
        sum_c_log2_c=sum_clogc,
        unique=unique,
        effective=effective,
        max_count=(top[0] or 0) if top else 0,
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
        async with db.execute(ENTROPY_HISTORY, (a.limit,)) as cur:
            result["history"] = [
                {
                    "event_id": e,
                    "calculated_at": _iso(at),
                    "shannon_entropy": h,
                    "max_possible_entropy": hm,
                    "diversity_index": d,
                    "unique_pattern_count": u,
                    "effective_pattern_count": ef,
                    "total_applications": t,
                    "dominant_pattern_share": dom,
                    "threshold_exceeded": bool(x),
                }
                for e, at, h, hm, d, u, ef, t, dom, x in await cur.fetchall()
            ]
    return result


async def budget(db: aiosqlite.Connection, a: BudgetArgs, s: LearningSettings) -> dict[str, Any]:
    where, params = (F_JOB_HASH, [a.job_hash]) if a.job_hash else ("", [])
    async with db.execute(BUDGET_LATEST.format(where=where), [*params, a.limit]) as cur:
        history = [
            {
                "id": i,
                "job_hash": j,
                "recorded_at": _iso(at),
                "budget_value": v,
                "entropy_at_time": e,
                "adjustment_type": t,
                "adjustment_reason": r,
            }
            for i, j, at, v, e, t, r in await cur.fetchall()
        ]
    async with db.execute(BUDGET_STATS.format(where=where), params) as cur:
        n, avg, lo, hi, floors, ceilings, boosts, decays = await cur.fetchone() or (0,) * 8
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

DRIFT_LIST = """
SELECT drift FROM pattern_drift WHERE drift IS NOT NULL {only}
ORDER BY drift_magnitude DESC, pattern_id LIMIT ?
"""
EPISTEMIC_LIST = """
SELECT epistemic FROM pattern_drift WHERE epistemic IS NOT NULL {only}
ORDER BY ABS(belief_change) DESC, pattern_id LIMIT ?
"""
DRIFT_ONE = "SELECT drift, epistemic FROM pattern_drift WHERE pattern_id = ?"
DRIFT_SUMMARY = """
SELECT (SELECT COUNT(*) FROM patterns), COUNT(drift), COALESCE(SUM(drift_exceeded), 0), AVG(drift_magnitude),
       COUNT(epistemic), COALESCE(SUM(epistemic_exceeded), 0), AVG(belief_change)
FROM pattern_drift
"""


async def drift(db: aiosqlite.Connection, a: DriftArgs, s: LearningSettings) -> dict[str, Any]:
    """Current drift per pattern (kept up to date by the projections), most drifting first."""
    column = 1 if a.epistemic else 0
    if a.pattern_id is not None:
        row = await find_pattern(db, a.pattern_id)
        async with db.execute(DRIFT_ONE, (row[0],)) as cur:
            found = await cur.fetchone()
        items = [json.loads(found[column])] if found and found[column] else []
    else:
        sql = (EPISTEMIC_LIST if a.epistemic else DRIFT_LIST).format(
            only=""
            if a.include_stable
            else ("AND epistemic_exceeded = 1" if a.epistemic else "AND drift_exceeded = 1")
        )
        async with db.execute(sql, (a.limit,)) as cur:
            items = [json.loads(r[0]) for r in await cur.fetchall()]
    async with db.execute(DRIFT_SUMMARY) as cur:
        total, analyzed, drifting, avg, e_analyzed, e_drifting, e_avg = await cur.fetchone() or (0,) * 7
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

WAITS = """
SELECT actual_wait FROM error_recoveries WHERE error_code = ? AND recovery_success = 1
ORDER BY recorded_us DESC LIMIT ?
"""
WAITS_MODEL = """
SELECT actual_wait FROM error_recoveries WHERE error_code = ? AND model = ? AND recovery_success = 1
ORDER BY recorded_us DESC LIMIT ?
"""
WAIT_SAMPLES = """
SELECT COUNT(*) FROM (SELECT 1 FROM error_recoveries WHERE error_code = ? AND recovery_success = 1 LIMIT ?)
"""
WAIT_SAMPLES_MODEL = """
SELECT COUNT(*) FROM (
    SELECT 1 FROM error_recoveries WHERE error_code = ? AND model = ? AND recovery_success = 1 LIMIT ?
)
"""


async def wait(db: aiosqlite.Connection, a: WaitArgs, s: LearningSettings) -> dict[str, Any]:
    """The learned wait for an error code (and model), blended with the static fallback by confidence."""
    scope: list[Any] = [a.error_code] if a.model is None else [a.error_code, a.model]
    async with db.execute(WAITS if a.model is None else WAITS_MODEL, [*scope, s.wait_recent_samples]) as cur:
        waits = [r[0] for r in await cur.fetchall()]
    # Confidence saturates at `wait_full_confidence_samples`: count no further than that.
    async with db.execute(
        WAIT_SAMPLES if a.model is None else WAIT_SAMPLES_MODEL, [*scope, s.wait_full_confidence_samples]
    ) as cur:
        samples = (await cur.fetchone() or (0,))[0]
    return learned_wait(a.error_code, a.model, waits, samples, s, static_seconds=a.static_seconds).as_dict()


def _outcome_classes() -> list[str]:
    """One SQL condition per outcome rank, best rank first (built from the rule's OUTCOME_RANK)."""
    by_rank: dict[int, list[str | None]] = {}
    for outcome, rank in OUTCOME_RANK.items():
        by_rank.setdefault(rank, []).append(outcome)
    conditions = []
    for _, outcomes in sorted(by_rank.items()):
        named = [f"'{o}'" for o in outcomes if o is not None]
        parts = ([f"outcome_after_action IN ({', '.join(named)})"] if named else []) + (
            ["outcome_after_action IS NULL"] if None in outcomes else []
        )
        conditions.append(" OR ".join(parts))
    return conditions


SIMILAR_ESCALATIONS = """
SELECT id, job_hash, sheet_num, confidence, action, guidance, validation_pass_rate, retry_count,
       outcome_after_action, recorded_us, model,
       ABS(confidence - :c) + ABS(validation_pass_rate - :v) AS distance
FROM escalation_decisions
WHERE ({outcome}) AND confidence BETWEEN :c - :ct AND :c + :ct
      AND validation_pass_rate BETWEEN :v - :vt AND :v + :vt
ORDER BY distance, recorded_us DESC, id
LIMIT :limit
"""
SIMILAR_BY_OUTCOME = [SIMILAR_ESCALATIONS.format(outcome=c) for c in _outcome_classes()]
"""One query per outcome class, best first: each is a range of the (outcome, confidence, pass rate) index, and
the search stops as soon as `limit` decisions are found."""
SEARCH_RADII = (0.02, 0.05)
"""Boxes tried before the full tolerance box. If the k-th nearest decision inside a box of half-width r is at
distance <= r, it is the k-th nearest overall: anything outside the box is further than r (|d| > r)."""


async def escalations_similar(
    db: aiosqlite.Connection, a: EscalationArgs, s: LearningSettings
) -> dict[str, Any]:
    """Similar past escalation decisions, best first (successful outcomes first, then closest)."""
    params = {
        "c": a.confidence,
        "v": a.validation_pass_rate,
        "ct": s.escalation_confidence_tolerance,
        "vt": s.escalation_pass_rate_tolerance,
        "limit": a.limit,
    }
    rows: list[Any] = []
    for sql in SIMILAR_BY_OUTCOME:
        need = a.limit - len(rows)
        for radius in (*SEARCH_RADII, None):
            ct = params["ct"] if radius is None else min(radius, params["ct"])
            vt = params["vt"] if radius is None else min(radius, params["vt"])
            async with db.execute(sql, {**params, "ct": ct, "vt": vt, "limit": need}) as cur:
                found = list(await cur.fetchall())
            final = radius is None or (ct, vt) == (params["ct"], params["vt"])
            if final or (len(found) == need and found[-1][-1] <= min(ct, vt)):
                rows += found
                break
        if len(rows) >= a.limit:
            break
    decisions = []
    for i, j, n, c, act, g, v, r, out, at, m, dist in rows:
        record = EscalationDecisionRecord.model_validate(
            {
                "id": i,
                "job_hash": j,
                "sheet_num": n,
                "confidence": c,
                "action": act,
                "guidance": g,
                "validation_pass_rate": v,
                "retry_count": r,
                "outcome_after_action": out,
                "recorded_at": from_us(at),
                "model": m,
            },
            strict=False,
        )
        decisions.append({**record.model_dump(mode="json"), "distance": dist})
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


_GROUPS = {"workspace": "workspace_hash", "job": "job_hash", "model": "model"}
EXECUTION_STATS = """
SELECT {group} COUNT(*), SUM(success_without_retry), AVG(confidence_score), AVG(computed_confidence),
       AVG(validation_pass_rate), AVG(duration_seconds), AVG(retry_count), COUNT(DISTINCT workspace_hash)
FROM executions WHERE 1=1 {where} {group_by} LIMIT ?
"""
RECOVERY_HOURS = """
SELECT time_of_day, SUM(recovery_success), COUNT(*) FROM error_recoveries WHERE 1=1 {where}
GROUP BY time_of_day
"""


async def execution_stats(
    db: aiosqlite.Connection, a: ExecutionStatsArgs, s: LearningSettings
) -> dict[str, Any]:
    """Execution statistics (overall or per workspace/job/model) and the optimal execution window."""
    where, params = "", []  # type: tuple[str, list[Any]]
    for column, value in (("workspace", a.workspace), ("workspace_hash", a.workspace_hash),
                          ("job_hash", a.job_hash), ("model", a.model)):
        if value is not None:
            where += f" AND {column} = ?"
            params.append(value)
    group = f"{_GROUPS[a.by]}," if a.by else ""
    group_by = f"GROUP BY {_GROUPS[a.by]} ORDER BY COUNT(*) DESC" if a.by else ""
    sql = EXECUTION_STATS.format(group=group, where=where, group_by=group_by)
    async with db.execute(sql, [*params, a.limit]) as cur:
        rows = await cur.fetchall()
    groups = []
    for row in rows:
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
    rwhere, rparams = "", []  # type: tuple[str, list[Any]]
    if a.workspace is not None:
        rwhere += " AND workspace = ?"
        rparams.append(a.workspace)
    if a.error_code is not None:
        rwhere += " AND error_code = ?"
        rparams.append(a.error_code)
    if a.model is not None:
        rwhere += " AND model = ?"
        rparams.append(a.model)
    async with db.execute(RECOVERY_HOURS.format(where=rwhere), rparams) as cur:
        hours = {h: (ok or 0, n) for h, ok, n in await cur.fetchall()}
    return {"stats": groups, "optimal_window": optimal_window(hours, s)}


TRAJECTORY = """
SELECT id, cycle, recorded_us, evolutions_completed, evolutions_deferred, issue_classes, cv_avg,
       implementation_loc, test_loc, loc_accuracy, research_candidates_resolved, research_candidates_created,
       notes
FROM evolution_trajectory WHERE cycle >= ? AND cycle <= ? ORDER BY cycle DESC LIMIT ?
"""
TRAJECTORY_CLASSES = "SELECT cycle, issue_classes FROM evolution_trajectory ORDER BY cycle DESC LIMIT ?"


async def trajectory(db: aiosqlite.Connection, a: TrajectoryArgs, s: LearningSettings) -> dict[str, Any]:
    """Evolution trajectory entries (newest cycle first) and recurring issue classes over a window."""
    bounds = (a.start_cycle or 0, a.end_cycle if a.end_cycle is not None else 2**62, a.limit)
    async with db.execute(TRAJECTORY, bounds) as cur:
        entries = []
        for row in await cur.fetchall():
            i, cycle, at, done, deferred, classes, cv, impl, test, acc, resolved, created, notes = row
            entries.append(
                EvolutionTrajectoryEntry.model_validate(
                    {
                        "id": i,
                        "cycle": cycle,
                        "recorded_at": from_us(at),
                        "evolutions_completed": done,
                        "evolutions_deferred": deferred,
                        "issue_classes": json.loads(classes),
                        "cv_avg": cv,
                        "implementation_loc": impl,
                        "test_loc": test,
                        "loc_accuracy": acc,
                        "research_candidates_resolved": resolved,
                        "research_candidates_created": created,
                        "notes": notes,
                    },
                    strict=False,
                ).model_dump(mode="json")
            )
    async with db.execute(TRAJECTORY_CLASSES, (a.window_cycles or 2**62,)) as cur:
        classes = [(c, json.loads(ic)) for c, ic in await cur.fetchall()]
    minimum = a.min_occurrences or s.recurring_min_occurrences
    return {
        "entries": entries,
        "recurring_issues": recurring_issues(classes, min_occurrences=minimum, window_cycles=a.window_cycles),
        "window_cycles": a.window_cycles,
        "min_occurrences": minimum,
    }


async def export(db: aiosqlite.Connection, limit: int = 1_000) -> dict[str, Any]:
    """What an operator exports: patterns (by priority, retired too), entropy, budget, drift, trajectory."""
    s = await recorded_settings(db)
    statuses = list(QuarantineStatus)
    return {
        "exported_at": datetime.now(UTC).isoformat(),
        "settings": s.model_dump(mode="json"),
        "patterns": await patterns(db, PatternsArgs(status=statuses, limit=limit), s),
        "entropy": await entropy(db, EntropyArgs(history=True, limit=100), s),
        "budget": await budget(db, BudgetArgs(limit=100), s),
        "drift": await drift(db, DriftArgs(limit=100), s),
        "epistemic_drift": await drift(db, DriftArgs(epistemic=True, limit=100), s),
        "trajectory": await trajectory(db, TrajectoryArgs(limit=1_000), s),
    }


def _iso(value: int | None) -> str | None:
    return from_us(value).isoformat().replace("+00:00", "Z") if value is not None else None


# -- the query service's operations --------------------------------------------------------------------------

Reading = Callable[[aiosqlite.Connection, Any, LearningSettings], Awaitable[Any]]


def _op(fn: Reading, model: type[Args]) -> Callable[[Any, dict[str, Any]], Awaitable[Any]]:
    async def run(reader: Any, args: dict[str, Any]) -> Any:
        parsed = model.model_validate(args)
        try:
            return await fn(reader.db, parsed, await recorded_settings(reader.db))
        except UnknownId as exc:
            raise LookupError(str(exc)) from exc

    run.__name__ = fn.__name__
    run.args_model = model  # type: ignore[attr-defined]  # `pheromone schema --queries` exports its schema
    return run


LEARNING_OPS: dict[str, Callable[[Any, dict[str, Any]], Awaitable[Any]]] = {
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
"""Registered into `services.query.service.OPS`: name -> op(reader, args)."""
