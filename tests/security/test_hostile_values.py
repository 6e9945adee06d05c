"""Hostile-looking values travel emit -> store -> query as data: no SQL runs, no path is made, no key escapes.

Names a job controls (pattern names, tags, models, error codes, job and workspace ids within the Identifier
alphabet) hold SQL, path traversal and Redis key syntax. They must come back byte for byte, the tables must
still be there, Redis keys derived from them must be hashed (`contracts.streams.key_part`), and no file may
appear that is named after them.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from pheromone import Pheromone
from pheromone.contracts import EventQuery, PatternObserved, pattern_id
from pheromone.contracts.streams import Keys, key_part
from pheromone.services.runtime import Runtime
from tests.services.helpers import count, ledger_count
from tests.support import eventually, settings

SQL = "x'; DROP TABLE ledger;--"
TRAVERSAL = "../../etc/passwd"
KEYISH = "k:*{}\n[a]?"


async def test_hostile_names_are_stored_and_queried_as_data(
    tmp_path: Path, prefix: str, redis_url: str, redis: object
) -> None:
    s = settings(tmp_path, prefix)
    runtime = Runtime(s, redis_url, ("store", "query", "coordinator"))
    await runtime.start()
    try:
        async with Pheromone(redis_url, workspace=TRAVERSAL, job=f"{TRAVERSAL}/job", prefix=prefix,
                             data_dir=tmp_path, close_timeout=1.0) as ph:
            for name in (SQL, TRAVERSAL, KEYISH):
                record = PatternObserved(pattern_type=SQL, pattern_name=name, description=SQL,
                                         context_tags=[SQL, KEYISH, TRAVERSAL])
                ph.emit(record, correlation_id=f"{TRAVERSAL}:@x")
            ph.report_rate_limit(KEYISH, SQL, 60.0)
            await ph.flush()
            await eventually(lambda: ledger_count(s.store_path) == 4, what="4 events in the ledger")
            await eventually(lambda: ph.rate_limit(KEYISH, SQL), what="the hostile model's limit")
            events = await ph.events(EventQuery(workspace=TRAVERSAL, correlation_id=f"{TRAVERSAL}:@x"))
            assert ph.queries is not None
            found = await ph.queries.patterns(tags=[KEYISH], match_all_tags=True, limit=10)
            one = await ph.queries.pattern(pattern_id(SQL, SQL))
            status = await ph.rate_limit(KEYISH, SQL)
    finally:
        await runtime.stop()
    assert len(events) == 3 and {e.workspace for e in events} == {TRAVERSAL}
    assert {p["pattern_name"] for p in found} == {SQL, TRAVERSAL, KEYISH}
    assert all(set(p["context_tags"]) == {SQL, KEYISH, TRAVERSAL} for p in found)
    assert one["pattern"]["pattern_name"] == SQL and one["pattern"]["pattern_type"] == SQL
    assert status.active and status.model == KEYISH and status.reported_error_code == SQL
    assert count(s.store_path, "ledger") == 4  # the table is still there, with every event
    # Redis: every key of this prefix is printable, and the hostile names appear only as hashes
    keys = [k.decode() for k in await redis.keys(f"{{{prefix}}}:*")]  # type: ignore[attr-defined]
    assert keys and all(re.fullmatch(r"[\x21-\x7e]+", k) for k in keys), keys
    short = [Keys(prefix).short(k) for k in keys]  # past the hash tag, whose braces are ours
    assert not [k for k in short if any(bad in k for bad in ("DROP", "etc/passwd", "{", "}", "*", "[a]"))], keys
    assert any(key_part(KEYISH) in k for k in keys)
    # Files: nothing named after a workspace, job or pattern, anywhere under the data directory
    names = _listing(tmp_path)
    assert not [n for n in names if "etc" in n.split("/") or "passwd" in n or "DROP" in n], names


def _listing(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*")]


@pytest.mark.parametrize("bad", [SQL, "a b", "x\ny", "", "w" * 129])
def test_workspace_and_job_outside_the_identifier_alphabet_are_refused_at_the_door(bad: str) -> None:
    with pytest.raises(ValidationError):
        Pheromone("redis://127.0.0.1:1/0", workspace=bad, job="j")
    with pytest.raises(ValidationError):
        Pheromone("redis://127.0.0.1:1/0", workspace="w", job=bad)


@pytest.mark.parametrize("value", [SQL, TRAVERSAL, KEYISH, "", "é" * 5000, "\udcff"])
def test_key_part_is_fixed_length_hex(value: str) -> None:
    assert re.fullmatch(r"[0-9a-f]{32}", key_part(value))
