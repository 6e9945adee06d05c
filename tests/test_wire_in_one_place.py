"""The wire layout is written once (issue 13): envelopes reach streams through `pheromone.plumbing.append` only,
and key names are built in `contracts/streams.py` only. Read from the source, so a new module that XADDs by
hand or spells a key itself fails here before it disagrees with the others on the wire."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPEND = ROOT / "pheromone" / "plumbing" / "append.py"
STREAMS = ROOT / "contracts" / "streams.py"


def _sources() -> list[Path]:
    """Every module of the package once: contracts and services through their real folders, not the links."""
    found = [*(ROOT / "contracts").rglob("*.py"), *(ROOT / "services").rglob("*.py")]
    for path in (ROOT / "pheromone").rglob("*.py"):
        if path.relative_to(ROOT / "pheromone").parts[0] not in ("contracts", "services"):
            found.append(path)
    return sorted(found)


def _calls(tree: ast.AST, method: str) -> list[int]:
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method]


def _xadd_literals(tree: ast.AST) -> list[int]:
    """RESP written by hand: a bytes literal `XADD` (Lua scripts are str, and run server-side)."""
    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, bytes) and node.value.upper() == b"XADD"]


def test_the_sources_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in _sources()}
    assert {"pheromone/client.py", "services/transport.py", "contracts/streams.py", "pheromone/cli/dead.py",
            "pheromone/plumbing/append.py"} <= names
    assert not any(n.startswith(("pheromone/services/", "pheromone/contracts/")) for n in names)


def test_only_plumbing_append_writes_xadd() -> None:
    found = {}
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        if lines := _calls(tree, "xadd") + _xadd_literals(tree):
            found[path.relative_to(ROOT).as_posix()] = lines
    assert set(found) == {"pheromone/plumbing/append.py"}, found


def test_the_probe_sees_both_kinds_of_xadd() -> None:
    tree = ast.parse('pipe.xadd("s", {"e": b"{}"})\nsock.sendall(command(b"XADD", b"s", b"*"))\n'
                     'LUA = "redis.call(\'XADD\', KEYS[1], \'*\')"')
    assert _calls(tree, "xadd") == [1] and _xadd_literals(tree) == [2]


def _key_fstrings(tree: ast.AST) -> list[tuple[int, str]]:
    """f-strings that start with a `prefix` (bare or between braces, the hash tag) and go on with `:`, or that
    start with a key's `tag`: a key name spelt by hand."""
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.JoinedStr) or len(node.values) < 2:
            continue
        values = node.values
        if isinstance(values[0], ast.Constant) and values[0].value == "{":
            values = values[1:]  # f"{{{prefix}}}:..."
        head, after = values[0], values[1] if len(values) > 1 else None
        named = ast.unparse(head.value).lower() if isinstance(head, ast.FormattedValue) else ""
        prefixed = ("prefix" in named and isinstance(after, ast.Constant)
                    and str(after.value).startswith((":", "}:"))) or named.endswith("tag")
        if prefixed or any(isinstance(v, ast.Constant) and ":reply:" in str(v.value) for v in node.values):
            found.append((node.lineno, ast.unparse(node)))
    return found


def test_key_names_are_built_in_contracts_streams_only() -> None:
    found = {}
    for path in _sources():
        if path == STREAMS:
            continue
        if spelt := _key_fstrings(ast.parse(path.read_text(), str(path))):
            found[path.relative_to(ROOT).as_posix()] = spelt
    assert found == {}
    assert _key_fstrings(ast.parse(STREAMS.read_text()))  # the probe does find the ones that belong there


def test_the_key_probe_sees_a_reply_key_and_a_prefixed_key() -> None:
    tree = ast.parse('a = f"{keys.prefix}:reply:{token}"\nb = f"{s.prefix}:alive:{name}"\nc = f"{x}:{y}"\n'
                     'd = f"{{{prefix}}}:ingest"\ne = f"{keys.tag}writer:{name}"')
    assert [line for line, _ in _key_fstrings(tree)] == [1, 2, 4, 5]
