"""The AsyncAPI 3.0 document of every channel pheromone's services and clients use, made by FastStream.

`SUBSCRIPTIONS` names each consumer group's reader (stream, group, service, what it does); `Runtime` gives its
FastStream subscribers these titles and descriptions, and `document()` registers the same readers, plus what
the clients and services publish, on a broker of its own (never connected) with their payload schemas, then
asks FastStream for the document. `pheromone asyncapi` prints it; `pheromone serve --http-port` serves it at
`/asyncapi.json`. Raw wire formats (stream-entry fields, the query request and reply): docs/WIRE.md.

Stream entries are not JSON: an event entry's field `e` holds the envelope's JSON and `k` its payload type
(`contracts.streams`); the payload schemas here are those of the JSON in `e`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from faststream.redis import ListSub, RedisBroker, StreamSub
from faststream.specification import AsyncAPI
from pydantic import BaseModel, ConfigDict, Field

from pheromone.contracts.broadcast import BroadcastMessage
from pheromone.contracts.events import WireEnvelope
from pheromone.contracts.queries import QueryReply, QueryRequest
from pheromone.contracts.streams import (
    BROADCAST,
    DEAD,
    DEFAULT_PREFIX,
    DISCOVERIES,
    INGEST,
    RATELIMITS,
    TRIGGERS,
    Keys,
)


@dataclass(frozen=True, slots=True)
class Reader:
    """One consumer group's reader of one stream: what `Runtime` subscribes, titled `<stream>/<group>`."""

    stream: str
    group: str
    description: str

    @property
    def title(self) -> str:
        return f"{self.stream}/{self.group}"


SUBSCRIPTIONS: tuple[Reader, ...] = (
    Reader(INGEST, "store", "The store service writes every event into the SQLite ledger and projections, "
           "exactly once (the envelope's event_id is the key), and acks after the commit; unparsable entries "
           "and refused events go to the dead-letter stream with their reason."),
    Reader(RATELIMITS, "store", "The store service records every rate-limit report in the ledger."),
    Reader(DISCOVERIES, "store", "The store service records every pattern discovery in the ledger."),
    Reader(INGEST, "entropy", "The entropy service counts pattern applications fleet-wide and evaluates the "
           "pattern population's diversity every K of them; other kinds are acked unparsed (field k)."),
    Reader(INGEST, "consolidator", "The consolidator counts executions and failures per workspace and model to "
           "detect failure clusters, which trigger learning sessions."),
    Reader(RATELIMITS, "coordinator", "The coordinator keeps the live rate-limit keys ({prefix}:rl:...) and "
           "announces a new or extended limit on the broadcast stream."),
    Reader(DISCOVERIES, "broadcaster", "The broadcaster fans each unexpired pattern discovery out to every job "
           "on the broadcast stream, at most once per discovery."),
    Reader(TRIGGERS, "consolidator", "The consolidator runs one learning session per session trigger, one at a "
           "time per scope."),
)



def reader(stream: str, group: str) -> Reader:
    """The documented reader of `stream` (short name) by `group`; a reader not in SUBSCRIPTIONS is a bug."""
    for r in SUBSCRIPTIONS:
        if (r.stream, r.group) == (stream, group):
            return r
    raise LookupError(f"group {group} on {stream} is not in services.asyncapi.SUBSCRIPTIONS")


LIST_READERS: dict[str, Reader] = {
    "queries": Reader("queries", "query", "The query service pops requests (BLPOP; clients RPUSH, so the oldest is "
                      "answered first) and pushes each answer onto the request's reply list; replicas share the "
                      "requests."),
}
"""The list readers by list (short name): a list has no group, so `group` names the service that pops it."""

_STREAM_PAYLOADS = {
    INGEST: "every payload type but rate_limit, pattern_discovery and session_trigger (executions, pattern "
            "observations and applications, recoveries, escalations, trajectory, entropy, budget, drift, "
            "session and edit transitions)",
    RATELIMITS: "rate_limit payloads; each report carries its own expiry",
    DISCOVERIES: "pattern_discovery payloads; each carries its own expiry",
    TRIGGERS: "session_trigger payloads (learning sessions on demand, scheduled, on a failure cluster)",
}


class DeadLetterEntry(BaseModel):
    """The fields of one `{prefix}:dead` entry (a stream entry: every value is a string)."""

    model_config = ConfigDict(title="DeadLetterEntry", populate_by_name=True)

    stream: str = Field(description="The stream the entry came from (full key)")
    group: str = Field(description="The consumer group that gave up on it")
    id: str = Field(description="The entry's id on its stream")
    error: str = Field(description="Why, one line (at most 2,000 characters)")
    deliveries: str = Field(description="How many times it was delivered (decimal)")
    at: str = Field(description="When it was dead-lettered, ms since the epoch (decimal)")
    original_e: str | None = Field(None, alias="f:e", description="The original entry's field e, byte for byte")
    original_k: str | None = Field(None, alias="f:k", description="The original entry's field k, if any")


