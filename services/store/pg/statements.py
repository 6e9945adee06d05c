"""PostgreSQL statements for the few store statements `conn.translate` cannot rewrite mechanically.

`OVERRIDES` maps a statement's SQLite text (the constant the projection passes) to its PostgreSQL text, which
`translate` then takes like any other (placeholders, upserts). Each is derived from the SQLite constant by
replacing one named fragment, so a change elsewhere in the statement reaches both backends; a fragment that
is no longer there fails at import, not at the first event.

`MUST_INSERT`: plain inserts whose unique-key conflict the projection catches (`sqlite3.IntegrityError`) to
refuse the event. On SQLite the failed statement leaves the transaction usable; on PostgreSQL it would abort
it, so these run as `ON CONFLICT DO NOTHING` and `PgCursor` raises the same `sqlite3.IntegrityError` when no
row was inserted.
"""

from __future__ import annotations

from pheromone.services.store import patterns

__all__ = ["MUST_INSERT", "OVERRIDES"]

EVOLUTION_INSERT = "INSERT INTO evolution_trajectory VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"

_SQLITE_TAG_UNION = """(
        SELECT json_group_array(value) FROM (
            SELECT DISTINCT value FROM json_each(patterns.context_tags)
            UNION SELECT value FROM json_each(excluded.context_tags) ORDER BY value
        )
    )"""
# json_group_array writes `["a","b"]` without spaces, as codec.dumps does; json_agg would add them. The values
# are ordered byte-wise, as SQLite's BINARY collation orders them.
_PG_TAG_UNION = """(
        SELECT COALESCE('[' || string_agg(to_json(tags.value)::text, ',' ORDER BY tags.value COLLATE "C") || ']',
                        '[]')
        FROM (
            SELECT value FROM json_array_elements_text(patterns.context_tags::json)
            UNION SELECT value FROM json_array_elements_text(excluded.context_tags::json)
        ) AS tags
    )"""


def _replace(sql: str, fragment: str, replacement: str) -> str:
    if fragment not in sql:
        raise RuntimeError(f"the PostgreSQL override no longer matches its SQLite statement: {sql.strip()[:60]}")
    return sql.replace(fragment, replacement)


OVERRIDES: dict[str, str] = {
    patterns.UPSERT_PATTERN: _replace(patterns.UPSERT_PATTERN, _SQLITE_TAG_UNION, _PG_TAG_UNION),
    # A parameter PostgreSQL sees only in `IS NULL` has no type it can infer (None is sent untyped).
    patterns.SET_FACTORS: _replace(patterns.SET_FACTORS, "CASE WHEN ?1 IS NULL", "CASE WHEN CAST(?1 AS TEXT) IS NULL"),
    EVOLUTION_INSERT: EVOLUTION_INSERT + " ON CONFLICT DO NOTHING",
}
MUST_INSERT: frozenset[str] = frozenset({EVOLUTION_INSERT})
