"""The AsyncAPI document: valid against the official AsyncAPI 3.0.0 JSON Schema, complete (every stream, group,
list and the broadcast stream, each with a description and a real payload schema), the same document the CLI
prints, and true to the runtime: every subscriber a running Runtime registers is a documented channel.

asyncapi-3.0.0.schema.json is `schemas/3.0.0.json` of the npm package @asyncapi/specs 6.11.1 (the AsyncAPI
Initiative's official JSON Schemas, Apache-2.0), unchanged.
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from faststream.specification import AsyncAPI

from pheromone.contracts.streams import BROADCAST, DEAD, STREAM_GROUPS, Keys
from pheromone.services import asyncapi
from pheromone.services.runtime import service_names
from tests.cli.helpers import PHEROMONE
from tests.ops.conftest import StartRuntime
from tests.support import eventually

SCHEMA = json.loads((Path(__file__).with_name("asyncapi-3.0.0.schema.json")).read_text())
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)


def errors(doc: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in VALIDATOR.iter_errors(doc)]


def channels_by_binding(doc: dict[str, Any]) -> dict[tuple[str, str, str | None], dict[str, Any]]:
    """(key, method, group) -> channel."""
    out = {}
    for channel in doc["channels"].values():
        binding = channel["bindings"]["redis"]
        out[(binding["channel"], binding["method"], binding.get("groupName"))] = channel
    return out


@pytest.mark.parametrize("prefix", ["pheromone", "team.a-1"])
def test_every_address_declares_its_parameters_and_resolves_to_the_key(prefix: str) -> None:
    # In AsyncAPI `{name}` in an address is a parameter; our keys hold the prefix in literal braces.
    for name, channel in asyncapi.document(prefix)["channels"].items():
        address, key = channel["address"], channel["bindings"]["redis"]["channel"]
        used = set(asyncapi.ADDRESS_EXPRESSION.findall(address))
        assert used == set(channel.get("parameters", {})), f"{name}: {address} declares {channel.get('parameters')}"
        resolved = address.replace("{prefix}", channel["parameters"]["prefix"]["default"])
        assert resolved == key, name
        assert key.startswith(Keys(prefix).tag)


def test_the_document_is_valid_asyncapi_3() -> None:
    doc = asyncapi.document("pheromone")
    assert doc["asyncapi"] == "3.0.0"
    assert errors(doc) == []


def test_the_validator_catches_a_broken_document() -> None:
    doc = copy.deepcopy(asyncapi.document("pheromone"))
    next(iter(doc["operations"].values()))["action"] = "fetch"
    doc["components"]["schemas"]["Envelope"]["type"] = "nonsense"
    assert len(errors(doc)) >= 2


def test_every_stream_group_list_and_broadcast_is_documented() -> None:
    keys = Keys("px")
    found = channels_by_binding(asyncapi.document("px"))
    wanted = [(keys.stream(stream), "xreadgroup", group)
              for stream, groups in STREAM_GROUPS.items() for group in groups]
    wanted += [(keys.stream(stream), "xadd", None) for stream in (*STREAM_GROUPS, BROADCAST, DEAD)]
    wanted += [(keys.broadcast, "xread", None), (keys.queries, "lpop", None), (keys.queries, "rpush", None),
               (keys.reply("{id}"), "rpush", None)]
    missing = [w for w in wanted if w not in found]
    assert not missing, f"undocumented channels: {missing}"
    assert len(found) == len(wanted), f"undeclared extras: {set(found) - set(wanted)}"
    for key, channel in found.items():
        assert len(channel.get("description", "")) > 40, f"{key} has no real description"


def test_every_message_has_a_real_payload_schema() -> None:
    doc = asyncapi.document()
    schemas = doc["components"]["schemas"]
    expected = {"Envelope", "BroadcastMessage", "QueryRequest", "QueryReply", "DeadLetterEntry"}
    assert expected <= set(schemas)
    used = set()
    for name, message in doc["components"]["messages"].items():
        ref = message["payload"].get("$ref", "")
        assert ref.startswith("#/components/schemas/"), f"{name}: payload {message['payload']}"
        used.add(ref.rsplit("/", 1)[1])
    assert used == expected
    envelope = schemas["Envelope"]
    assert {"event_id", "occurred_at", "workspace", "job", "payload"} <= set(envelope["required"])
    assert "ExecutionRecord" in schemas and "properties" in schemas["ExecutionRecord"]


def test_the_cli_prints_the_document_without_credentials(tmp_path: Path) -> None:
    url = "redis://ops:s3cret@cache.internal:6380/2?ssl_cert_reqs=none"
    run = subprocess.run([str(PHEROMONE), "asyncapi", "--redis-url", url, "--prefix", "acme"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    assert "s3cret" not in run.stdout
    doc = json.loads(run.stdout)
    assert "ops" not in json.dumps(doc["servers"]), doc["servers"]  # nor the user name
    assert doc["servers"]["development"]["host"] == "cache.internal:6380"
    assert doc["channels"] == asyncapi.document("acme", url, doc["info"]["version"])["channels"]
    assert errors(doc) == []


def test_an_undocumented_reader_is_refused() -> None:
    with pytest.raises(LookupError, match=r"not in services\.asyncapi\.SUBSCRIPTIONS"):
        asyncapi.reader("ingest", "nobody")


async def test_a_running_runtime_subscribes_only_documented_channels(start_runtime: StartRuntime) -> None:
    runtime = await start_runtime(list(service_names()))
    await eventually(lambda: runtime.writing, what="the store holding its writer lease and reading")
    live = json.loads(AsyncAPI(runtime.broker).to_specification().to_json())
    documented = asyncapi.document(runtime.keys.prefix)
    live_channels = channels_by_binding(live)
    documented_channels = channels_by_binding(documented)
    assert live_channels, "the runtime registered no subscribers"
    for key, channel in live_channels.items():
        assert key in documented_channels, f"the runtime reads {key}, which the document does not describe"
        assert channel["description"] == documented_channels[key]["description"]
    readers = {k for k in documented_channels if k[1] in ("xreadgroup", "lpop")}
    assert readers == set(live_channels), "every documented reader runs in a runtime with every service"
