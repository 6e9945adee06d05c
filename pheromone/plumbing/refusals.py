"""One-line reasons for refused input, the same on both sides: the query service's answer to arguments its
model refuses, and the client's refusal of the same arguments before sending them, read alike; a dead letter's
reason is written the same way."""

from __future__ import annotations

from pydantic import ValidationError

MAX_REASON = 1_000
"""Characters of a reason; a dead letter keeps the entry's own bytes whole beside it."""


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """Text quoted from a message (a field's name, a value) made safe for a reason or a log line: control
    characters escaped, so a newline in a hostile field name cannot split the line or forge a log line, and
    bounded in length."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def invalid(exc: ValidationError, what: str) -> str:
    """`invalid <what>: <field>: <why>; ...`, the first three of a validation's errors on one line."""
    first = exc.errors(include_url=False)[:3]
    parts = [f"{'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}" for e in first]
    more = f" (+{exc.error_count() - 3} more)" if exc.error_count() > 3 else ""
    return one_line(f"invalid {what}: {'; '.join(parts)}{more}")
