"""Every stream, group, key and TTL name in one place, so producers, consumers and tests cannot disagree.

Keys are `{prefix}:{name}`, braces included: the prefix (default `pheromone`) is a Redis Cluster hash tag, so
every key of one deployment hashes to one slot and every multi-key command, MULTI/EXEC and Lua script stays on
one node of a cluster (docs/OPERATIONS.md, "Redis Cluster"). The prefix comes from settings so that several
installations, or every test, can share one server; it may not hold braces itself (`check_prefix`).

Stream entries carry the envelope's JSON under `FIELD` (`e`) and, optionally, its payload's `type` under
`FIELD_KIND` (`k`): a group that wants only some kinds (entropy counts applications, the consolidator reads
executions) acks the rest without parsing them. The kind is a hint for skipping, nothing more: whatever applies
or counts an event uses the type of the validated payload, and an entry without `k` is parsed by every group.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

DEFAULT_PREFIX: Final = "pheromone"
FIELD: Final = "e"
"""The stream-entry field that holds an envelope's JSON."""

# Streams
INGEST: Final = "ingest"
"""Durable families: executions, patterns, applications, recoveries, escalations, trajectory, entropy, budget."""
RATELIMITS: Final = "ratelimits"
"""Rate-limit reports; each carries its own expiry."""
DISCOVERIES: Final = "discoveries"
"""Pattern discoveries; each carries its own expiry."""
BROADCAST: Final = "broadcast"
"""Fan-out to every job: discoveries, rate-limit announcements, entropy responses, drift alerts."""
DEAD: Final = "dead"
"""Dead letters: entries that could not be parsed or applied, with their error (layout: `dead_letter`)."""
TRIGGERS: Final = "triggers"
"""Session triggers (`contracts.sessions.SessionTrigger`), read by the consolidator only (docs/SESSIONS.md)."""

# Consumer groups
GROUP_STORE: Final = "store"
GROUP_COORDINATOR: Final = "coordinator"
GROUP_BROADCASTER: Final = "broadcaster"
GROUP_ENTROPY: Final = "entropy"
GROUP_CONSOLIDATOR: Final = "consolidator"

STREAM_GROUPS: Final[dict[str, tuple[str, ...]]] = {
    INGEST: (GROUP_STORE, GROUP_ENTROPY, GROUP_CONSOLIDATOR),
    RATELIMITS: (GROUP_STORE, GROUP_COORDINATOR),
    DISCOVERIES: (GROUP_STORE, GROUP_BROADCASTER),
    TRIGGERS: (GROUP_CONSOLIDATOR,),
}
"""Which groups read which stream. The store group reads the three event streams: every event reaches the
ledger. Triggers are the consolidator's alone (a trigger is recorded by the session it starts)."""
CONSOLIDATOR_STREAMS: Final[tuple[str, ...]] = (TRIGGERS, INGEST)
"""The consolidator group reads its triggers, and the ingest stream to detect failure clusters."""

ROUTES: Final[dict[str, str]] = {
    "rate_limit": RATELIMITS, "pattern_discovery": DISCOVERIES, "session_trigger": TRIGGERS,
}
"""Payload type -> stream, for the TTL'd families; every other type goes to INGEST."""

# TTLs and retention (seconds); settings may override the retention ones.
DISCOVERY_TTL_S: Final = 300.0
"""Seed 000's discovery broadcasts expire after 5 minutes by default."""
INGEST_RETENTION_S: Final = 24 * 3600.0
DEAD_RETENTION_S: Final = 7 * 24 * 3600.0
BROADCAST_RETENTION_S: Final = 3600.0
"""Also how far back a subscriber's reader starts: a late subscriber gets every unexpired message retained."""

# Real-time coordination (docs/COORDINATION.md). Producers compute these, so they are constants here rather
# than service settings.
RATE_LIMIT_EXPIRY_FACTOR: Final = 1.0
"""A reported limit expires `factor x duration` after it was recorded (the reference system used 0.8)."""
FIELD_EXPIRES: Final = "x"
"""Broadcast entries: the message's expiry in ms since the epoch, readable without parsing the JSON."""
FIELD_KIND: Final = "k"
"""Envelope entries: the payload's `type`, optional (see the module's docstring). Broadcast entries: the
message's kind (`contracts.broadcast.BroadcastKind`)."""
SYSTEM_WORKSPACE: Final = "pheromone"
"""The envelope workspace of events the services themselves emit (entropy metrics, responses, alerts)."""
ENTROPY_JOB: Final = "entropy"
"""The envelope job (and `job_hash`) of what the entropy service emits."""
CONSOLIDATOR_JOB: Final = "consolidator"
"""The envelope job of what the consolidator emits (its envelope workspace is the session's scope)."""


