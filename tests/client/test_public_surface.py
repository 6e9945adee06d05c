"""The client library's curated public surface, pinned (as httpx pins its `__all__`)."""

from __future__ import annotations

import inspect
import re
import types

import pytest

import pheromone
import pheromone.errors
from pheromone import (
    ClientError,
    FlushTimeout,
    Pheromone,
    QueryError,
    QueryTimeout,
)

EXPECTED_ALL = [
    "BroadcastKind",
    "BroadcastMessage",
    "ClientClosedError",
    "ClientError",
    "ClientStats",
    "EventQuery",
    "FlushTimeout",
    "Pheromone",
    "PheromoneError",
    "QueryError",
    "QueryTimeout",
    "RateLimitStatus",
    "Subscription",
    "SyncPheromone",
    "SyncSubscription",
    "TimeRange",
]


def test_all_is_pinned_and_sorted() -> None:
    assert pheromone.__all__ == EXPECTED_ALL
    assert sorted(set(pheromone.__all__)) == pheromone.__all__


def test_all_lists_every_public_name_and_nothing_else() -> None:
    for name in pheromone.__all__:  # the names load on first use (PEP 562): load them all
        getattr(pheromone, name)
    public = {
        name
        for name, value in vars(pheromone).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(pheromone.__all__)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'Pheromon'"):
        pheromone.Pheromon  # noqa: B018 - the lookup is the test


@pytest.mark.parametrize("name", EXPECTED_ALL)
def test_every_exported_name_imports(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from pheromone import {name}", namespace)
    assert namespace[name] is getattr(pheromone, name)
    assert namespace[name] is not None


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from pheromone import *", namespace)
    assert sorted(k for k in namespace if k != "__builtins__") == EXPECTED_ALL


def test_query_types_are_the_contracts_own() -> None:
    from pheromone import contracts

    assert pheromone.EventQuery is contracts.EventQuery
    assert pheromone.TimeRange is contracts.TimeRange


def drawn_tree(doc: str) -> list[tuple[str, str]]:
    """(child, parent) of every class a module docstring draws as a tree (`├──`, `└──`, four columns a level)."""
    edges: list[tuple[str, str]] = []
    parents: list[str] = []
    for line in doc.splitlines():
        match = re.match(r"^(\s*(?:[│ ]   )*)(?:[├└]── )?([A-Z]\w+)\b", line)
        if match is None or ("──" not in line and match.group(1) != "    "):
            continue  # neither a branch nor a root (four columns in)
        depth = (len(match.group(1)) - 4) // 4 + (1 if "──" in line else 0)
        if depth == 0:
            parents = [match.group(2)]
            continue
        del parents[depth:]
        edges.append((match.group(2), parents[depth - 1]))
        parents.append(match.group(2))
    return edges


def test_one_error_root_and_the_drawn_trees_are_true() -> None:
    from pheromone.plumbing import connection, embedded
    from pheromone.services import errors as service_errors

    homes = [pheromone.errors, connection, embedded, service_errors]
    drawn = drawn_tree(pheromone.errors.__doc__ or "") + drawn_tree(service_errors.__doc__ or "")
    assert ("QueryTimeout", "QueryError") in drawn and ("StoreBusyError", "StoreError") in drawn, drawn
    for child, parent in drawn:
        (cls,) = {getattr(m, child) for m in homes if hasattr(m, child)}
        (base,) = {getattr(m, parent) for m in homes if hasattr(m, parent)}
        assert issubclass(cls, base), f"{child} is drawn under {parent}"
    assert service_errors.PheromoneError is pheromone.PheromoneError
    assert issubclass(FlushTimeout, TimeoutError) and issubclass(QueryTimeout, TimeoutError)
    assert not issubclass(ClientError, TimeoutError) and not issubclass(QueryError, TimeoutError)


def test_emit_and_constructor_take_their_options_by_keyword() -> None:
    emit = inspect.signature(Pheromone.emit).parameters
    assert list(emit) == ["self", "record", "correlation_id", "occurred_at"]
    assert emit["record"].kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert {emit[n].kind for n in ("correlation_id", "occurred_at")} == {inspect.Parameter.KEYWORD_ONLY}

    init = inspect.signature(Pheromone.__init__).parameters
    assert [n for n, p in init.items() if p.kind is not inspect.Parameter.KEYWORD_ONLY] == ["self", "url"]
    assert init["workspace"].default is inspect.Parameter.empty  # required
    assert init["job"].default is inspect.Parameter.empty
