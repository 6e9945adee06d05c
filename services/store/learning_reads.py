"""The learning model's tables, read: the SQL behind the query service's and the CLI's learning questions.

Every statement is a constant with bound parameters; a filter only ever adds `?` placeholders or a fixed
fragment chosen by code. Rows come back as the contracts' records (JSON mode) or plain tuples in the column
order each method names; what a row *means* (a wait, a drift summary, a "why") is decided in
`services.query.learning` and `services.learning`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pheromone.contracts import EscalationDecisionRecord, EvolutionTrajectoryEntry, PatternRecord
from pheromone.services.errors import StoreNotMigrated
from pheromone.services.learning.escalations import OUTCOME_RANK
from pheromone.services.learning.factors import FactorCount
from pheromone.services.settings import LearningSettings
from pheromone.services.store.codec import from_us
from pheromone.services.store.projections import SELECT_LEARNING
from pheromone.services.store.read_conn import ReadConn
from pheromone.services.store.reads import UnknownId

# -- settings ------------------------------------------------------------------------------------------------


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
SELECT_PATTERNS = f"SELECT {', '.join('p.' + c for c in PATTERN_COLUMNS)} FROM patterns p"
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
Only the ratio of the two costs matters; bench/queries.py measures both."""


def scan_is_cheaper(driver: int, expected_matches: float, known: int, limit: int) -> bool:
    """The plan choice: the scan visits about limit x known / matches index entries before it has `limit`
    rows; the matches plan reads `driver` candidates (all of any-of's tags, or all-of's rarest tag)."""
    scan = SCAN_COST_US * limit * known / max(expected_matches, 1e-9)
    return scan < MATCH_COST_US * driver


PATTERN_BY_PREFIX = SELECT_PATTERNS + " WHERE p.id >= ? AND p.id < ? ORDER BY p.id LIMIT 2"
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
TRANSITION_OF_EVENT = (
    "SELECT from_status, to_status, reason, actor, at_us FROM pattern_transitions WHERE event_id = ?"
)

# -- entropy, budget, drift ----------------------------------------------------------------------------------

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
# CASE, not a boolean SUM: PostgreSQL has no SUM(boolean); both give NULL over no rows.
BUDGET_STATS = """
SELECT COUNT(*), AVG(budget_value), MIN(budget_value), MAX(budget_value),
       SUM(CASE adjustment_type WHEN 'floor_enforced' THEN 1 ELSE 0 END),
       SUM(CASE adjustment_type WHEN 'ceiling_enforced' THEN 1 ELSE 0 END),
       SUM(CASE adjustment_type WHEN 'boost' THEN 1 ELSE 0 END),
       SUM(CASE adjustment_type WHEN 'decay' THEN 1 ELSE 0 END)
FROM exploration_budget {where}
"""
F_JOB_HASH = "WHERE job_hash = ?"
DRIFT_LIST = """
SELECT drift FROM pattern_drift WHERE drift IS NOT NULL {only}
ORDER BY drift_magnitude DESC, pattern_id LIMIT ?
"""
EPISTEMIC_LIST = """
SELECT epistemic FROM pattern_drift WHERE epistemic IS NOT NULL {only}
ORDER BY ABS(belief_change) DESC, pattern_id LIMIT ?
"""
DRIFT_SUMMARY = """
SELECT (SELECT COUNT(*) FROM patterns), COUNT(drift), COALESCE(SUM(drift_exceeded), 0), AVG(drift_magnitude),
       COUNT(epistemic), COALESCE(SUM(epistemic_exceeded), 0), AVG(belief_change)
FROM pattern_drift
"""

# -- learned wait, escalations, executions, trajectory, rate limits ------------------------------------------

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