def _annotated(model: type[BaseModel]) -> Any:
    """A handler whose body is `model`: FastStream reads the subscriber's payload schema from its signature."""

    async def handler(body: Any) -> None:
        """Documentation only: never subscribed to a running broker."""

    handler.__annotations__ = {"body": model, "return": None}  # a real type, not this module's string annotation
    handler.__name__ = model.__name__
    return handler


def public_url(url: str) -> str:
    """`url`'s scheme, host, port and database only: no credentials or parameters go into a document."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme or 'redis'}://{host}:{parts.port or 6379}{parts.path}"


def document(
    prefix: str = DEFAULT_PREFIX, url: str = "redis://localhost:6379", version: str = "0.1.0"
) -> dict[str, Any]:
    """The AsyncAPI 3.0.0 document for the key prefix `prefix`, with `url`'s host as its server."""
    keys = Keys(prefix)
    broker = RedisBroker(public_url(url))
    for reader in SUBSCRIPTIONS:
        consumer = f"{reader.group}-<consumer_name>"
        broker.subscriber(
            stream=StreamSub(keys.stream(reader.stream), group=reader.group, consumer=consumer, batch=True),
            title=reader.title, description=reader.description,
        )(_annotated(WireEnvelope))
    for stream, what in _STREAM_PAYLOADS.items():
        broker.publisher(
            stream=keys.stream(stream), title=f"{stream}/emit", schema=WireEnvelope,
            description=f"Jobs (pheromone.Pheromone.emit, or any Redis client: XADD {keys.stream(stream)} * e "
                        f"<envelope JSON> k <payload type>) and the services emit {what}.",
        )
    broker.subscriber(
        stream=StreamSub(keys.broadcast), title=f"{BROADCAST}/jobs",
        description="Every job reads the broadcast stream from its own cursor (XREAD, no group) and filters by "
                    "kind (field k) and expiry (field x, ms since the epoch): discoveries, rate-limit notices, "
                    "entropy responses and drift alerts (pheromone.Pheromone.subscribe).",
    )(_annotated(BroadcastMessage))
    broker.publisher(
        stream=keys.broadcast, title=f"{BROADCAST}/publish", schema=BroadcastMessage,
        description="The broadcaster, the coordinator and the entropy service publish each message at most once, "
                    "never after its expiry: fields e (the message JSON), x (expiry, ms since the epoch), k (kind).",
    )
    broker.publisher(
        stream=keys.dead, title=f"{DEAD}/letters", schema=DeadLetterEntry,
        description="Entries a group could not parse or apply, with the reason and the original fields "
                    "(pheromone dead list / replay / purge).",
    )
    queries = LIST_READERS["queries"]
    broker.subscriber(list=ListSub(keys.queries), title=queries.title, description=queries.description)(
        _annotated(QueryRequest))
    broker.publisher(
        list=keys.queries, title="queries/request", schema=QueryRequest,
        description="Clients RPUSH one JSON request per query and BLPOP its reply list (docs/WIRE.md).",
    )
    broker.publisher(
        list=keys.reply("{id}"), title="queries/reply", schema=QueryReply,
        description="The query service LPUSHes the answer onto the request's one-off reply list "
                    "({prefix}:reply: and 32 hex digits), which expires 60 s later.",
    )
    spec = AsyncAPI(
        broker, title="pheromone", version=version, identifier="urn:pheromone",
        description="A shared, message-driven learning store for fleets of concurrent AI-agent jobs: jobs emit "
                    "events onto Redis streams, consumer groups (one per service) apply them, jobs read the "
                    "broadcast stream and ask the query service over Redis lists.",
    )
    doc: dict[str, Any] = json.loads(spec.to_specification().to_json())
    _declare_parameters(doc, keys)
    return doc


ADDRESS_EXPRESSION = re.compile(r"\{([^{}]*)\}")


def _declare_parameters(doc: dict[str, Any], keys: Keys) -> None:
    """Make every channel address a valid AsyncAPI address: in AsyncAPI `{name}` is a parameter, while our keys
    start with the prefix in literal braces (the Redis Cluster hash tag). The address says `{prefix}` instead,
    a parameter whose one value is the tag with its braces, so a tool that fills it in gets the real key; the
    redis binding's `channel` keeps the key as it is. The reply list's `{id}` is declared too."""
    tag = keys.tag.removesuffix(":")
    for channel in doc["channels"].values():
        address = channel.get("address")
        if not address or not address.startswith(keys.tag):
            continue
        channel["address"] = "{prefix}" + address.removeprefix(tag)
        parameters: dict[str, Any] = {"prefix": {
            "enum": [tag], "default": tag,
            "description": "The deployment's key prefix between braces, braces included: a Redis Cluster hash "
                           "tag, so every key of the deployment is in one slot.",
        }}
        if "id" in ADDRESS_EXPRESSION.findall(channel["address"]):
            parameters["id"] = {"description": "The request's reply token: 32 lowercase hex digits, new per "
                                               "request (QueryRequest.reply_to)."}
        channel["parameters"] = parameters