def key_part(value: str) -> str:
    """A fixed-length, key-safe stand-in for a user string (model names, error codes): 128 bits of SHA-256.

    Any string (spaces, colons, unicode, lone surrogates, 10 KB) maps to 32 hex characters, so a name can
    never reach outside its key family or make keys unbounded.
    """
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def stream_for(payload_type: str) -> str:
    return ROUTES.get(payload_type, INGEST)


def entry(body: str | bytes, kind: str) -> dict[Any, Any]:
    """An envelope's stream-entry fields: its JSON under `FIELD`, its payload's type under `FIELD_KIND`.

    Typed loosely because redis-py's `xadd` takes a dict that is invariant in its key and value types.
    """
    return {FIELD: body, FIELD_KIND: kind}


# Dead letters (docs/WIRE.md, "Dead letters"): what the transport's script, the client's spool replay and
# `pheromone dead` write and read.
DEAD_LETTER_FIELDS: Final = ("stream", "group", "id", "error", "deliveries", "at")
"""A dead letter's own fields, in the order they are written: the stream the entry came from (full key), the
group that gave up on it, the entry's id there, why (one line), how many deliveries, when (ms since the epoch)."""
ORIGINAL_PREFIX: Final = b"f:"
"""A dead letter carries each field of the original entry under this prefix (`f:e`, `f:k`), byte for byte."""
MAX_ERROR_CHARS: Final = 2_000
"""A dead letter's `error` is cut to this many characters: a reason, not a dump of the entry."""


def dead_letter(
    *, stream: str, group: str, entry_id: str | bytes, error: str, deliveries: int, at_ms: int,
    original: Mapping[bytes, bytes],
) -> list[bytes]:
    """A dead letter's fields as a flat [name, value, ...] list: XADD's arguments after `*`."""
    own: tuple[str | bytes, ...] = (stream, group, entry_id, error[:MAX_ERROR_CHARS], str(deliveries), str(at_ms))
    fields: list[bytes] = []
    for name, value in zip(DEAD_LETTER_FIELDS, own, strict=True):
        fields += [name.encode(), value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")]
    for original_name, original_value in original.items():
        fields += [ORIGINAL_PREFIX + original_name, original_value]
    return fields


def read_dead_letter(fields: Mapping[bytes, bytes]) -> tuple[dict[str, str], dict[bytes, bytes]]:
    """A dead letter's fields split into its own (decoded, in stored order) and the original entry's (raw)."""
    own = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in fields.items()
           if not k.startswith(ORIGINAL_PREFIX)}
    original = {k[len(ORIGINAL_PREFIX):]: v for k, v in fields.items() if k.startswith(ORIGINAL_PREFIX)}
    return own, original


PREFIX_PATTERN: Final = r"[A-Za-z0-9_.-]{1,64}"
"""What a prefix may be: letters, digits, `_`, `.`, `-`; never a brace, since Keys puts it between braces."""
REPLY_TOKEN: Final = "[0-9a-f]{32}"
"""The part of a query's reply key after `{prefix}:reply:`: 32 lowercase hex digits, new per request."""
REPLY_KEY_PATTERN: Final = rf"^\{{{PREFIX_PATTERN}\}}:reply:{REPLY_TOKEN}$"
"""A reply key under any prefix (`contracts.queries.QueryRequest` checks it); the query service writes no other
key."""


def check_prefix(prefix: str) -> str:
    """`prefix` if it can name a deployment's keys, else ValueError with a one-line reason."""
    if "{" in prefix or "}" in prefix:
        raise ValueError(f"prefix {prefix[:80]!r} holds a brace: pheromone puts the prefix between braces itself "
                         "(the Redis Cluster hash tag {prefix}); give the name without them")
    if not re.fullmatch(PREFIX_PATTERN, prefix):
        raise ValueError(f"prefix {prefix[:80]!r} must be 1 to 64 letters, digits, '_', '.' or '-'")
    return prefix


