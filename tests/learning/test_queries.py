"""The read side against a real store: filters, both tag-query plans, similarity order, unknown ids."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from pheromone.contracts import EscalationDecisionRecord
from pheromone.services.learning.escalations import rank_key, within
from pheromone.services.query import learning as q
from pheromone.services.settings import LearningSettings
from pheromone.services.store import learning_reads
from pheromone.services.store.codec import us
from pheromone.services.store.db import Store
from pheromone.services.store.reader import Reader
from pheromone.services.store.reads import UnknownId
from tests.learning.helpers import T0, applied, event, observed, pid

S = LearningSettings()
TAGS = [f"tag{i}" for i in range(12)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 patterns with random tags, types, instruments and application histories; some retired."""
    import asyncio

    path = tmp_path_factory.mktemp("queries") / "store.db"
    rng = random.Random(4)
    events = []
    for i in range(300):
        tags = rng.sample(TAGS[: 4 + i % 8], rng.randint(1, 3))
        events.append(
            event(observed(f"p{i}", ptype=f"type{i % 3}", tags=tags, instrument_name=f"inst{i % 2}"), 0)
        )
        rate = rng.random()
        events += [
            event(applied(f"p{i}", rng.random() < rate, ptype=f"type{i % 3}"), 1 + k) for k in range(i % 9)
        ]
    for i in range(0, 300, 17):
        events.append(event(q_moved(f"p{i}", f"type{i % 3}"), 100))
    decisions = [
        EscalationDecisionRecord(
            job_hash="j",
            sheet_num=k,
            confidence=round(rng.random(), 3),
            action="retry",
            guidance=None,
            validation_pass_rate=round(rng.random(), 3),
            retry_count=0,
            recorded_at=T0,
            outcome_after_action=rng.choice(["success", "failed", "skipped", "aborted", None]),
        )
        for k in range(400)
    ]
    events += [event(d, 200) for d in decisions]

    async def build() -> None:
        async with Store(path) as s:
            assert (await s.apply(events)).rejected == []

    asyncio.run(build())
    return path


def q_moved(name: str, ptype: str):  # type: ignore[no-untyped-def]
    from pheromone.contracts import PatternTransitioned, pattern_id

    return PatternTransitioned(pattern_id=pattern_id(ptype, name), to_status="retired", reason="r", actor="t")


@pytest.fixture
async def reader(store: Path) -> AsyncIterator[Reader]:
    async with Reader(store) as r:
        yield r


async def reference(db: aiosqlite.Connection, a: q.PatternsArgs) -> list[str]:
    """The same filters, computed in Python over every pattern."""
    async with db.execute(
        "SELECT id, pattern_type, quarantine_status, trust_score, priority_score, instrument_name "
        "FROM patterns"
    ) as cur:
        rows = await cur.fetchall()
    async with db.execute("SELECT pattern_id, tag FROM pattern_tags") as cur:
        tags: dict[str, set[str]] = {}
        for p, t in await cur.fetchall():
            tags.setdefault(p, set()).add(t)
    wanted = set(a.tags)
    keep = []
    for pid_, ptype, status, trust, prio, inst in rows:
        statuses = {x.value for x in a.status} if a.status else {"pending", "validated", "quarantined"}
        if status not in statuses or trust < a.min_trust or prio < a.min_priority:
            continue
        if (a.pattern_type and ptype != a.pattern_type) or (a.instrument and inst != a.instrument):
            continue
        have = tags.get(pid_, set())
        if wanted and not (wanted <= have if a.match_all_tags else wanted & have):
            continue
        keep.append((-prio, pid_))
    return [p for _, p in sorted(keep)[: a.limit]]


CASES = [
    q.PatternsArgs(tags=["tag0"], limit=10),
    q.PatternsArgs(tags=["tag3", "tag11"], limit=25),
    q.PatternsArgs(tags=["tag1", "tag2"], match_all_tags=True, limit=50),
    q.PatternsArgs(tags=["tag0", "tag1", "tag2"], match_all_tags=True, min_trust=0.4, limit=50),
    q.PatternsArgs(tags=["tag5"], pattern_type="type1", instrument="inst0", limit=50),
    q.PatternsArgs(tags=["tag0", "nonexistent"], match_all_tags=True),
    q.PatternsArgs(tags=["nonexistent"]),
    q.PatternsArgs(status=["retired"], limit=100),
    q.PatternsArgs(status=["validated", "quarantined"], min_priority=0.2, limit=100),
    q.PatternsArgs(min_trust=0.55, limit=100),
    q.PatternsArgs(limit=300),
]


