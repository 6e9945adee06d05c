"""A batch's pattern state: held in memory during the batch transaction, written back once per key.

Within one batch the same few patterns and the one entropy row are rewritten over and over, so rather than a
statement per step per event (`patterns.apply`):

- success-factor counts are integer sums (grounding in exact millionths): added up here per
  (pattern, factor, value) and upserted once; a sum of integers does not depend on how it is grouped;
- `entropy_state` is read once and updated here with exactly the statement's operations, in ledger order:
  `sum_c_log2_c` is a float, so its additions are never regrouped, only moved from SQL to Python (both are
  IEEE doubles); it is written back as absolute values;
- a pattern's path-dependent state (`pattern_state.Live`: counts, last confirmed/applied, the last-N window by
  (applied_us desc, event_id desc), status and grace) is loaded once and updated per application as the SQL
  would; its `pattern_counts` row and pattern counters and scores are written back once;
- application rows are inserted with `executemany`, before anything reads `pattern_applications`;
- records that an event replaces whole and no projection reads (executions, error recoveries) are held by id,
  the last one per id, and written with one `executemany` per family (`add_record`): the table ends as
  writing them one by one would leave it, with one statement per batch instead of one per event.

Transitions are still written as they happen (they are rare and carry their own ids and times). Whatever reads
or changes a pattern row inside the batch (a manual transition, a revisit, the first observation of a pattern
applied before) first calls `flush_pattern`, which writes that pattern back and forgets it; `flush` writes
everything (before `settle`). An observation of a pattern whose row exists changes only its occurrence count
among what the batch holds, so `patterns.observe` updates the batch's copy instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pheromone.services.store.pattern_state import Live, scores
from pheromone.services.store.sql import SqlConn

INSERT_APPLICATION = "INSERT INTO pattern_applications VALUES (?,?,?,?,?,?,?,?,?,?,?)"
WRITE_COUNTS = """
INSERT INTO pattern_counts VALUES (?, ?, ?, ?, ?)
ON CONFLICT(pattern_id) DO UPDATE SET
    applications = excluded.applications, successes = excluded.successes,
    last_confirmed_us = excluded.last_confirmed_us, last_applied_us = excluded.last_applied_us
"""
WRITE_PATTERN = """
UPDATE patterns
SET led_to_success_count = :ok, led_to_failure_count = :bad, last_confirmed_us = :confirmed,
    last_applied_us = :applied, effectiveness_score = :eff, variance = :var, priority_score = :pri,
    trust_score = :trust, trust_calculation_us = :at
WHERE id = :id
"""
ADD_FACTORS = """
INSERT INTO success_factor_counts VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT(pattern_id, factor, value) DO UPDATE SET
    applications = applications + excluded.applications, successes = successes + excluded.successes,
    grounding_sum_micro = grounding_sum_micro + excluded.grounding_sum_micro,
    grounding_n = grounding_n + excluded.grounding_n
"""
SELECT_ENTROPY = (
    "SELECT total, sum_c_log2_c, unique_patterns, effective_patterns FROM entropy_state WHERE id = 1"
)
WRITE_ENTROPY = """
INSERT INTO entropy_state VALUES (1, ?, ?, ?, ?)
ON CONFLICT(id) DO UPDATE SET
    total = excluded.total, sum_c_log2_c = excluded.sum_c_log2_c,
    unique_patterns = excluded.unique_patterns, effective_patterns = excluded.effective_patterns
