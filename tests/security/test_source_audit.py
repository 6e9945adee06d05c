"""SQL is always parameterised, and nothing runs a shell: an AST audit of the packages' source.

Every `execute` / `executemany` / `executescript` call must get SQL that is a string constant, a module
constant (UPPER_CASE name), or built only from those. SQL assembled at run time (f-strings, `%`, `+`,
`.format`, `.join`) is allowed only in the functions of `TRUSTED_SQL`, each with the reason its interpolated
parts cannot come from a message: they are placeholders (`?`), column or table names from code, or fixed
fragments chosen by code. A new dynamic statement fails this test until it is reviewed and listed.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("contracts", "services", "pheromone")
SQL_CALLS = {"execute", "executemany", "executescript"}

TRUSTED_SQL: dict[tuple[str, str], str] = {
    ("services/store/reader.py", "events"): "WHERE clauses are fixed strings chosen by code; values are `?`",
    ("services/store/reader.py", "page"): "the same `_where` as events: fixed strings chosen by code; values `?`",
    ("services/store/reader.py", "job_event_count"): "the IN list is `?` repeated len(jobs); the jobs are `?`",
    ("services/store/learning_reads.py", "patterns"): "filters are constants; IN lists are `?` repeated len(tags)",
    ("services/store/learning_reads.py", "drift"): "`only` is one of two constant fragments chosen by a bool",
    ("services/store/learning_reads.py", "execution_stats"): "column names from a code tuple/dict; values `?`",
    ("services/store/learning_reads.py", "recovery_hours"): "column names from a code tuple; values `?`",
    ("services/store/learning_reads.py", "budget"): "`where` is the constant F_JOB_HASH or empty; the hash is `?`",
    ("services/store/learning_reads.py", "similar_escalations"): "one of SIMILAR_BY_OUTCOME (from OUTCOME_RANK)",
    ("services/store/projections.py", "guard_owner"): "the table name is asserted to be one of OWNED_TABLES (code)",
    ("services/store/db.py", "_rebuild_sync"): "table names from PROJECTION_TABLES (code)",
    ("services/store/db.py", "_checksum_sync"): "table names from PROJECTION_TABLES (code)",
    ("services/store/db.py", "_counts_sync"): "table names from PROJECTION_TABLES (code)",
    ("services/store/db.py", "_begin_on_loop"): "PRAGMA busy_timeout takes no parameter; the value is int()",
    ("services/store/schema.py", "connect"): "PRAGMA busy_timeout takes no parameter; the value is int()",
    ("services/store/schema.py", "migrate"): "statements of the MIGRATIONS constant; PRAGMA user_version of an int",
    ("services/store/session_store.py", "sessions"): "`where` is a fixed fragment or empty; the workspace is `?`",
    ("services/store/session_store.py", "staged"): "`where` is a fixed fragment or empty; the workspace is `?`",
    ("services/store/session_store.py", "guidance_checksum"): "table names from a code tuple; the workspace is `?`",
    ("services/store/read_conn.py", "execute"): "runs the read mixins' statements, reviewed where they are built",
    ("services/store/pg/reader.py", "execute"): "the read mixins' statements, rewritten by read_statement (no values)",
    ("services/store/pg/session_store.py", "execute"): "SessionStore's statements, rewritten by read_statement",
    ("services/store/pg/session_store.py", "executemany"): "SessionStore's statements, rewritten by read_statement",
    ("services/store/pg/read_sql.py", "nullable_columns"): "PRAGMA table_info of the in-memory schema's own tables",
    ("services/store/batch.py", "add_record"): "`upsert` is a projection's module constant (UPSERT_EXECUTION, ...)",
    ("services/store/batch.py", "write_records"): "the statements `add_record` was given: module constants",
    ("services/store/pg/conn.py", "execute"): "runs its callers' statements through translate(); values are bound",
    ("services/store/pg/conn.py", "executemany"): "runs its callers' statements through translate(); values bound",
    ("services/store/pg/schema.py", "migrate"): "statements of MIGRATIONS translated; the version table's name (code)",
    ("services/store/pg/schema.py", "table_info"): "PRAGMA table_info of the in-memory schema's own tables",
    ("services/store/pg/store.py", "conn"): "SET lock_timeout takes no parameter; the value is a module constant",
    ("services/store/pg/store.py", "_rebuild_sync"): "table names from PROJECTION_TABLES (code)",
    ("services/store/pg/store.py", "_checksum_sync"): "table names from PROJECTION_TABLES, column positions (code)",
    ("services/store/pg/store.py", "_counts_sync"): "table names from PROJECTION_TABLES (code)",
}
"""(file, enclosing function) -> why its run-time SQL cannot carry message data."""

SUBPROCESS_OK = {
    "pheromone/plumbing/embedded.py": "launches the server binary with an argv list (no shell) of paths and a port",
    "services/store/embedded_pg.py": "the test suite's PostgreSQL: argv lists (no shell) of paths, a port and a "
                                     "database name checked to be letters, digits and underscores",
}


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _constant_names(tree: ast.Module) -> set[str]:
    return {t.id for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            if isinstance(t, ast.Name) and t.id.isupper()}


def _is_static(node: ast.expr, constants: set[str], local: dict[str, list[ast.expr]], depth: int = 0) -> bool:
    """True when the expression is a constant string, a module constant, or a name only bound to those."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        if node.id in constants or node.id.isupper():
            return True
        values = local.get(node.id)
        return bool(values) and depth < 5 and all(_is_static(v, constants, local, depth + 1) for v in values)
    if isinstance(node, ast.IfExp):  # WAITS if a.model is None else WAITS_MODEL
        return _is_static(node.body, constants, local, depth + 1) and _is_static(node.orelse, constants, local,
                                                                                  depth + 1)
    if isinstance(node, ast.Subscript):  # e.g. SIMILAR_BY_OUTCOME[i]: an element of a module constant
        return _is_static(node.value, constants, local, depth + 1)
    return False