EXECUTION_GROUPS = {"workspace": "workspace_hash", "job": "job_hash", "model": "model"}
EXECUTION_STATS = """
SELECT {group} COUNT(*), SUM(success_without_retry), AVG(confidence_score), AVG(computed_confidence),
       AVG(validation_pass_rate), AVG(duration_seconds), AVG(retry_count), COUNT(DISTINCT workspace_hash)
FROM executions WHERE 1=1 {where} {group_by} LIMIT ?
"""
RECOVERY_HOURS = """
SELECT time_of_day, SUM(recovery_success), COUNT(*) FROM error_recoveries WHERE 1=1 {where}
GROUP BY time_of_day
"""
TRAJECTORY = """
SELECT id, cycle, recorded_us, evolutions_completed, evolutions_deferred, issue_classes, cv_avg,
       implementation_loc, test_loc, loc_accuracy, research_candidates_resolved, research_candidates_created,
       notes
FROM evolution_trajectory WHERE cycle >= ? AND cycle <= ? ORDER BY cycle DESC LIMIT ?
"""
TRAJECTORY_CLASSES = "SELECT cycle, issue_classes FROM evolution_trajectory ORDER BY cycle DESC LIMIT ?"
ACTIVE_RATE_LIMITS = """
SELECT model, error_code, MAX(expires_us) FROM rate_limit_events
WHERE expires_us > ? GROUP BY model, error_code ORDER BY model, error_code
"""


@dataclass(frozen=True, slots=True)
class PatternHistory:
    """What the store holds about one pattern besides its row: the parts of `pheromone pattern ID`."""

    transitions: list[dict[str, Any]]
    factors: list[FactorCount]
    applications: list[dict[str, Any]]
    drift: dict[str, Any] | None
    epistemic_drift: dict[str, Any] | None
    same_content: list[dict[str, Any]]


def iso(value: int | None) -> str | None:
    """A stored microsecond time as ISO 8601 UTC with a `Z`; None stays None."""
    return from_us(value).isoformat().replace("+00:00", "Z") if value is not None else None


