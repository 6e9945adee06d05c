"""`pheromone schema`: the JSON Schema of every wire contract, for producers in other languages."""

from __future__ import annotations

import json

from pydantic import BaseModel

from pheromone import contracts
from pheromone.contracts.query_args import QUERY_ARGS
from tests.cli.helpers import Cli

CONTRACT_MODELS = {
    name: obj
    for name in contracts.__all__
    if isinstance(obj := getattr(contracts, name), type) and issubclass(obj, BaseModel)
}


def test_schema_prints_every_contract_model(cli: Cli) -> None:
    run = cli("schema")
    assert run.code == 0, run
    schemas = json.loads(run.out)
    assert set(schemas) == set(CONTRACT_MODELS)
    for name, schema in schemas.items():
        assert schema["title"] == name
        assert schema.get("type") == "object" or "enum" in schema, name


def test_schema_of_envelope(cli: Cli) -> None:
    run = cli("schema", "Envelope")
    assert run.code == 0, run
    schema = json.loads(run.out)
    assert schema["title"] == "Envelope"
    fields = {"event_id", "occurred_at", "workspace", "job", "correlation_id", "schema_version", "payload"}
    assert fields <= set(schema["properties"])
    assert {"workspace", "job", "payload"} <= set(schema["required"])
    assert schema["additionalProperties"] is False  # extra="forbid" reaches producers in other languages
    # the payload is a union discriminated by `type`, one branch per payload type
    payload = schema["properties"]["payload"]
    assert payload["discriminator"]["propertyName"] == "type"
    kinds = {t.model_fields["type"].default for t in contracts.PAYLOAD_TYPES}
    assert set(payload["discriminator"]["mapping"]) == kinds


def test_schema_of_unknown_contract_is_a_one_line_error(cli: Cli) -> None:
    run = cli("schema", "Nope")
    run.assert_clean_failure("Nope", "Envelope")
    assert run.out == ""


def test_schema_queries_prints_every_operations_argument_model(cli: Cli) -> None:
    run = cli("schema", "--queries")
    assert run.code == 0, run
    operations = json.loads(run.out)["operations"]
    assert set(operations) == set(QUERY_ARGS)
    for name, model in QUERY_ARGS.items():
        assert operations[name]["args"] == json.loads(json.dumps(model.model_json_schema())), name
    one = cli("schema", "--queries", "guidance")
    assert json.loads(one.out)["operations"] == {"guidance": operations["guidance"]}