def _findings() -> tuple[list[str], list[str]]:
    sql: list[str] = []
    shells: list[str] = []
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        tree = ast.parse(path.read_text(), rel)
        constants = _constant_names(tree)
        functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        owner: dict[int, ast.FunctionDef | ast.AsyncFunctionDef] = {}
        for fn in sorted(functions, key=lambda f: f.lineno):  # a nested function starts later: innermost wins
            for inner in ast.walk(fn):
                owner[id(inner)] = fn
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            fn = owner.get(id(node))
            where = f"{rel}:{node.lineno} ({fn.name if fn else '<module>'})"
            if name in SQL_CALLS and node.args:
                local: dict[str, list[ast.expr]] = {}
                for stmt in ast.walk(fn) if fn else ():
                    if isinstance(stmt, ast.Assign):
                        for t in stmt.targets:
                            if isinstance(t, ast.Name):
                                local.setdefault(t.id, []).append(stmt.value)
                if not _is_static(node.args[0], constants, local) and (rel, fn.name if fn else "") not in TRUSTED_SQL:
                    sql.append(where)
            module = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
            if (module, name) in {("os", "system"), ("os", "popen"), ("os", "execv"), ("os", "execvp")} or (
                module == "subprocess" or name in {"create_subprocess_shell", "create_subprocess_exec"}
            ):
                if rel not in SUBPROCESS_OK:
                    shells.append(where)
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                shells.append(f"{where}: shell=")
    return sql, shells


def test_sql_is_constant_or_reviewed() -> None:
    sql, _ = _findings()
    assert sql == [], "SQL built at run time outside TRUSTED_SQL (bind values with `?`, or review and list it)"


def test_no_shell_and_no_subprocess_outside_the_embedded_server() -> None:
    _, shells = _findings()
    assert shells == []


def test_the_audit_sees_what_it_must_refuse(tmp_path: Path) -> None:
    """The checker itself: an f-string query is found, a constant or `?`-bound one is not."""
    constants: set[str] = {"QUERY"}
    bad = ast.parse('db.execute(f"SELECT * FROM t WHERE name = \'{name}\'")').body[0]
    good = ast.parse('db.execute(QUERY, (name,))').body[0]
    assert isinstance(bad, ast.Expr) and isinstance(bad.value, ast.Call)
    assert isinstance(good, ast.Expr) and isinstance(good.value, ast.Call)
    assert not _is_static(bad.value.args[0], constants, {})
    assert _is_static(good.value.args[0], constants, {})
    sql_local = ast.parse('sql = "SELECT " + column').body[0]
    assert isinstance(sql_local, ast.Assign)
    assert not _is_static(ast.Name("sql"), constants, {"sql": [sql_local.value]})


def test_every_trusted_entry_still_exists() -> None:
    """A stale allowlist entry would silently trust a future function of the same name: keep it exact."""
    for (rel, function), _why in TRUSTED_SQL.items():
        tree = ast.parse((ROOT / rel).read_text())
        assert any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == function
                   for n in ast.walk(tree)), (rel, function)
