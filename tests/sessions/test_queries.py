"""The `playbook` and `guidance` query operations refuse malformed and hostile arguments with a precise error,
and answer a valid request, on a real store file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pheromone.contracts import Envelope
from pheromone.contracts.sessions import (
    Edit,
    EditOp,
    EditPillar,
    EditTransitioned,
    PlaybookWritten,
    SessionTransitioned,
)
from pheromone.services.query.service import answer
from pheromone.services.store.db import Store
from pheromone.services.store.reader import Reader

PATTERN = re.compile(r"p:reply:[0-9a-f]{32}")
REPLY = "p:reply:" + "0" * 32


async def ask(reader: Reader, op: str, args: object) -> dict[str, object]:
    reply, response = await answer(reader, json.dumps({"op": op, "args": args, "reply": REPLY}).encode(), PATTERN)
    assert reply == REPLY
    return response


@pytest.fixture
async def reader(tmp_path: Path) -> Reader:
    path = tmp_path / "store.db"
    line = Edit(id="e_1", pillar=EditPillar.PLAYBOOK, op=EditOp.PLAYBOOK_ADD, workspace="ws", content="- learned")
    events = [PlaybookWritten(workspace="ws", text="# hand\n")]
    events += [SessionTransitioned(session_id="s", scope="ws", to_status=to, trigger="on_demand" if i == 0 else None)  # type: ignore[arg-type]
               for i, to in enumerate(("triggered", "harvesting", "diagnosing", "planning", "gating", "executing"))]
    events += [EditTransitioned(session_id="s", edit_id="e_1", to_status="applied", edit=line)]  # type: ignore[list-item, arg-type]
    async with Store(path) as store:
        envs = [Envelope(workspace="ws", job="t", payload=p) for p in events]
        assert not (await store.apply([(e, e.model_dump_json()) for e in envs])).rejected
    r = Reader(path)
    await r.__aenter__()
    return r


@pytest.mark.parametrize(("op", "args", "needle"), [
    ("playbook", {}, "workspace: Field required"),
    ("playbook", {"workspace": "has space"}, "workspace: String should match pattern"),
    ("playbook", {"workspace": "ws", "drop": "table"}, "drop: Extra inputs are not permitted"),
    ("playbook", {"workspace": ["ws"]}, "workspace"),
    ("playbook", {"workspace": "x" * 129}, "at most 128"),
    ("guidance", {"workspace": "ws", "limit": 0}, "limit: Input should be greater than or equal to 1"),
    ("guidance", {"workspace": "ws", "model": "m" * 300}, "model: String should have at most 256"),
    ("guidance", {"workspace": "ws", "limit": "all"}, "limit"),
])
async def test_malformed_arguments_get_a_precise_error(reader: Reader, op: str, args: object, needle: str) -> None:
    try:
        response = await ask(reader, op, args)
    finally:
        await reader.__aexit__()
    assert response["ok"] is False and needle in str(response["error"]), response


async def test_a_valid_request_is_answered_with_the_served_playbook(reader: Reader) -> None:
    try:
        book = await ask(reader, "playbook", {"workspace": "ws"})
        guided = await ask(reader, "guidance", {"workspace": "ws", "model": "m"})
        empty = await ask(reader, "playbook", {"workspace": "nobody"})
    finally:
        await reader.__aexit__()
    assert book["ok"] is True
    result = book["result"]
    assert result["markdown"] == (  # type: ignore[index]
        "# hand\n\n<!-- pheromone:learned:begin -->\n- learned\n<!-- pheromone:learned:end -->\n")
    assert guided["result"]["playbook"] == result["markdown"]  # type: ignore[index]
    assert empty["result"]["markdown"].startswith("<!-- pheromone:learned:begin -->")  # type: ignore[index]
