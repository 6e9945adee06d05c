"""The learning rules inside the store's projections: derived values, lifecycle, revisits, determinism."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from pheromone.contracts import (
    DriftMetrics,
    EntropyResponseRecord,
    ErrorRecoveryRecord,
    EscalationDecisionRecord,
    EscalationOutcomeRecorded,
    EvolutionTrajectoryEntry,
    ExecutionRecord,
    ExplorationBudgetRecord,
    PatternEntropyMetrics,
    QuarantineStatus,
    SuccessFactors,
)
from pheromone.services.learning.entropy import entropy_metrics
from pheromone.services.learning.lifecycle import ALLOWED_TRANSITIONS
from pheromone.services.learning.scores import days_between, effectiveness, priority, trust, variance
from pheromone.services.settings import LearningSettings
from pheromone.services.store.codec import us
from pheromone.services.store.db import Store
from pheromone.services.store.schema import PROJECTION_TABLES
from tests.learning.helpers import T0, applied, at, event, moved, observed, pattern_row, pid, rows

S = LearningSettings()


async def apply_all(
    db: Path, events: list, batch: int = 50, learning: LearningSettings | None = None
) -> list:
    rejected = []
    async with Store(db, learning=learning) as store:
        for start in range(0, len(events), batch):
            result = await store.apply(events[start : start + batch])
            rejected += [(start + r.index, r.reason) for r in result.rejected]
    return rejected


async def test_derived_values_are_the_pure_rules(tmp_path: Path) -> None:
    outcomes = [True, True, False, True, False, False, True, True, True, False, True, True]
    grounding = [0.9, None, 0.4, 0.8, 0.7, None, 0.6, 1.0, 0.5, 0.9, 0.8, 0.7]
    events = [event(observed("back off", tags=["api"]), 0), event(observed("back off", tags=["429"]), 1)]
    events += [
        event(applied("back off", ok, g), 2 + i * 600)
        for i, (ok, g) in enumerate(zip(outcomes, grounding, strict=True))
    ]
    db = tmp_path / "s.db"
    assert await apply_all(db, events) == []
    row = pattern_row(db, pid("back off"))
    s, f = sum(outcomes), len(outcomes) - sum(outcomes)
    # the last 5 by event time, newest first; decay runs from the last success to the last application
    recent = list(zip(outcomes, grounding, strict=True))[::-1][:5]
    days = days_between(us(at(2 + 11 * 600)), us(at(2 + 11 * 600)))
    eff = effectiveness(s, f, [o for o, _ in recent], [g for _, g in recent], days, S)
    assert row["led_to_success_count"] == s and row["led_to_failure_count"] == f
    assert row["occurrence_count"] == 2
    assert row["context_tags"] == '["429","api"]'  # merged, not overwritten
    assert row["effectiveness_score"] == pytest.approx(eff)
    assert row["variance"] == pytest.approx(variance(s, f))
    assert row["priority_score"] == pytest.approx(priority(eff, 2, variance(s, f), S))
    status = QuarantineStatus(row["quarantine_status"])
    assert row["trust_score"] == pytest.approx(trust(s, f, days, status, S))
    assert row["trust_calculation_us"] == us(at(2 + 11 * 600))  # event time, never the wall clock


async def test_decay_is_measured_from_the_last_confirmation(tmp_path: Path) -> None:
    events = [event(observed("p"), 0)]
    events += [event(applied("p", True), i) for i in range(1, 4)]
    events += [event(applied("p", False), 60 * 24 * 30)]  # a failure 30 days after the last success
    db = tmp_path / "s.db"
    await apply_all(db, events)
    row = pattern_row(db, pid("p"))
    expected = effectiveness(3, 1, [False, True, True, True], [None] * 4, 30.0 - 3 / 1440, S)
    assert row["effectiveness_score"] == pytest.approx(expected)
    assert row["last_confirmed_us"] == us(at(3))


async def test_applications_before_the_observation_count(tmp_path: Path) -> None:
    apps = [event(applied("late", i % 3 != 0, 0.8), i) for i in range(1, 9)]
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    await apply_all(first, [event(observed("late"), 0), *apps])
    await apply_all(second, [*apps, event(observed("late"), 0)])
    a, b = pattern_row(first, pid("late")), pattern_row(second, pid("late"))
    for key in (
        "led_to_success_count",
        "led_to_failure_count",
        "effectiveness_score",
        "variance",
        "priority_score",
        "last_confirmed_us",
        "last_applied_us",
        "success_factors",
    ):
        assert a[key] == pytest.approx(b[key]) if isinstance(a[key], float) else a[key] == b[key], key


def _workload(seed: int, n: int = 400) -> list:
    rng = random.Random(seed)
    names = [f"pattern {i}" for i in range(6)]
    rates = [0.95, 0.8, 0.6, 0.4, 0.2, 0.05]
    events = [event(observed(name, tags=[f"t{i % 3}", "shared"]), 0) for i, name in enumerate(names)]
    for k in range(n):
        i = rng.randrange(len(names))
        factors = SuccessFactors(
            error_categories=[rng.choice(["auth", "rate_limit"])],
            retry_iteration=rng.randint(0, 2),
            validation_types=["file"],
        )
        events.append(
            event(
                applied(names[i], rng.random() < rates[i], round(rng.uniform(0.3, 1), 2), factors=factors),
                1 + k + rng.random(),
                job=f"job-{k % 7}",
            )
        )
    return events


ORDER_FREE = (
    "led_to_success_count",
    "led_to_failure_count",
    "effectiveness_score",
    "variance",
    "priority_score",
    "last_confirmed_us",
    "last_applied_us",
    "success_factors",
    "occurrence_count",
)


async def test_derived_values_do_not_depend_on_arrival_order(tmp_path: Path) -> None:
    events = _workload(3)
    shuffled = events[:6] + random.Random(9).sample(events[6:], len(events) - 6)
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    await apply_all(a, events, batch=1)
    await apply_all(b, shuffled, batch=37)
    for name in (f"pattern {i}" for i in range(6)):
        ra, rb = pattern_row(a, pid(name)), pattern_row(b, pid(name))
        for key in ORDER_FREE:
            assert ra[key] == pytest.approx(rb[key]) if isinstance(ra[key], float) else ra[key] == rb[key], (
                name,
                key,
            )
    for table in ("pattern_counts", "success_factor_counts", "pattern_drift"):
        assert _approx_rows(rows(a, f"SELECT * FROM {table} ORDER BY 1, 2, 3")) == _approx_rows(
            rows(b, f"SELECT * FROM {table} ORDER BY 1, 2, 3")
        ), table


def _approx_rows(found: list[tuple]) -> list[tuple]:
    return [tuple(round(v, 9) if isinstance(v, float) else v for v in r) for r in found]


def _reach(status: QuarantineStatus) -> list:
    """Events that bring pattern `p` to `status` through legal manual transitions."""
    events = [event(observed("p"), 0)]
    if status != QuarantineStatus.PENDING:
        events.append(event(moved("p", status.value), 1))
    return events


@pytest.mark.parametrize("start", list(QuarantineStatus), ids=lambda s: s.value)
@pytest.mark.parametrize("to", list(QuarantineStatus), ids=lambda s: s.value)
async def test_every_transition_through_the_store(
    tmp_path: Path, start: QuarantineStatus, to: QuarantineStatus
) -> None:
    db = tmp_path / "s.db"
    assert await apply_all(db, _reach(start)) == []
    rejected = await apply_all(db, [event(moved("p", to.value, reason="because"), 5)])
    transitions = rows(
        db, "SELECT from_status, to_status, reason, actor FROM pattern_transitions ORDER BY seq"
    )
    status = pattern_row(db, pid("p"))["quarantine_status"]
    if to in ALLOWED_TRANSITIONS[start]:
        assert rejected == []
        assert transitions[-1] == (start.value, to.value, "because", "tester")
        assert status == to.value
    else:
        assert len(rejected) == 1 and f"illegal transition {start.value} -> {to.value}" in rejected[0][1]
        assert status == start.value
        assert len(transitions) == (0 if start == QuarantineStatus.PENDING else 1)
        assert rows(db, "SELECT COUNT(*) FROM ledger WHERE kind = 'pattern_transition'")[0][0] == len(
            transitions
        )


async def test_a_transition_of_an_unknown_pattern_is_refused(tmp_path: Path) -> None:
    rejected = await apply_all(tmp_path / "s.db", [event(moved("ghost", "retired"), 0)])
    assert len(rejected) == 1 and "not in the store" in rejected[0][1]


async def test_manual_transitions_set_their_timestamps_and_trust(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    await apply_all(db, [event(observed("p"), 0), event(moved("p", "quarantined", "looks wrong"), 5)])
    row = pattern_row(db, pid("p"))
    assert row["quarantined_at_us"] == us(at(5)) and row["quarantine_reason"] == "looks wrong"
    assert row["trust_score"] == pytest.approx(0.3)  # neutral minus the quarantine penalty
    await apply_all(
        db, [event(moved("p", "validated", "reviewed"), 6), event(moved("p", "retired", "obsolete"), 7)]
    )
    row = pattern_row(db, pid("p"))
    assert row["validated_at_us"] == us(at(6)) and row["quarantine_reason"] is None
    assert row["active"] == 0 and row["quarantine_status"] == "retired"


async def test_automatic_transitions_are_derived_records(tmp_path: Path) -> None:
    """Validated on evidence, quarantined on evidence, and out on probation on the evidence gathered since."""
    db = tmp_path / "s.db"
    events = [event(observed("p"), 0)] + [event(applied("p", True, 1.0), i) for i in range(1, 7)]
    events += [event(applied("p", False, 1.0), i) for i in range(7, 27)]
    events += [event(applied("p", True, 1.0), i) for i in range(27, 40)]
    await apply_all(db, events)
    found = rows(
        db,
        "SELECT event_id, from_status, to_status, actor, reason, at_us FROM pattern_transitions ORDER BY seq",
    )
    assert [(f, t, a) for _, f, t, a, _, _ in found] == [
        ("pending", "validated", "rule"),
        ("validated", "quarantined", "rule"),
        ("quarantined", "pending", "rule"),
    ]
    assert found[0][0] == f"{events[6][0].event_id}/{pid('p')}"  # the sixth application: enough evidence
    assert found[0][5] == us(at(6))
    # 6 successes, then failures until the upper bound of 6/(6 + k) drops below 0.45: the 14th failure
    assert found[1][0] == f"{events[20][0].event_id}/{pid('p')}" and "6/20 successes" in found[1][4]
    # the evidence restarts at the quarantine: 6 failures after it, then 12 successes earn probation
    assert found[2][4].startswith("probation since quarantine: 12/18 successes"), found[2][4]
    row = pattern_row(db, pid("p"))
    assert (row["evidence_base_apps"], row["evidence_base_successes"]) == (38, 18)
    # nothing new in the ledger: transitions are derived from applications
    assert rows(db, "SELECT COUNT(*) FROM ledger WHERE kind = 'pattern_transition'")[0][0] == 0


GRACE = LearningSettings(lifecycle_min_evidence=3)
"""Evidence from 3 applications, so that the revisit grace (5) is what holds a re-quarantine back."""


async def test_entropy_response_revisit_opens_a_grace_period(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    events = [event(observed("p"), 0)] + [event(applied("p", False), i) for i in range(1, 4)]
    await apply_all(db, events, learning=GRACE)
    assert pattern_row(db, pid("p"))["quarantine_status"] == "quarantined"
    response = EntropyResponseRecord(
        job_hash="entropy",
        recorded_at=at(10),
        entropy_at_trigger=0.1,
        threshold_used=0.3,
        actions_taken=["quarantine_revisit"],
        quarantine_revisits=2,
        patterns_revisited=[pid("p"), pid("unknown")],
    )
    assert await apply_all(db, [event(response, 10)], learning=GRACE) == []
    last = rows(
        db, "SELECT from_status, to_status, actor FROM pattern_transitions ORDER BY seq DESC LIMIT 1"
    )[0]
    assert last == ("quarantined", "pending", "entropy_response")
    assert pattern_row(db, pid("p"))["grace_until_apps"] == 3 + GRACE.revisit_grace_applications
    # failures inside the grace period do not re-quarantine it ...
    await apply_all(
        db, [event(applied("p", False), 11 + i) for i in range(GRACE.revisit_grace_applications - 1)], learning=GRACE
    )
    assert pattern_row(db, pid("p"))["quarantine_status"] == "pending"
    # ... the application that ends the grace period does
    await apply_all(db, [event(applied("p", False), 30)], learning=GRACE)
    assert pattern_row(db, pid("p"))["quarantine_status"] == "quarantined"
    # a response naming a pattern that is not quarantined changes nothing and is still recorded
    again = response.model_copy(update={"id": "resp-2"})
    await apply_all(db, [event(moved("p", "retired"), 40), event(again, 41)], learning=GRACE)
    assert pattern_row(db, pid("p"))["quarantine_status"] == "retired"
    assert rows(db, "SELECT COUNT(*) FROM entropy_responses")[0][0] == 2


async def test_a_manual_revisit_also_gets_the_grace(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    events = [event(observed("p"), 0)] + [event(applied("p", False), i) for i in range(1, 4)]
    events.append(event(moved("p", "pending", "second chance"), 5))
    events += [event(applied("p", False), 6 + i) for i in range(3)]  # enough evidence, but inside the grace
    await apply_all(db, events, learning=GRACE)
    assert pattern_row(db, pid("p"))["quarantine_status"] == "pending"


async def test_a_few_unlucky_draws_do_not_quarantine_a_pattern(tmp_path: Path) -> None:
    """The reference quarantined at 1 success in 3; the evidence rule waits until the bound says it is bad."""
    db = tmp_path / "s.db"
    outcomes = [False, True, False, False, True, True, False, True]  # 4 of 8
    await apply_all(db, [event(observed("p"), 0)] + [event(applied("p", ok), i + 1) for i, ok in enumerate(outcomes)])
    assert pattern_row(db, pid("p"))["quarantine_status"] == "pending"
    assert rows(db, "SELECT COUNT(*) FROM pattern_transitions") == [(0,)]


async def test_entropy_aggregate_equals_a_full_recount(tmp_path: Path) -> None:
    from pheromone.services.query.learning import EntropyArgs, entropy
    from pheromone.services.store.reader import Reader

    db = tmp_path / "s.db"
    events = [*_workload(5, n=300), event(observed("never applied"), 0)]
    await apply_all(db, events)
    counts = dict(rows(db, "SELECT pattern_id, applications FROM pattern_counts"))
    expected = entropy_metrics(counts, calculated_at=T0, alert_threshold=S.entropy_alert_threshold)
    async with Reader(db) as reader:
        current = (await entropy(reader, EntropyArgs(), S))["current"]
    assert current["unique_pattern_count"] == expected.unique_pattern_count == 7
    assert current["effective_pattern_count"] == expected.effective_pattern_count == 6
    assert current["total_applications"] == expected.total_applications == 300
    for key in ("shannon_entropy", "max_possible_entropy", "diversity_index", "dominant_pattern_share"):
        assert current[key] == pytest.approx(getattr(expected, key), abs=1e-9), key


async def test_success_factors_are_aggregated_per_pattern(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    f1 = SuccessFactors(error_categories=["auth"], validation_types=["file"], time_of_day_bucket="evening")
    f2 = SuccessFactors(error_categories=["auth", "rate_limit"], retry_iteration=1)
    await apply_all(
        db,
        [
            event(observed("p"), 0),
            event(applied("p", True, 0.8, factors=f1), 1),
            event(applied("p", False, 0.4, factors=f2), 2),
            event(applied("p", True, 0.6, factors=f2), 3),
        ],
    )
    got = {
        (f, v): (n, ok)
        for f, v, n, ok in rows(
            db,
            "SELECT factor, value, applications, successes FROM success_factor_counts WHERE pattern_id = ?",
            pid("p"),
        )
    }
    assert got[("error_category", "auth")] == (3, 2)
    assert got[("error_category", "rate_limit")] == (2, 1)
    assert got[("time_of_day", "evening")] == (1, 1)
    assert got[("time_of_day", "morning")] == (2, 1)  # 08:0x UTC from the event time
    assert got[("retry_iteration", "1")] == (2, 1)
    summary = pattern_row(db, pid("p"))["success_factors"]
    assert '"grounding_confidence":0.7' in summary  # mean over the successful applications: (0.8 + 0.6) / 2


async def test_executions_get_the_computed_confidence(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    record = ExecutionRecord(
        workspace_hash="w",
        job_hash="j",
        sheet_num=1,
        started_at=T0,
        completed_at=T0,
        duration_seconds=1,
        status="completed",
        retry_count=2,
        success_without_retry=False,
        validation_pass_rate=0.9,
        confidence_score=0.5,
        model="m",
    )
    await apply_all(db, [event(record, 0)])
    assert rows(db, "SELECT confidence_score, computed_confidence FROM executions") == [
        (0.5, pytest.approx(0.7))
    ]


async def test_a_duplicate_evolution_cycle_is_a_clear_error(tmp_path: Path) -> None:
    entry = dict(
        cycle=7,
        recorded_at=T0,
        evolutions_completed=1,
        evolutions_deferred=0,
        issue_classes=["x"],
        cv_avg=0.1,
        implementation_loc=1,
        test_loc=1,
        loc_accuracy=1.0,
    )
    rejected = await apply_all(
        tmp_path / "s.db",
        [event(EvolutionTrajectoryEntry(**entry), 0), event(EvolutionTrajectoryEntry(**entry), 1)],
    )
    assert rejected == [
        (1, f"evolution cycle 7 (or entry id {rejected[0][1].split(chr(39))[1]!r}) is already recorded")
    ]


def full_workload() -> list:
    """Every rule at least once: scores, both automatic moves, manual moves (one illegal), a revisit, grace,
    success factors, drift, executions, recoveries, escalations and outcomes, trajectory (one duplicate),
    budget and entropy records."""
    events = _workload(11, n=500)
    events += [event(applied("pattern 5", False), 900 + i) for i in range(4)]
    events.append(event(moved("pattern 0", "retired", "obsolete"), 1000))
    events.append(event(moved("pattern 0", "pending", "illegal: retired is terminal"), 1001))
    events.append(
        event(
            EntropyResponseRecord(
                job_hash="entropy",
                recorded_at=at(1002),
                entropy_at_trigger=0.2,
                threshold_used=0.3,
                actions_taken=["budget_boost", "quarantine_revisit"],
                budget_boosted=True,
                quarantine_revisits=1,
                patterns_revisited=[pid("pattern 5")],
            ),
            1002,
        )
    )
    events += [event(applied("pattern 5", False), 1003 + i) for i in range(8)]
    for i in range(30):
        events.append(
            event(
                ExecutionRecord(
                    workspace_hash=f"w{i % 2}",
                    job_hash=f"j{i % 3}",
                    sheet_num=i,
                    started_at=at(i),
                    completed_at=at(i + 1),
                    duration_seconds=60,
                    status="completed",
                    retry_count=i % 3,
                    success_without_retry=i % 3 == 0,
                    validation_pass_rate=(i % 10) / 10,
                    confidence_score=0.5,
                    model=f"m{i % 2}",
                ),
                1100 + i,
            )
        )
        events.append(
            event(
                ErrorRecoveryRecord(
                    error_code="429",
                    suggested_wait=10,
                    actual_wait=5 + i,
                    recovery_success=i % 4 != 0,
                    recorded_at=at(i),
                    model=f"m{i % 2}",
                    time_of_day=i % 24,
                ),
                1100 + i,
            )
        )
    escalation = EscalationDecisionRecord(
        job_hash="j",
        sheet_num=1,
        confidence=0.4,
        action="retry",
        guidance=None,
        validation_pass_rate=0.5,
        retry_count=1,
        recorded_at=T0,
    )
    events += [
        event(escalation, 1200),
        event(EscalationOutcomeRecorded(escalation_id=escalation.id, outcome="success"), 1201),
    ]
    for cycle in (1, 2, 2):
        events.append(
            event(
                EvolutionTrajectoryEntry(
                    cycle=cycle,
                    recorded_at=T0,
                    evolutions_completed=1,
                    evolutions_deferred=1,
                    issue_classes=["a"],
                    cv_avg=0.5,
                    implementation_loc=10,
                    test_loc=5,
                    loc_accuracy=1.0,
                ),
                1300 + cycle,
            )
        )
    events.append(
        event(
            ExplorationBudgetRecord(
                job_hash="entropy",
                recorded_at=at(1400),
                budget_value=0.25,
                entropy_at_time=0.2,
                adjustment_type="boost",
                adjustment_reason="low",
            ),
            1400,
        )
    )
    events.append(
        event(
            DriftMetrics(
                pattern_id=pid("pattern 3"),
                pattern_name="pattern 3",
                window_size=5,
                effectiveness_before=0.8,
                effectiveness_after=0.4,
                grounding_confidence_avg=0.9,
                drift_magnitude=0.4,
                drift_direction="negative",
                applications_analyzed=10,
                threshold_exceeded=True,
            ),
            1402,
        )
    )
    events.append(
        event(
            PatternEntropyMetrics(
                calculated_at=at(1401),
                shannon_entropy=1.0,
                max_possible_entropy=2.0,
                diversity_index=0.5,
                unique_pattern_count=4,
                effective_pattern_count=4,
                total_applications=10,
                dominant_pattern_share=0.5,
            ),
            1401,
        )
    )
    return events


async def test_rebuild_reproduces_every_derived_value(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    rejected = await apply_all(db, full_workload(), batch=64)
    assert [why.split(" ")[0] for _, why in rejected] == ["illegal", "evolution"]
    actors = {a for (a,) in rows(db, "SELECT DISTINCT actor FROM pattern_transitions")}
    assert actors == {"rule", "tester", "entropy_response"}
    # The learning model's tables; rate limits and discoveries are the coordination tests' (tests/coordination),
    # the learning sessions' tables are tests/sessions' and tests/services/test_rebuild.py's.
    sessions = ("session_state", "session_transitions", "session_edits", "edit_transitions", "guidance", "playbooks")
    for table in PROJECTION_TABLES:
        if table not in ("rate_limit_events", "pattern_discoveries", *sessions):
            assert rows(db, f"SELECT COUNT(*) FROM {table}")[0][0] > 0, f"workload leaves {table} empty"
    async with Store(db) as store:
        before = await store.checksum()
        replayed = await store.rebuild()
        assert await store.checksum() == before
    assert replayed == rows(db, "SELECT COUNT(*) FROM ledger")[0][0]


async def test_the_store_records_its_settings_and_rebuild_uses_them(tmp_path: Path) -> None:
    from pheromone.services.store.reader import Reader

    custom = LearningSettings(min_applications=2, validate_threshold=0.9, revisit_grace_applications=2)
    db = tmp_path / "s.db"
    await apply_all(db, full_workload(), learning=custom)
    async with Reader(db) as reader:
        assert await reader.settings() == custom
    async with Store(db) as store:  # no settings given: the recorded ones
        before = await store.checksum()
        await store.rebuild()
        assert await store.checksum() == before


async def test_a_version_2_store_upgrades(tmp_path: Path) -> None:
    import sqlite3

    from pheromone.services.store.schema import MIGRATIONS, _statements

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    for number, script in enumerate(MIGRATIONS[:2], start=1):
        for statement in _statements(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version={number}")
    conn.execute("INSERT INTO success_factor_counts VALUES ('p', 'grounding', '', 2, 2, 1.5, 2)")
    conn.close()
    async with Store(db):
        pass
    assert rows(db, "SELECT grounding_sum_micro FROM success_factor_counts") == [(1_500_000,)]
    assert rows(db, "PRAGMA user_version") == [(len(MIGRATIONS),)]


async def test_the_content_hash_finds_one_pattern_under_two_names(tmp_path: Path) -> None:
    from pheromone.services.query.learning import PatternArgs, pattern
    from pheromone.services.store.reader import Reader

    db = tmp_path / "s.db"
    text = "Wait for the Retry-After header, then retry once."
    await apply_all(db, [
        event(observed("honour retry-after", description=text), 0),
        event(observed("Respect  Retry-After", description=text.upper()), 1),  # same content, other name
        event(observed("honour retry-after", ptype="tool_pattern", description=text), 2),  # other type
        event(observed("no description"), 3),
    ])
    async with Reader(db) as reader:
        shown = await pattern(reader, PatternArgs(id=pid("honour retry-after")), S)
    assert [x["pattern_name"] for x in shown["same_content"]] == ["Respect  Retry-After"]