@pytest.mark.parametrize("plan", ["scan", "matches"])
@pytest.mark.parametrize("args", CASES, ids=lambda a: a.model_dump_json(exclude_defaults=True))
async def test_both_tag_plans_match_a_brute_force_filter(
    reader: Reader, args: q.PatternsArgs, plan: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(learning_reads, "SCAN_COST_US" if plan == "scan" else "MATCH_COST_US", 0.0)
    got = [p["id"] for p in await q.patterns(reader, args, S)]
    assert got == await reference(reader.db, args)


async def test_tag_counts_match_the_tags(reader: Reader) -> None:
    async with reader.db.execute("SELECT tag, COUNT(*) FROM pattern_tags GROUP BY tag ORDER BY tag") as cur:
        expected = await cur.fetchall()
    async with reader.db.execute("SELECT tag, patterns FROM tag_counts ORDER BY tag") as cur:
        assert await cur.fetchall() == expected


@pytest.mark.parametrize("seed", range(5))
async def test_similar_escalations_follow_the_rule(reader: Reader, seed: int) -> None:
    rng = random.Random(seed)
    c, v = rng.random(), rng.random()
    got = await q.escalations_similar(reader, q.EscalationArgs(confidence=c, validation_pass_rate=v, limit=8), S)
    async with reader.db.execute(
        "SELECT id, confidence, validation_pass_rate, outcome_after_action, recorded_us "
        "FROM escalation_decisions"
    ) as cur:
        every = await cur.fetchall()
    tol = (S.escalation_confidence_tolerance, S.escalation_pass_rate_tolerance)
    candidates = [r for r in every if within(c, v, r[1], r[2], *tol)]
    expected = sorted(candidates, key=lambda r: (*rank_key(c, v, r[1], r[2], r[3], r[4]), r[0]))[:8]
    assert [d["id"] for d in got["similar"]] == [r[0] for r in expected]
    if expected:
        assert got["suggestion"]["based_on"] == expected[0][0]


async def test_unknown_and_ambiguous_ids(reader: Reader) -> None:
    with pytest.raises(UnknownId, match="no pattern"):
        await q.pattern(reader, q.PatternArgs(id="p_0000"), S)
    with pytest.raises(UnknownId, match="ambiguous"):
        await q.pattern(reader, q.PatternArgs(id="p_a"), S)
    shown = await q.pattern(reader, q.PatternArgs(id=pid("p5", "type2")[:12]), S)
    assert shown["pattern"]["pattern_name"] == "p5"


async def test_status_of_a_pattern(reader: Reader) -> None:
    full, status = await q.pattern_status(reader, pid("p0", "type0")[:10])
    assert full == pid("p0", "type0") and status.value == "retired"


def test_plan_choice() -> None:
    # 50,000 patterns, limit 10: a tag on 20,847 of them is found at once by walking the priority order; a tag
    # on 176 is cheaper to read from the tag index and sort
    assert learning_reads.scan_is_cheaper(20_847, 20_847, 50_000, 10)
    assert not learning_reads.scan_is_cheaper(176, 176, 50_000, 10)
    # all-of two tags (2,851 and 10,807): ~616 expected matches, the rarest tag drives 2,851 candidates
    assert learning_reads.scan_is_cheaper(2_851, 50_000 * 2_851 / 50_000 * 10_807 / 50_000, 50_000, 10)


async def test_similar_escalations_on_dense_data_match_brute_force(tmp_path: Path) -> None:
    rng = random.Random(8)
    decisions = [
        EscalationDecisionRecord(
            job_hash="j",
            sheet_num=k,
            confidence=round(rng.gauss(0.5, 0.08) % 1, 4),
            action="skip",
            guidance=None,
            validation_pass_rate=round(rng.gauss(0.5, 0.08) % 1, 4),
            retry_count=0,
            recorded_at=T0,
            outcome_after_action=rng.choice(["success", "failed", "skipped", None]),
        )
        for k in range(3000)
    ]
    path = tmp_path / "dense.db"
    async with Store(path) as s:
        assert (await s.apply([event(d, 0) for d in decisions])).rejected == []
    async with Reader(path) as reader:
        for _ in range(25):
            c, v, limit = rng.gauss(0.5, 0.1), rng.gauss(0.5, 0.1), rng.randint(1, 12)
            c, v = min(max(c, 0), 1), min(max(v, 0), 1)
            got = await q.escalations_similar(
                reader, q.EscalationArgs(confidence=c, validation_pass_rate=v, limit=limit), S
            )
            tol = (S.escalation_confidence_tolerance, S.escalation_pass_rate_tolerance)
            every = [
                (d.id, d.confidence, d.validation_pass_rate, d.outcome_after_action, us(T0))
                for d in decisions
            ]
            expected = sorted(
                (r for r in every if within(c, v, r[1], r[2], *tol)),
                key=lambda r: (*rank_key(c, v, r[1], r[2], r[3], r[4]), r[0]),
            )[:limit]
            assert [d["id"] for d in got["similar"]] == [r[0] for r in expected]
