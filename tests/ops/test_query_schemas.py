"""`pheromone schema --queries`: every query operation has an argument schema (from the model it validates with)
and a result schema, and every operation's real answer from a query service over a real store validates against
its result schema, as a request built from the wire schemas (QueryRequest) is answered (QueryReply)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import jsonschema
import pytest
from pydantic import ValidationError

from pheromone import Pheromone
from pheromone.contracts import PatternApplied, PatternObserved, QueryReply, QueryRequest, pattern_id
from pheromone.contracts.query_args import QUERY_ARGS
from pheromone.contracts.streams import Keys
from pheromone.services.query.schemas import RESULTS, query_schemas
from pheromone.services.query.service import OPS, answer
from pheromone.services.store.reader import Reader
from tests.cli.helpers import PHEROMONE
from tests.ops.conftest import StartRuntime
from tests.ops.test_metrics import execution
from tests.support import eventually

PID = pattern_id("retry_pattern", "back off")
SAMPLE_ARGS: dict[str, dict[str, Any]] = {
    "events": {"workspace": "ws-q", "limit": 5}, "counts": {}, "patterns": {"tags": ["api"]},
    "pattern": {"id": PID}, "entropy": {"history": True}, "budget": {}, "drift": {"include_stable": True},
    "wait": {"error_code": "429"}, "escalations_similar": {"confidence": 0.5, "validation_pass_rate": 0.5},
    "execution_stats": {"by": "model"}, "trajectory": {}, "playbook": {"workspace": "ws-q"},
    "guidance": {"workspace": "ws-q"},
}


def test_every_operation_has_both_schemas() -> None:
    schemas = query_schemas()
    assert set(schemas["operations"]) == set(OPS) == set(SAMPLE_ARGS)
    for name, op in schemas["operations"].items():
        jsonschema.Draft202012Validator.check_schema(op["args"])
        jsonschema.Draft202012Validator.check_schema(op["result"])
        jsonschema.validate(SAMPLE_ARGS[name], op["args"])
    with pytest.raises(jsonschema.ValidationError):  # the arguments' schemas are the strict models'
        jsonschema.validate({"error_code": "429", "bogus": 1}, schemas["operations"]["wait"]["args"])


async def test_the_service_validates_each_operations_arguments_with_its_contract_model() -> None:
    """What the client builds (`contracts.query_args.QUERY_ARGS`) is what the service checks: an argument the
    model does not have is refused by name, before the store is read."""
    assert set(OPS) == set(QUERY_ARGS)
    pattern = re.compile(Keys("p").reply_pattern())
    no_store = cast(Reader, SimpleNamespace(db=None))  # refused before it is read
    for name in sorted(set(OPS) - {"counts"}):
        model = QUERY_ARGS[name]
        assert getattr(OPS[name], "args_model", model) is model, name
        args = {**SAMPLE_ARGS[name], "not_an_argument": 1}
        raw = json.dumps({"op": name, "args": args, "reply": Keys("p").reply("0" * 32)}).encode()
        with pytest.raises(ValidationError) as refused:
            model.model_validate(args)
        reply, response = await answer(no_store, raw, pattern)
        assert reply == Keys("p").reply("0" * 32) and response["ok"] is False, name
        assert "not_an_argument: Extra inputs are not permitted" in response["error"], name
        assert refused.value.error_count() == 1


def test_the_cli_prints_them(tmp_path: Path) -> None:
    run = subprocess.run([str(PHEROMONE), "schema", "--queries"], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == json.loads(json.dumps(query_schemas()))


async def test_real_answers_match_the_result_schemas(
    start_runtime: StartRuntime, redis_url: str, prefix: str, tmp_path: Path
) -> None:
    await start_runtime(["store", "query"])
    schemas = query_schemas()
    async with Pheromone(redis_url, workspace="ws-q", job="job-q", prefix=prefix, data_dir=tmp_path,
                         spool_dir=tmp_path / "spool") as client:
        client.emit(PatternObserved(pattern_type="retry_pattern", pattern_name="back off", context_tags=["api"]))
        for i in range(5):
            client.emit(execution(i))
            client.emit(PatternApplied(pattern_id=PID, success=i % 2 == 0, grounding_confidence=0.8))
        await client.flush()
        assert client.queries is not None
        queries = client.queries

        async def stored() -> bool:
            return (await queries.call("counts", {})).get("pattern_applied") == 5  # type: ignore[no-any-return]

        await eventually(stored, what="the workload in the store")
        for name, args in SAMPLE_ARGS.items():
            # Built and checked with the wire contracts, as a client in another language would send it.
            request = QueryRequest(op=name, args=args, reply=f"{{{prefix}}}:reply:{'0' * 32}")
            result = await queries.call(request.op, request.args)
            QueryReply(ok=True, result=result)
            schema = {**RESULTS[name], "$defs": schemas["$defs"]}
            jsonschema.validate(result, schema)
            if name in ("patterns", "events"):
                assert result, f"{name} answered nothing: the check above proved little"
