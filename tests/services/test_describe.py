"""A dead letter's reason is one bounded line, whatever names and values the hostile entry carried."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from pheromone.contracts import parse_envelope
from pheromone.plumbing.refusals import MAX_REASON
from pheromone.services.consumer import describe
from tests.services import helpers as h


def spoiled(**extra: object) -> bytes:
    body = h.envelope(h.outcome("esc-x")).model_dump(mode="json")
    return json.dumps({**body, **extra}).encode()


def test_a_newline_in_a_field_name_cannot_split_the_reason_or_forge_a_log_line() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_envelope(spoiled(**{"x\nWARNING forged\r": 1}))
    reason = describe(caught.value)
    assert "\n" not in reason and "\r" not in reason
    assert reason.startswith("invalid envelope: ") and "x\\nWARNING forged\\r" in reason


def test_a_huge_field_name_gives_a_bounded_reason() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_envelope(spoiled(**{"n" * 20_000: 1}))
    reason = describe(caught.value)
    assert len(reason) == MAX_REASON and reason.endswith("…")

