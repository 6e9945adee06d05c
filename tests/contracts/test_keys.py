"""Key names (`contracts.streams.Keys`): one hash slot per prefix, and prefixes that cannot break the tag."""

from __future__ import annotations

import inspect
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from redis.crc import key_slot

from pheromone.contracts.queries import QueryRequest
from pheromone.contracts.streams import PREFIX_PATTERN, REPLY_KEY_PATTERN, STREAM_GROUPS, Keys
from pheromone.plumbing.settings import ConnectionSettings

prefixes = st.from_regex(rf"\A{PREFIX_PATTERN}\Z")


def every_key(keys: Keys) -> list[str]:
    """Every key `keys` builds: each property, and each method called with a hostile name."""
    built = [keys.stream(name) for name in (*STREAM_GROUPS, "dead", "broadcast")]
    for name, member in inspect.getmembers(type(keys)):
        if isinstance(member, property):
            built.append(getattr(keys, name))
    odd = "a b:{c}\u00e9\n" * 3
    built += [keys.reply("0" * 32), keys.heartbeat(odd), keys.writer(odd), keys.rate_limit(odd),
              keys.rate_limit(odd, odd), keys.broadcast_once(odd), keys.entropy(odd), keys.sessions(odd),
              keys.sessions(odd, odd), keys.drift_alert(odd)]
    return built


@given(prefixes)
def test_every_key_of_a_prefix_hashes_to_one_slot(prefix: str) -> None:
    keys = Keys(prefix)
    built = every_key(keys)
    assert len({key_slot(k.encode()) for k in built}) == 1
    assert all(k.startswith(f"{{{prefix}}}:") and keys.owns(k) for k in built)
    assert keys.short(keys.ingest) == "ingest"


def test_the_untagged_names_would_spread_over_slots() -> None:
    """The same names without braces land in many slots: the tag is what keeps them together."""
    assert len({key_slot(k.replace("{", "").replace("}", "").encode()) for k in every_key(Keys())}) > 5


def test_reply_keys_of_any_prefix_match_the_contract_pattern() -> None:
    keys = Keys("p.1-x_Y")
    reply = keys.reply("ab" * 16)
    assert re.fullmatch(REPLY_KEY_PATTERN, reply) and re.fullmatch(keys.reply_pattern(), reply)
    assert QueryRequest(op="events", args={}, reply=reply).reply == reply
    for wrong in ("p:reply:" + "ab" * 16, "{p}}:reply:" + "ab" * 16, "{{p}:reply:" + "ab" * 16):
        assert not re.fullmatch(REPLY_KEY_PATTERN, wrong)
        with pytest.raises(ValidationError):
            QueryRequest(op="events", args={}, reply=wrong)


@pytest.mark.parametrize("prefix", ["{pheromone}", "a{b", "a}b", "{}"])
def test_a_prefix_with_a_brace_is_refused_in_one_line(prefix: str) -> None:
    with pytest.raises(ValueError, match="holds a brace: pheromone puts the prefix between braces itself") as exc:
        Keys(prefix)
    assert "\n" not in str(exc.value)
    with pytest.raises(ValidationError, match="holds a brace"):
        ConnectionSettings(prefix=prefix)


@pytest.mark.parametrize("prefix", ["", "a b", "a:b", "x" * 65])
def test_other_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="must be 1 to 64 letters"):
        Keys(prefix)
