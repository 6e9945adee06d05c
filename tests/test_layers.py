"""The layers point one way, read from the source (every import, at module level or inside a function):

    pheromone.contracts  <-  pheromone.errors, pheromone.plumbing  <-  the client (pheromone/*.py)
                                                                   <-  pheromone.services, pheromone.cli

and the runtime, which imports every service, is imported by none of the modules it imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOMES = {"contracts": "pheromone.contracts", "services": "pheromone.services", "pheromone": "pheromone"}
"""Each top-level folder and the name it imports as (pheromone/contracts and pheromone/services link to them)."""


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for folder, package in HOMES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[0] in ("contracts", "services") and folder == "pheromone":
                continue  # the links, read through their real folders
            name = ".".join((package, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


MODULES = modules()


def imports(name: str) -> set[str]:
    """The project modules `name` imports: a `from package import module` counts as the module."""
    tree = ast.parse(MODULES[name].read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{name}: relative import"
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if f"{node.module}.{alias.name}" in MODULES}
    return {m for m in found if under(m, "pheromone")}


def under(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


CLIENT = sorted(m for m in MODULES if m.count(".") == 1 and m not in HOMES.values()
                and m not in ("pheromone.__main__", "pheromone.plumbing") and not under(m, "pheromone.cli"))
"""The job-side modules of pheromone/ (`python -m pheromone`, the CLI, is not one)."""


def test_the_client_modules_are_the_job_side() -> None:
    assert {"pheromone.client", "pheromone.subscriptions", "pheromone.ratelimits", "pheromone.queries",
            "pheromone.spool", "pheromone.sync", "pheromone.errors"} <= set(CLIENT)


@pytest.mark.parametrize("name", CLIENT)
def test_a_client_module_imports_no_service_and_no_cli(name: str) -> None:
    wrong = sorted(m for m in imports(name) if under(m, "pheromone.services", "pheromone.cli"))
    assert not wrong, f"{name} imports {wrong}: move what it needs down into pheromone.plumbing"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if under(m, "pheromone.plumbing", "pheromone.errors")))
def test_the_plumbing_imports_only_contracts_errors_and_itself(name: str) -> None:
    wrong = sorted(m for m in imports(name)
                   if not under(m, "pheromone.contracts", "pheromone.errors", "pheromone.plumbing"))
    assert not wrong, f"{name} imports {wrong}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if under(m, "pheromone.contracts")))
def test_the_contracts_import_only_themselves(name: str) -> None:
    wrong = sorted(m for m in imports(name) if not under(m, "pheromone.contracts"))
    assert not wrong, f"{name} imports {wrong}"


@pytest.mark.parametrize("name", sorted(m for m in MODULES if under(m, "pheromone.services")))
def test_a_service_module_imports_no_cli(name: str) -> None:
    wrong = sorted(m for m in imports(name) if under(m, "pheromone.cli"))
    assert not wrong, f"{name} imports {wrong}"


def test_nothing_the_runtime_imports_imports_the_runtime_back() -> None:
    runtime = "pheromone.services.runtime"
    seen: set[str] = set()
    todo = sorted(imports(runtime))
    while todo:
        name = todo.pop()
        if name not in seen and name in MODULES:
            seen.add(name)
            todo += sorted(imports(name))
    assert runtime not in seen, "a module the runtime imports (a service's build?) imports the runtime"
    assert "pheromone.services.store.service" in seen, "the runtime imports every service's build"