def pattern_record(row: tuple[Any, ...]) -> dict[str, Any]:
    """A `patterns` row as the seed's PatternRecord (JSON mode) plus the store's own derived fields."""
    raw = dict(zip(PATTERN_COLUMNS, row, strict=True))
    extra = {
        "last_applied": iso(raw.pop("last_applied_us")),
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


class LearningReads:
    """The learning reads of the store's readers (`services.store.reader.Reader`, `pg.reader.PgReader`)."""

    @property
    def db(self) -> ReadConn:
        raise NotImplementedError

    async def settings(self) -> LearningSettings:
        """The learning settings the store derives with (recorded by its writer), else the defaults."""
        try:
            async with self.db.execute(SELECT_LEARNING) as cur:
                row = await cur.fetchone()
        except StoreNotMigrated:  # a store from before the learning model: no table yet
            return LearningSettings()
        return LearningSettings.model_validate_json(row[0]) if row else LearningSettings()

    async def patterns(
        self,
        *,
        pattern_type: str | None = None,
        tags: Sequence[str] = (),
        match_all_tags: bool = False,
        statuses: Sequence[str] = (),
        min_trust: float = 0.0,
        min_priority: float = 0.0,
        instrument: str | None = None,
        limit: int = 20,
    ) -> list[dict[str, Any]]:
        """Patterns matching every filter, highest priority first; retired ones only when `statuses` asks."""
        where: list[str] = []
        params: list[Any] = []
        if pattern_type is not None:
            where.append(F_TYPE)
            params.append(pattern_type)
        if statuses:
            where.append(F_STATUS.format(",".join("?" * len(statuses))))
            params.extend(statuses)
        else:
            where.append(F_NOT_RETIRED)
        if min_trust > 0:
            where.append(F_TRUST)
            params.append(min_trust)
        if min_priority > 0:
            where.append(F_PRIORITY)
            params.append(min_priority)
        if instrument is not None:
            where.append(F_INSTRUMENT)
            params.append(instrument)
        wanted = sorted(set(tags))
        if wanted:
            marks = ",".join("?" * len(wanted))
            async with self.db.execute(TAG_COUNTS.format(marks), wanted) as cur:
                counts = {tag: n for tag, n in await cur.fetchall()}
            if match_all_tags and len(counts) < len(wanted):
                return []  # a tag no pattern has: nothing can have them all
            # Expected matches: any-of, at most the sum of the counts; all-of, the intersection if tags were
            # independent (N x product of count/N); both discounted by the filters no index serves.
            async with self.db.execute(KNOWN_PATTERNS) as cur:
                known = max(1, ((await cur.fetchone()) or (1,))[0])
            if match_all_tags:
                driver = min(counts.values())
                expected = known * math.prod(n / known for n in counts.values())
            else:
                driver = sum(counts.values())
                expected = float(driver)
            expected *= (1.0 - min_trust) * (0.25 if instrument is not None else 1.0)
            scan = scan_is_cheaper(driver, expected, known, limit)
            if match_all_tags:
                rarest = min(wanted, key=lambda t: (counts[t], t))
                where.append((F_TAGS_ALL_SCAN if scan else F_TAGS_ALL).format(marks))
                params.extend([*([] if scan else [rarest]), *wanted, len(wanted)])
            else:
                where.append((F_TAGS_ANY_SCAN if scan else F_TAGS_ANY).format(marks))
                params.extend(wanted)
        sql = f"{SELECT_PATTERNS} WHERE {' AND '.join(where)}{ORDER_PRIORITY}"
        async with self.db.execute(sql, [*params, limit]) as cur:
            return [pattern_record(tuple(r)) for r in await cur.fetchall()]

    async def find_pattern(self, pattern_id: str) -> dict[str, Any]:
        """The pattern with this id or unique id prefix (as `patterns` returns it); UnknownId otherwise."""
        async with self.db.execute(PATTERN_BY_PREFIX, (pattern_id, pattern_id + "\x7f")) as cur:
            rows = [tuple(r) for r in await cur.fetchall()]
        exact = [r for r in rows if r[0] == pattern_id]
        if exact:
            return pattern_record(exact[0])
        if not rows:
            raise UnknownId(f"no pattern {pattern_id!r} in the store")
        if len(rows) > 1:
            raise UnknownId(f"pattern id prefix {pattern_id!r} is ambiguous")
        return pattern_record(rows[0])

    async def pattern_history(
        self, pattern_id: str, content_hash: str | None, transitions: int, applications: int
    ) -> PatternHistory:
        """A pattern's newest transitions and applications, its factor counts, drift and same-content peers."""
        async with self.db.execute(PATTERN_TRANSITIONS, (pattern_id, transitions)) as cur:
            moves = [
                {"id": e, "seq": q, "from_status": f, "to_status": t, "reason": r, "actor": ac, "at": iso(at),
                 "derived": "/" in e}
                for e, q, f, t, r, ac, at in await cur.fetchall()
            ]
        async with self.db.execute(PATTERN_FACTORS, (pattern_id,)) as cur:
            factors = [FactorCount(*r) for r in await cur.fetchall()]
        async with self.db.execute(PATTERN_APPLICATIONS, (pattern_id, applications)) as cur:
            applied = [
                {"event_id": e, "workspace": w, "job": j, "applied_at": iso(at), "success": bool(ok),
                 "grounding_confidence": g, "model": m}
                for e, w, j, at, ok, g, m in await cur.fetchall()
            ]
        async with self.db.execute(PATTERN_DRIFT, (pattern_id,)) as cur:
            drift_row = await cur.fetchone()
        async with self.db.execute(SAME_CONTENT, (content_hash, pattern_id)) as cur:
            same = [{"id": i, "pattern_type": t, "pattern_name": n} for i, t, n in await cur.fetchall()]
        return PatternHistory(
            transitions=moves,
            factors=factors,
            applications=applied,
            drift=json.loads(drift_row[0]) if drift_row and drift_row[0] else None,
            epistemic_drift=json.loads(drift_row[1]) if drift_row and drift_row[1] else None,
            same_content=same,
        )

    async def transition_of(self, event_id: str) -> dict[str, Any] | None:
        """The pattern transition an event recorded, once the store has applied it; None before."""
        async with self.db.execute(TRANSITION_OF_EVENT, (event_id,)) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return dict(zip(("from_status", "to_status", "reason", "actor", "at_us"), row, strict=True))

    async def entropy_state(self) -> tuple[int, float, int, int, int]:
        """The running entropy aggregate: (total, sum of c*log2(c), unique, effective, largest count)."""
        async with self.db.execute(ENTROPY_STATE) as cur:
            state = await cur.fetchone()
        async with self.db.execute(MAX_APPLICATIONS) as cur:
            top = await cur.fetchone()
        total, sum_clogc, unique, effective = tuple(state) if state else (0, 0.0, 0, 0)
        return total, sum_clogc, unique, effective, (top[0] or 0) if top else 0

    async def entropy_history(self, limit: int) -> list[dict[str, Any]]:
        async with self.db.execute(ENTROPY_HISTORY, (limit,)) as cur:
            return [
                {"event_id": e, "calculated_at": iso(at), "shannon_entropy": h, "max_possible_entropy": hm,
                 "diversity_index": d, "unique_pattern_count": u, "effective_pattern_count": ef,
                 "total_applications": t, "dominant_pattern_share": dom, "threshold_exceeded": bool(x)}
                for e, at, h, hm, d, u, ef, t, dom, x in await cur.fetchall()
            ]

    async def budget(self, job_hash: str | None, limit: int) -> tuple[list[dict[str, Any]], tuple[Any, ...]]:
        """The newest `limit` budget adjustments (of one job, if given) and the statistics over all of them:
        (count, mean, min, max, floors, ceilings, boosts, decays)."""
        where, params = (F_JOB_HASH, [job_hash]) if job_hash else ("", [])
        async with self.db.execute(BUDGET_LATEST.format(where=where), [*params, limit]) as cur:
            history = [
                {"id": i, "job_hash": j, "recorded_at": iso(at), "budget_value": v, "entropy_at_time": e,
                 "adjustment_type": t, "adjustment_reason": r}
                for i, j, at, v, e, t, r in await cur.fetchall()
            ]
        async with self.db.execute(BUDGET_STATS.format(where=where), params) as cur:
            stats = tuple(await cur.fetchone() or (0,) * 8)
        return history, stats

    async def drift(self, *, epistemic: bool, include_stable: bool, limit: int) -> list[dict[str, Any]]:
        """Drift reports (statistical, or epistemic), most drifting first; only the drifting unless asked."""
        sql = (EPISTEMIC_LIST if epistemic else DRIFT_LIST).format(
            only="" if include_stable else ("AND epistemic_exceeded = 1" if epistemic else "AND drift_exceeded = 1")
        )
        async with self.db.execute(sql, (limit,)) as cur:
            return [json.loads(r[0]) for r in await cur.fetchall()]

    async def drift_of(self, pattern_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """(drift, epistemic drift) of one pattern by full id; None where none was computed."""
        async with self.db.execute(PATTERN_DRIFT, (pattern_id,)) as cur:
            row = await cur.fetchone()
        return (json.loads(row[0]) if row and row[0] else None, json.loads(row[1]) if row and row[1] else None)

    async def drift_summary(self) -> tuple[Any, ...]:
        """(patterns, analyzed, drifting, mean magnitude, epistemic analyzed, drifting, mean belief change)."""
        async with self.db.execute(DRIFT_SUMMARY) as cur:
            return tuple(await cur.fetchone() or (0,) * 7)

    async def recovery_waits(self, error_code: str, model: str | None, recent: int, count_to: int
                             ) -> tuple[list[float], int]:
        """The `recent` newest successful waits for an error code (and model), and how many successful
        recoveries there are, counted no further than `count_to`."""
        scope: list[Any] = [error_code] if model is None else [error_code, model]
        async with self.db.execute(WAITS if model is None else WAITS_MODEL, [*scope, recent]) as cur:
            waits = [r[0] for r in await cur.fetchall()]
        async with self.db.execute(WAIT_SAMPLES if model is None else WAIT_SAMPLES_MODEL, [*scope, count_to]) as cur:
            samples = int((await cur.fetchone() or (0,))[0])
        return waits, samples

    async def similar_escalations(
        self, confidence: float, pass_rate: float, confidence_tolerance: float, pass_rate_tolerance: float,
        limit: int,
    ) -> list[dict[str, Any]]:
        """Past escalation decisions within the tolerance box, best outcome class first, then closest: each
        an EscalationDecisionRecord (JSON mode) plus its `distance`."""
        params = {"c": confidence, "v": pass_rate, "ct": confidence_tolerance, "vt": pass_rate_tolerance,
                  "limit": limit}
        rows: list[Any] = []
        for sql in SIMILAR_BY_OUTCOME:
            need = limit - len(rows)
            for radius in (*SEARCH_RADII, None):
                ct = params["ct"] if radius is None else min(radius, params["ct"])
                vt = params["vt"] if radius is None else min(radius, params["vt"])
                async with self.db.execute(sql, {**params, "ct": ct, "vt": vt, "limit": need}) as cur:
                    found = list(await cur.fetchall())
                final = radius is None or (ct, vt) == (params["ct"], params["vt"])
                if final or (len(found) == need and found[-1][-1] <= min(ct, vt)):
                    rows += found
                    break
            if len(rows) >= limit:
                break
        decisions = []
        for i, j, n, c, act, g, v, r, out, at, m, dist in rows:
            record = EscalationDecisionRecord.model_validate(
                {"id": i, "job_hash": j, "sheet_num": n, "confidence": c, "action": act, "guidance": g,
                 "validation_pass_rate": v, "retry_count": r, "outcome_after_action": out,
                 "recorded_at": from_us(at), "model": m},
                strict=False,
            )
            decisions.append({**record.model_dump(mode="json"), "distance": dist})
        return decisions

    async def execution_stats(self, filters: dict[str, str | None], by: str | None, limit: int
                              ) -> list[tuple[Any, ...]]:
        """Execution aggregates, overall or per `by` (workspace, job or model; biggest group first): rows of
        ([group,] count, first-try successes, mean confidence, mean computed confidence, mean pass rate,
        mean duration, mean retries, distinct workspaces). `filters` maps columns of `executions` to values."""
        where, params = "", []  # type: tuple[str, list[Any]]
        for column in ("workspace", "workspace_hash", "job_hash", "model"):
            value = filters.get(column)
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        group = f"{EXECUTION_GROUPS[by]}," if by else ""
        # The group breaks ties in size, so both backends list equal groups in one order.
        group_by = f"GROUP BY {EXECUTION_GROUPS[by]} ORDER BY COUNT(*) DESC, {EXECUTION_GROUPS[by]}" if by else ""
        sql = EXECUTION_STATS.format(group=group, where=where, group_by=group_by)
        async with self.db.execute(sql, [*params, limit]) as cur:
            return [tuple(r) for r in await cur.fetchall()]

    async def recovery_hours(self, workspace: str | None, error_code: str | None, model: str | None
                             ) -> dict[int, tuple[int, int]]:
        """Per hour of day: (successful recoveries, recoveries), for the optimal execution window."""
        where, params = "", []  # type: tuple[str, list[Any]]
        for column, value in (("workspace", workspace), ("error_code", error_code), ("model", model)):
            if value is not None:
                where += f" AND {column} = ?"
                params.append(value)
        async with self.db.execute(RECOVERY_HOURS.format(where=where), params) as cur:
            return {h: (ok or 0, n) for h, ok, n in await cur.fetchall()}

    async def trajectory(self, start_cycle: int, end_cycle: int, limit: int) -> list[dict[str, Any]]:
        """Evolution trajectory entries between two cycles (inclusive), newest cycle first."""
        entries = []
        async with self.db.execute(TRAJECTORY, (start_cycle, end_cycle, limit)) as cur:
            for row in await cur.fetchall():
                i, cycle, at, done, deferred, classes, cv, impl, test, acc, resolved, created, notes = row
                entries.append(EvolutionTrajectoryEntry.model_validate(
                    {"id": i, "cycle": cycle, "recorded_at": from_us(at), "evolutions_completed": done,
                     "evolutions_deferred": deferred, "issue_classes": json.loads(classes), "cv_avg": cv,
                     "implementation_loc": impl, "test_loc": test, "loc_accuracy": acc,
                     "research_candidates_resolved": resolved, "research_candidates_created": created,
                     "notes": notes},
                    strict=False,
                ).model_dump(mode="json"))
        return entries

    async def issue_classes(self, cycles: int) -> list[tuple[int, list[str]]]:
        """(cycle, issue classes) of the newest `cycles` trajectory entries."""
        async with self.db.execute(TRAJECTORY_CLASSES, (cycles,)) as cur:
            return [(c, json.loads(ic)) for c, ic in await cur.fetchall()]

    async def active_rate_limits(self, now_us: int) -> list[tuple[str, str, int]]:
        """(model, error code, latest expiry in us) of the rate limits still in force at `now_us`."""
        async with self.db.execute(ACTIVE_RATE_LIMITS, (now_us,)) as cur:
            return [(m, code, int(exp)) for m, code, exp in await cur.fetchall()]
