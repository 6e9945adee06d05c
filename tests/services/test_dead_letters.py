"""No silent loss: every poison entry becomes exactly one dead letter with a precise error, the group keeps
flowing around it, and the CLI lists and replays dead letters byte for byte."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner

from pheromone.cli import app
from pheromone.contracts import MAX_ENTRY_BYTES
from pheromone.contracts.streams import (
    DEAD_LETTER_FIELDS,
    FIELD,
    FIELD_KIND,
    GROUP_STORE,
    ORIGINAL_PREFIX,
    Keys,
    read_dead_letter,
)
from pheromone.services import transport
from pheromone.services.settings import Settings, StoreLocation
from pheromone.spool import Spool
from tests.services import helpers as h
from tests.services.conftest import StartRuntime
from tests.support import OpenClient

JUNK = b"\xff\xfe\x00not json \x80"


@pytest.fixture(params=["sqlite", "postgres"])
def store_backend(request: pytest.FixtureRequest) -> str:
    """Every test here runs on both store backends."""
    param: str = request.param
    return param


def valid_json(env_type: str = "escalation_outcome", **payload: object) -> dict[str, object]:
    """A well-formed envelope as a dict, to be spoiled one way at a time."""
    base = h.envelope(h.outcome("esc-x")).model_dump(mode="json")
    if env_type != "escalation_outcome":
        base["payload"] = {"type": env_type, **payload}
    return base


def poison(cycle: int, missing_escalation: str) -> dict[str, tuple[dict[bytes | str, bytes | str], str]]:
    """name -> (stream entry fields, the start of the dead letter's error)."""
    oversized = valid_json()
    oversized["payload"] = {"type": "escalation_outcome", "escalation_id": "e", "outcome": "success"}
    raw_oversized = json.dumps(oversized)[:-1] + ', "pad": "' + "x" * MAX_ENTRY_BYTES + '"}'
    size = len(raw_oversized.encode())
    v2 = valid_json()
    v2["schema_version"] = 2
    return {
        "binary junk": ({FIELD: JUNK}, "invalid envelope: <root>: Invalid JSON"),
        "json, not an envelope": ({FIELD: b'{"hello": "world"}'},
                                  "invalid envelope: workspace: Field required; job: Field required; "
                                  "payload: Field required"),
        "no e field": ({"x": b"1", "y": b"2"}, "ValueError: entry has no 'e' field (fields: ['x', 'y'])"),
        "oversized": ({FIELD: raw_oversized.encode()},
                      f"ValueError: envelope is {size} bytes, over the {MAX_ENTRY_BYTES}-byte limit"),
        "unknown payload type": ({FIELD: json.dumps(valid_json("nonsense", a=1)).encode()},
                                 "invalid envelope: payload: Input tag 'nonsense' found using 'type' "
                                 "does not match any of the expected tags"),
        "schema version 2": ({FIELD: json.dumps(v2).encode()},
                             "invalid envelope: schema_version: Input should be less than or equal to 1"),
        "duplicate evolution cycle": (h.entry(h.envelope(h.evolution(cycle))),
                                      f"evolution cycle {cycle} (or entry id "),
        "outcome of unknown escalation": (h.entry(h.envelope(h.outcome(missing_escalation))),
                                          f"escalation {missing_escalation!r} is not in the store"),
    }


def cli(*args: str) -> dict[str, object] | list[dict[str, object]]:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: exit {result.exit_code}: {result.output}{result.exception!r}"
    return json.loads(result.stdout)  # type: ignore[no-any-return]


async def test_poison_entries_become_one_precise_dead_letter_each_and_can_be_replayed(
    start_runtime: StartRuntime, db: StoreLocation, prefix: str, redis: aioredis.Redis, redis_url: str, tmp_path: Path
) -> None:
    keys = Keys(prefix)
    await start_runtime()
    missing = f"esc-{prefix}"
    cycle = 1_000
    bad = poison(cycle, missing)
    good = [h.envelope(h.execution()) for _ in range(len(bad) + 1)]
    first_cycle = h.envelope(h.evolution(cycle))
    # good, poison, good, poison, ... good: valid events before, between and after every poison entry.
    entries: list[dict[bytes | str, bytes | str]] = [h.entry(first_cycle)]
    for env, (fields, _) in zip(good, bad.values(), strict=False):
        entries += [h.entry(env), fields]
    entries.append(h.entry(good[-1]))
    ids = await h.xadd_raw(redis, keys.ingest, entries)
    poison_ids = {name: ids[2 + 2 * i] for i, name in enumerate(bad)}
    rl_junk_id = (await h.xadd_raw(redis, keys.ratelimits, [{FIELD: JUNK}]))[0]

    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), what="ingest consumed")
    await h.eventually(lambda: h.group_caught_up(redis, keys.ratelimits), what="ratelimits consumed")
    after = [h.envelope(h.execution()) for _ in range(3)]
    await h.xadd_raw(redis, keys.ingest, [h.entry(e) for e in after])
    want = {e.event_id for e in [first_cycle, *good, *after]}
    await h.eventually(lambda: set(h.ledger_ids(db)) >= want, what="valid events stored")
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), what="group flowing after poison")

    assert set(h.ledger_ids(db)) == want  # nothing refused reached the ledger
    letters = await h.dead_letters(redis, prefix)
    # Keyed by stream and id: two streams can hand out the same id in the same millisecond.
    by_entry = {(fields[b"stream"].decode(), fields[b"id"]): (dead_id, fields) for dead_id, fields in letters}
    assert len(letters) == len(by_entry) == len(bad) + 1  # one letter per poison entry, none doubled
    for name, (fields, error) in bad.items():
        _, letter = by_entry[keys.ingest, poison_ids[name]]
        assert letter[b"error"].decode().startswith(error), (name, letter[b"error"])
        assert letter[b"stream"].decode() == keys.ingest
        assert letter[b"group"].decode() == GROUP_STORE
        # A refusal for a record not stored yet is retried (it may be a crash's reordering) until
        # max_deliveries; everything else is dead-lettered on its first delivery.
        retried = name == "outcome of unknown escalation"
        assert letter[b"deliveries"] == (str(Settings().max_deliveries).encode() if retried else b"1"), name
        original = {k if isinstance(k, bytes) else k.encode(): v if isinstance(v, bytes) else v.encode()
                    for k, v in fields.items()}
        assert {k[2:]: v for k, v in letter.items() if k.startswith(b"f:")} == original, name
    rl_letter = by_entry[keys.ratelimits, rl_junk_id][1]
    assert rl_letter[b"stream"].decode() == keys.ratelimits and rl_letter[b"f:e"] == JUNK
    assert await h.pending(redis, keys.ingest) == 0 and await h.pending(redis, keys.ratelimits) == 0
    assert h.count(db, "evolution_trajectory", "cycle = ?", cycle) == 1

    # The operator's view: `pheromone dead list --json` shows every letter with its error.
    common = ("--redis-url", redis_url, "--prefix", prefix, "--data-dir", str(tmp_path / "cli"))
    listed = await asyncio.to_thread(cli, "dead", "list", "--json", "--limit", "100", *common)
    assert isinstance(listed, list)
    assert {d["dead_id"] for d in listed} == {dead_id.decode() for dead_id, _ in letters}
    shown = {d["id"]: d for d in listed}
    for name, (_, error) in bad.items():
        assert str(shown[poison_ids[name].decode()]["error"]).startswith(error), name

    # Replay: junk is junk again (a new letter, same bytes); the outcome applies once its escalation exists.
    junk_dead, _ = by_entry[keys.ingest, poison_ids["binary junk"]]
    outcome_dead, outcome_letter = by_entry[keys.ingest, poison_ids["outcome of unknown escalation"]]
    escalation = h.envelope(h.escalation(id=missing))
    await h.xadd_raw(redis, keys.ingest, [h.entry(escalation)])
    await h.eventually(lambda: h.count(db, "escalation_decisions", "id = ?", missing) == 1, what="escalation")
    done = await asyncio.to_thread(cli, "dead", "replay", junk_dead.decode(), outcome_dead.decode(), "--json",
                                   *common)
    assert done == {"replayed": [junk_dead.decode(), outcome_dead.decode()]}

    outcome_event = json.loads(outcome_letter[b"f:e"])["event_id"]
    await h.eventually(lambda: h.count(db, "ledger", "event_id = ?", outcome_event) == 1,
                       what="outcome applied")
    assert h.query(db, "SELECT outcome_after_action FROM escalation_decisions WHERE id = ?", missing) == [
        ("success",)]

    async def junk_dead_again() -> list[tuple[bytes, dict[bytes, bytes]]]:
        return [(i, f) for i, f in await h.dead_letters(redis, prefix)
                if f.get(b"f:e") == JUNK and f[b"stream"] == keys.ingest.encode()]

    again = await h.eventually(junk_dead_again, what="replayed junk dead-lettered again")
    assert len(again) == 1
    new_dead_id, new_letter = again[0]
    assert new_dead_id != junk_dead and new_letter[b"id"] != poison_ids["binary junk"]
    assert new_letter[b"error"].decode().startswith(bad["binary junk"][1])
    await h.eventually(lambda: h.group_caught_up(redis, keys.ingest), what="replays consumed")
    remaining = {i for i, _ in await h.dead_letters(redis, prefix)}
    assert remaining == {i for i, _ in letters} - {junk_dead, outcome_dead} | {new_dead_id}

    relisted = await asyncio.to_thread(cli, "dead", "list", "--json", "--limit", "100", *common)
    assert {d["dead_id"] for d in relisted} == {i.decode() for i in remaining}  # type: ignore[index]


