"""`services/store/` is the only place that speaks SQL: no string in the other packages' code is a statement.

An AST scan of every `.py` file under `contracts/`, `services/` (except `services/store/`) and `pheromone/`
(except the `pheromone/contracts` and `pheromone/services` links to the first two): each string constant,
and each literal part of an f-string, that is not a docstring is checked against the shape of a SQL
statement or clause (a keyword that starts one, followed by what that keyword takes), so prose that
mentions a table or says "select" does not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "services" / "store"
LINKS = (ROOT / "pheromone" / "contracts", ROOT / "pheromone" / "services")

SQL = re.compile(
    r"^\s*(?:"
    r"SELECT\s+[\w*(].*?\bFROM\b"
    r"|SELECT\s+\d"
    r"|INSERT\s+(?:OR\s+\w+\s+)?INTO\s+\w"
    r"|UPDATE\s+\w+\s+SET\b"
    r"|DELETE\s+FROM\s+\w"
    r"|(?:CREATE|DROP)\s+(?:UNIQUE\s+)?(?:TABLE|INDEX|VIEW|TRIGGER)\b"
    r"|PRAGMA\s+\w"
    r"|WITH\s+(?:RECURSIVE\s+)?\w+\s*(?:\([^)]*\))?\s+AS\s*\("
    r"|BEGIN(?:\s+(?:IMMEDIATE|EXCLUSIVE|DEFERRED))?\s*$"
    r"|(?:COMMIT|ROLLBACK)\s*$"
    r")"
    r"|\b(?:WHERE|AND|OR)\s+[\w.]+\s*(?:=|!=|<|>|<=|>=|IN|LIKE)\s*[?(]"
    r"|\bORDER\s+BY\s+[\w.]+(?:\s+(?:ASC|DESC))?\s*(?:,|LIMIT\b|$)"
    r"|\bON\s+CONFLICT\b",
    re.DOTALL,
)
"""A statement's opening (anchored), or a clause that binds a parameter or orders rows (anywhere): keywords in
capitals, as every statement in this code base writes them."""

def _sources() -> list[Path]:
    files = [*(ROOT / "contracts").rglob("*.py"), *(ROOT / "services").rglob("*.py"),
             *(ROOT / "pheromone").rglob("*.py")]
    return sorted(p for p in files if STORE not in p.parents and not any(link in p.parents for link in LINKS))


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring constants: a module's, class's or function's first statement, and the string
    right after an assignment (how this code base documents a constant)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        for i, stmt in enumerate(body):
            if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)):
                continue
            if i == 0 or isinstance(body[i - 1], ast.Assign | ast.AnnAssign):
                out.add(id(stmt.value))
    return out


def sql_in(source: str, name: str = "<source>") -> list[str]:
    """`line: text` of every non-docstring string in `source` shaped like SQL."""
    tree = ast.parse(source, name)
    docs = _docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            if SQL.search(node.value):
                found.append(f"{node.lineno}: {node.value.strip()[:80]}")
    return found


def _findings() -> dict[str, list[str]]:
    out = {}
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        hits = sql_in(path.read_text(), rel)
        if hits:
            out[rel] = hits
    return out


def test_no_sql_outside_the_store() -> None:
    found = _findings()
    assert found == {}, "SQL outside services/store/: ask the store's reads (StoreReads) or its writer instead"


def test_the_scan_tells_statements_from_prose() -> None:
    statements = [
        'Q = "SELECT body FROM ledger WHERE seq > ?"',
        'Q = """\nSELECT COUNT(*) FROM (SELECT 1 FROM t LIMIT ?)\n"""',
        'Q = "INSERT OR IGNORE INTO ledger VALUES (?, ?)"',
        'Q = "UPDATE patterns SET active = 0"',
        'Q = "DELETE FROM guidance WHERE workspace = ?"',
        'Q = "CREATE TABLE t (a)"',
        'conn.execute("PRAGMA busy_timeout=10000")',
        'Q = "WITH recent AS (SELECT 1) SELECT * FROM recent"',
        'F = "p.pattern_type = ?" ; G = " AND kind IN (?, ?)"',
        'conn.execute(f"SELECT * FROM session_index {where} ORDER BY started_us DESC, session_id DESC LIMIT ?")',
        'O = " ORDER BY p.priority_score DESC, p.id LIMIT ?"',
        'U = "INSERT INTO t VALUES (?) ON CONFLICT DO NOTHING"',
    ]
    prose = [
        '"""SELECT body FROM ledger: a docstring may show a statement."""',
        'X = 1\n"""The constant above: read with SELECT ... FROM ledger."""',
        'help = "Select patterns from the store by tag"',
        'msg = "the store at {path} has no session tables (run `pheromone serve` once to upgrade it)"',
        'msg = "where the data went, and commands to read it"',
        'x = "pattern_type"',
    ]
    for text in statements:
        assert sql_in(text) != [], text
    for text in prose:
        assert sql_in(text) == [], text