"""
APPLICATION_CHUNK = 5_000
"""Buffered application rows are written at this many too, so a rebuild (one batch) stays small in memory."""

@dataclass(slots=True)
class PatternBatch:
    """The pattern writes a batch has not made yet, and the patterns `settle` must finish (`touched`)."""

    touched: set[str] = field(default_factory=set)
    live: dict[str, Live] = field(default_factory=dict)
    applications: list[tuple[Any, ...]] = field(default_factory=list)
    factors: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    entropy: list[Any] | None = None  # [total, sum_c_log2_c, unique, effective] once read
    records: dict[str, dict[str, tuple[Any, ...]]] = field(default_factory=dict)
    """Per upsert statement, the rows it will write, by record id (`add_record`)."""

    def clear(self) -> None:
        self.touched.clear()
        self.live.clear()
        self.applications.clear()
        self.records.clear()
        self.factors.clear()
        self.entropy = None

    def add_application(self, conn: SqlConn, row: tuple[Any, ...]) -> None:
        self.applications.append(row)
        if len(self.applications) >= APPLICATION_CHUNK:
            self.write_applications(conn)

    def add_record(self, conn: SqlConn, upsert: str, record_id: str, row: tuple[Any, ...]) -> None:
        """`upsert` of `row`, deferred to `flush`: a later row for the same id in the batch replaces it."""
        rows = self.records.setdefault(upsert, {})
        rows.pop(record_id, None)
        rows[record_id] = row
        if len(rows) >= APPLICATION_CHUNK:
            conn.executemany(upsert, list(rows.values()))
            rows.clear()

    def write_records(self, conn: SqlConn) -> None:
        """Write the records `add_record` holds back."""
        for upsert, rows in self.records.items():
            if rows:
                conn.executemany(upsert, list(rows.values()))
        self.records.clear()

    def write_applications(self, conn: SqlConn) -> None:
        """Insert the buffered application rows: call before anything reads `pattern_applications`."""
        if self.applications:
            conn.executemany(INSERT_APPLICATION, self.applications)
            self.applications.clear()

    def add_factors(self, pattern: str, rows: list[tuple[str, str]], ok: int) -> None:
        """`add_factor((pattern, factor, value), ok, 0, 0)` for each row, in one call."""
        factors = self.factors
        for factor, value in rows:
            key = (pattern, factor, value)
            sums = factors.get(key)
            if sums is None:
                factors[key] = [1, ok, 0, 0]
            else:
                sums[0] += 1
                sums[1] += ok

    def add_factor(self, key: tuple[str, str, str], ok: int, grounding_micro: int, grounding_n: int) -> None:
        sums = self.factors.get(key)
        if sums is None:
            self.factors[key] = [1, ok, grounding_micro, grounding_n]
        else:
            sums[0] += 1
            sums[1] += ok
            sums[2] += grounding_micro
            sums[3] += grounding_n

    def add_entropy(
        self, conn: SqlConn, *, total: int, delta: float, unique: int, effective: int
    ) -> None:
        """The running aggregate, updated as `total = total + :total, ...` did: same operations and order."""
        e = self.entropy
        if e is None:
            row = conn.execute(SELECT_ENTROPY).fetchone()
            e = self.entropy = list(row) if row else [0, 0.0, 0, 0]
        e[0] += total
        e[1] += delta
        e[2] += unique
        e[3] += effective

    def flush_pattern(self, conn: SqlConn, pid: str) -> None:
        """Write one pattern's pending state and forget it (the caller is about to read or change its row)."""
        live = self.live.pop(pid, None)
        if live is not None:
            _write_live(conn, live)

    def flush(self, conn: SqlConn) -> None:
        """Write everything the batch holds; the batch can go on afterwards (it reloads what it needs)."""
        self.write_records(conn)
        self.write_applications(conn)
        for live in self.live.values():
            _write_live(conn, live)
        self.live.clear()
        if self.factors:
            conn.executemany(ADD_FACTORS, [(*key, *sums) for key, sums in self.factors.items()])
            self.factors.clear()
        if self.entropy is not None:
            conn.execute(WRITE_ENTROPY, self.entropy)
            self.entropy = None


def _write_live(conn: SqlConn, live: Live) -> None:
    conn.execute(
        WRITE_COUNTS,
        (live.id, live.applications, live.successes, live.last_confirmed_us, live.last_applied_us),
    )
    if live.state is not None and live.effectiveness is not None:
        conn.execute(
            WRITE_PATTERN,
            {
                "ok": live.successes,
                "bad": live.applications - live.successes,
                "confirmed": live.last_confirmed_us,
                "applied": live.last_applied_us,
                **scores(live.state, live.effectiveness, live.settings),
                "id": live.id,
            },
        )