@dataclass(frozen=True, slots=True)
class Keys:
    """Full key names under one prefix: every one starts with `tag`, `{prefix}:`, so all hash to one slot."""

    prefix: str = DEFAULT_PREFIX
    tag: str = field(init=False, repr=False, compare=False)
    """`{prefix}:`, the start of every key (the braces are the hash tag; the colon ends the prefix)."""

    def __post_init__(self) -> None:
        check_prefix(self.prefix)
        object.__setattr__(self, "tag", f"{{{self.prefix}}}:")

    def stream(self, name: str) -> str:
        return f"{self.tag}{name}"

    @property
    def ingest(self) -> str:
        return self.stream(INGEST)

    @property
    def ratelimits(self) -> str:
        return self.stream(RATELIMITS)

    @property
    def discoveries(self) -> str:
        return self.stream(DISCOVERIES)

    @property
    def broadcast(self) -> str:
        return self.stream(BROADCAST)

    @property
    def dead(self) -> str:
        return self.stream(DEAD)

    @property
    def queries(self) -> str:
        """List of pending query requests (request/reply to the query service)."""
        return f"{self.tag}queries"

    def reply(self, token: str) -> str:
        """The one-off list a query's answer is pushed to; `token` is 32 lowercase hex digits (REPLY_TOKEN)."""
        return f"{self.tag}reply:{token}"

    def reply_pattern(self) -> str:
        """A regular expression that matches exactly this prefix's reply keys (`reply`)."""
        return re.escape(self.reply("")) + REPLY_TOKEN

    def owns(self, key: str) -> bool:
        """Is `key` under this prefix?"""
        return key.startswith(self.tag)

    def short(self, key: str) -> str:
        """`key` without this prefix: a stream's name as `STREAM_GROUPS` spells it."""
        return key.removeprefix(self.tag)

    def current(self, key: str) -> str:
        """`key` as named today: a key spelt the way it was before keys carried the hash tag (`prefix:name`)
        becomes `{prefix}:name`, any other is returned as it is (a client's spool may predate the tag)."""
        untagged = f"{self.prefix}:"
        return self.stream(key.removeprefix(untagged)) if key.startswith(untagged) else key

    def heartbeat(self, service: str) -> str:
        return f"{self.tag}alive:{service}"

    def writer(self, service: str) -> str:
        """The lease naming a service's one active writer (`services.writer`): the store's consumers take turns."""
        return f"{self.tag}writer:{service}"

    # -- real-time coordination (docs/COORDINATION.md) ------------------------------------------------

    def rate_limit(self, model: str, error_code: str | None = None) -> str:
        """Live limit of `model` for one error code, or for any code (None); expires with the limit."""
        base = f"{self.tag}rl:{key_part(model)}"
        return base if error_code is None else f"{base}:{key_part(error_code)}"

    @property
    def rate_limit_index(self) -> str:
        """Sorted set of live per-code limit keys, scored by expiry (ms): lists limits without SCAN."""
        return f"{self.tag}rl-index"

    def broadcast_once(self, message_id: str) -> str:
        """Marks a broadcast message id as published (so a redelivered source publishes nothing twice)."""
        return f"{self.tag}bc-once:{message_id}"

    def entropy(self, name: str) -> str:
        """The entropy service's shared state: `applications` (count), `tick` and `cooldown` (locks), `last`
        (the last evaluation's `PatternEntropyMetrics` JSON)."""
        return f"{self.tag}entropy:{name}"

    @property
    def triggers(self) -> str:
        return self.stream(TRIGGERS)

    def sessions(self, name: str, scope: str | None = None) -> str:
        """The consolidator's shared state: `lock` per scope (one session at a time), `cluster` counters and
        cooldowns per cluster signature, `tick` (the scheduled-trigger lock)."""
        base = f"{self.tag}sessions:{name}"
        return base if scope is None else f"{base}:{key_part(scope)}"

    def drift_alert(self, pattern_id: str) -> str:
        """Held for the drift cooldown after a pattern's drift alert, so replicas alert once."""
        return f"{self.tag}drift-alert:{key_part(pattern_id)}"