async def test_replay_of_an_unknown_dead_letter_fails_cleanly(
    redis_url: str, prefix: str, tmp_path: Path
) -> None:
    result = await asyncio.to_thread(CliRunner().invoke, app, [
        "dead", "replay", "1-0", "--redis-url", redis_url, "--prefix", prefix, "--data-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "no dead letter '1-0'" in str(result.exception)


async def test_an_entry_two_handlers_dead_letter_at_once_is_one_letter(redis: aioredis.Redis, prefix: str) -> None:
    """The retrier and a writer taking over a dead consumer's entries can both give up on one entry: only the
    handler whose ack takes it off the pending list writes its letter (transport.ACK_THEN_LETTER)."""
    keys = Keys(prefix)
    await transport.ensure_group(redis, keys.ingest, GROUP_STORE)
    (entry_id,) = await h.xadd_raw(redis, keys.ingest, [{FIELD: JUNK}])
    await redis.xreadgroup(GROUP_STORE, "c-1", {keys.ingest: ">"})
    letter = transport.DeadLetter(keys.ingest, GROUP_STORE, entry_id, {FIELD.encode(): JUNK}, "junk", 5)
    await asyncio.gather(*(transport.dead_letter(redis, keys.dead, [letter]) for _ in range(3)))
    await transport.dead_letter(redis, keys.dead, [letter])  # and once more, after it was acked
    letters = await h.dead_letters(redis, prefix)
    assert [fields[b"id"] for _, fields in letters] == [entry_id]
    assert letters[0][1][b"f:" + FIELD.encode()] == JUNK
    assert (await redis.xpending(keys.ingest, GROUP_STORE))["pending"] == 0


async def test_the_services_and_the_client_write_one_dead_letter_layout(
    redis: aioredis.Redis, prefix: str, redis_url: str, tmp_path: Path, open_client: OpenClient
) -> None:
    """A letter the transport's script writes and one the client's spool replay writes (for a line it cannot
    read) have the same fields, in the same order, and `pheromone dead list` reads both the same way."""
    keys = Keys(prefix)
    await transport.ensure_group(redis, keys.ingest, GROUP_STORE)
    (entry_id,) = await h.xadd_raw(redis, keys.ingest, [{FIELD: JUNK}])
    await redis.xreadgroup(GROUP_STORE, "c-1", {keys.ingest: ">"})
    await transport.dead_letter(redis, keys.dead, [
        transport.DeadLetter(keys.ingest, GROUP_STORE, entry_id, {FIELD.encode(): JUNK}, "junk", 2)])
    with Spool(tmp_path / "spool-dead") as spool:
        spool.append([b"a line without a tab"])
    client = await open_client("job-dead", spool_dir=tmp_path / "spool-dead")
    await client.flush()

    letters = await h.dead_letters(redis, prefix)  # flush() returns once the spool is sent
    assert len(letters) == 2
    (_, by_script), (_, by_client) = letters
    for fields in (by_script, by_client):
        own, _ = read_dead_letter(fields)
        assert tuple(own) == DEAD_LETTER_FIELDS  # every field of the layout, in its order, nothing else
    assert read_dead_letter(by_script)[1] == {FIELD.encode(): JUNK}
    assert read_dead_letter(by_client) == (
        {"stream": "spool", "group": "client", "id": "0-0", "error": "unreadable spool record", "deliveries": "0",
         "at": by_client[b"at"].decode()},
        {b"raw": b"a line without a tab"})

    common = ("--redis-url", redis_url, "--prefix", prefix, "--data-dir", str(tmp_path / "cli"))
    listed = await asyncio.to_thread(cli, "dead", "list", "--json", *common)
    assert isinstance(listed, list)
    assert [list(d) for d in listed] == [["dead_id", *DEAD_LETTER_FIELDS, "fields"]] * 2
    assert [d["fields"] for d in listed] == [{FIELD: JUNK.decode(errors="replace")}, {"raw": "a line without a tab"}]


def test_the_asyncapi_document_describes_the_same_layout() -> None:
    from pheromone.services.asyncapi import DeadLetterEntry

    described = [name for name, field in DeadLetterEntry.model_fields.items() if field.alias is None]
    assert tuple(described) == DEAD_LETTER_FIELDS
    originals = [field.alias for field in DeadLetterEntry.model_fields.values() if field.alias is not None]
    assert originals == [(ORIGINAL_PREFIX + name.encode()).decode() for name in (FIELD, FIELD_KIND)]
