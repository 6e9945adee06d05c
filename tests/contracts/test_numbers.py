"""Every number a contract accepts can be stored in SQLite and printed as standard JSON.

One rule over every numeric field of every contract, found by walking the models' fields (nested models,
optionals, lists and dicts included): whatever value a field accepts is an integer in [-MAX_INT, MAX_INT]
or a finite float in [-MAX_FLOAT, MAX_FLOAT] (contracts/types.py says why those bounds).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
import types
import typing
from typing import Annotated, Any

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from pheromone import contracts
from pheromone.contracts.types import MAX_FLOAT, MAX_INT

Leaf = tuple[str, Any, type]  # (model.field, the annotated numeric type, int or float)


def _models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for info in pkgutil.iter_modules(contracts.__path__):
        module = importlib.import_module(f"pheromone.contracts.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseModel) and obj.__module__.startswith("pheromone.contracts."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def _leaves(where: str, annotation: Any, metadata: tuple[Any, ...] = ()) -> list[Leaf]:
    """The numeric types inside a field's annotation, each with the constraints that apply to it."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        base, *meta = typing.get_args(annotation)
        return _leaves(where, base, (*metadata, *meta))
    if annotation in (int, float):
        typed = Annotated[(annotation, *metadata)] if metadata else annotation
        return [(where, typed, annotation)]
    if origin in (typing.Union, types.UnionType, list, dict, tuple, set, frozenset):
        # Constraints on a container (max_length) do not apply to its items.
        return [leaf for arg in typing.get_args(annotation) for leaf in _leaves(where, arg)]
    return []  # bool, str, datetime, enums, literals, nested models (walked as models of their own)


def _all_leaves() -> list[Leaf]:
    leaves: list[Leaf] = []
    for model in _models():
        for name, info in model.model_fields.items():
            leaves += _leaves(f"{model.__name__}.{name}", info.annotation, tuple(info.metadata))
    return leaves


LEAVES = _all_leaves()
LAX = ConfigDict(strict=False, allow_inf_nan=False)
"""Lax accepts a superset of what the strict models accept, so a bound that holds here holds for them."""
PROBES = [MAX_INT + 1, 2**63, 2**70, -(MAX_INT + 1), -(2**63) - 1, -(2**70), MAX_FLOAT * 1.000001, 1e13,
          -1e13, 1e308, -1e308, sys.float_info.max]


def test_the_walk_finds_the_numbers() -> None:
    names = {where for where, _, _ in LEAVES}
    # The fields the bug report named, and ones inside optionals, lists, dicts and nested models.
    assert {"ExecutionRecord.retry_count", "ExecutionRecord.duration_seconds", "PatternRecord.variance",
            "SuccessFactors.grounding_confidence", "BenchmarkSnapshot.per_cluster", "RateLimitStatus.seconds_left",
            "DriftMetrics.window_size", "Envelope.schema_version"} <= names
    assert len(LEAVES) > 80


def _check(where: str, typed: Any, kind: type, value: int | float) -> None:
    try:
        accepted = TypeAdapter(typed, config=LAX).validate_python(value)
    except ValidationError:
        return
    if kind is int:
        assert isinstance(accepted, int) and -MAX_INT <= accepted <= MAX_INT, (where, value, accepted)
    else:
        assert -MAX_FLOAT <= accepted <= MAX_FLOAT, (where, value, accepted)


def test_no_field_accepts_a_number_past_the_bounds() -> None:
    for where, typed, kind in LEAVES:
        for value in PROBES:
            _check(where, typed, kind, value)


@settings(max_examples=300, deadline=None)
@given(leaf=st.sampled_from(LEAVES), value=st.integers() | st.floats(allow_nan=False, allow_infinity=False))
def test_any_accepted_number_is_within_the_bounds(leaf: Leaf, value: int | float) -> None:
    _check(*leaf, value)
