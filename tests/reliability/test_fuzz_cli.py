"""Hostile arguments for every command of the `pheromone` app (walked from the typer app, so commands added
later are fuzzed too) never produce a traceback: the command succeeds, or fails the way `pheromone.cli`
promises, with exit status 2 and either its one-line `error: …` (in its own words, not pydantic's or Redis's)
or the argument parser's usage block.

Commands run in this process through `pheromone.cli.main` (its error wrapper is what is under test), against
the session's Redis under the test's prefix and a store of the test's own. `serve` and `demo` run until
stopped or for seconds, so for them only the argument parsing is fuzzed (`make_context`), and their bodies'
own refusals are exercised with invalid `--only` names and out-of-range numbers, which stop them at once.
Paths are always inside the test's directory: a fuzzer must not write where it pleases.
"""

from __future__ import annotations

import asyncio
import os
import sys
import typing
from collections.abc import Iterator
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import typer.main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer._click.exceptions import ClickException
from typer.exceptions import Exit
from typer.testing import CliRunner

from pheromone.cli import app, main
from pheromone.services.store.db import Store
from tests.services import helpers as h

pytestmark = pytest.mark.slow

LONG_RUNNING = {("serve",), ("demo",)}
EXIT_CODES = {0, 2}
EXTRA_EXIT_CODES = {("health",): {1}, ("status",): {1}}
"""Documented verdicts, not errors: `health` exits 1 when a service is down (none runs here), `status` when
Redis cannot be reached (it still prints what is local)."""

RAW_MESSAGES = ("Value error,", "Assertion failed,", "ResponseError", "validation error for", "[type=")
"""What pydantic and redis-py put in their own messages: the CLI says it in a sentence naming the option."""

HOSTILE_TEXT = st.sampled_from([
    "", " ", "'; DROP TABLE ledger; --", "\" OR 1=1 --", "%s%s%n", "{0}", "${HOME}", "$(reboot)", "`id`",
    "../../../../etc/passwd", "x" * 100_000, "\u202eevil", "😀" * 50, "NaN", "-1", "1e309", "[red]markup[/red]",
    "\n\nline", "\t", "null", "[]", "{}", "0x10", "-", "--", "-n",
])
TEXT = HOSTILE_TEXT | st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)
"""NUL and lone surrogates cannot reach a real argv, so they are left out."""
INTS = st.integers().map(str) | st.sampled_from(["2" * 400, "-0", "1.5", "1e9", "nan", "inf", "0"])
FLOATS = (st.floats().map(repr) | st.sampled_from(["nan", "-nan", "inf", "-inf", "1e-400", "1e400", "0", "-0.0"])
          | st.integers().map(str))
DATES = (st.datetimes().map(datetime.isoformat) | st.sampled_from(["0001-01-01", "9999-12-31T23:59:59",
         "2024-02-30", "2024-05-01T25:00", "2024-05-01T00:00+99:00"]))


def command_paths() -> list[tuple[tuple[str, ...], Any]]:
    """(path, command) for every command of the app that runs something (groups' own options included)."""
    out: list[tuple[tuple[str, ...], Any]] = []

    def walk(command: Any, path: tuple[str, ...]) -> None:
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            out.append(((*path, name), sub))
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return out


COMMANDS = command_paths()


def paths(root: Path) -> st.SearchStrategy[str]:
    good = ["data", "data/store.db"]
    bad = ["missing.db", "text.txt", "dir", "new/deeper/out.json", "[/x]", "spool", "a b#c?.db", "../up/x"]
    return (st.sampled_from(good) | st.sampled_from(bad)).map(lambda n: str(root / "fuzz" / n))


IDENT = st.from_regex(r"[a-z][a-z0-9_.-]{0,15}", fullmatch=True)


def values(param: Any, root: Path, command: Any) -> st.SearchStrategy[str]:
    """Strings for one parameter: often a plausible value (so the command's body runs), else an out-of-range
    one of its type or hostile text."""
    annotation = param.type_descriptor.annotation
    if typing.get_origin(annotation) is list:
        annotation = typing.get_args(annotation)[0]
    if annotation is Path:
        return paths(root)  # never hostile text: a path from the fuzzer could point anywhere
    if param.name == "redis_url":
        bad = ["http://x", "redis://", "unix:///nope", "rediss://127.0.0.1:1/0", "redis://:pw@127.0.0.1:1/0"]
        if not any(p.name == "timeout" for p in command.params):
            bad.append("redis://127.0.0.1:1/0")  # refused; with a fuzzed --timeout it would wait as told
        return st.sampled_from(bad)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        plausible: st.SearchStrategy[str] = st.sampled_from([m.value for m in annotation])
        hostile: st.SearchStrategy[str] = st.nothing()
    elif annotation is int:
        plausible, hostile = st.integers(0, 200).map(str), INTS
    elif annotation is float:
        plausible, hostile = st.floats(0, 1).map(repr) | st.sampled_from(["0.5", "1", "30"]), FLOATS
    elif annotation is datetime:
        plausible = st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)).map(datetime.isoformat)
        hostile = DATES
    else:
        plausible, hostile = IDENT, st.nothing()
    return st.one_of(plausible, plausible, plausible, hostile, TEXT)


@st.composite
def argv(draw: st.DrawFn, path: tuple[str, ...], root: Path) -> list[str]:
    command = dict(COMMANDS)[path]
    args: list[str] = list(path)
    for param in command.params:
        if param.param_type_name == "argument":
            if draw(st.integers(0, 4)):  # usually given
                count = draw(st.integers(1, 3)) if param.nargs < 0 else 1
                args += [draw(values(param, root, command)) for _ in range(count)]
            continue
        if draw(st.integers(0, 9)) >= (9 if param.required else 3):
            continue  # three in ten optional options are given, nine in ten required ones
        opt = draw(st.sampled_from(param.opts))
        if getattr(param, "is_flag", False):
            args.append(opt)
            continue
        for _ in range(draw(st.integers(1, 3)) if param.multiple else 1):
            args += [opt, draw(values(param, root, command))]
    if draw(st.integers(0, 9)) == 0:  # now and then an unknown option or a stray argument
        args.insert(draw(st.integers(len(path), len(args))), draw(st.sampled_from(["--bogus", "stray", "-z"])))
    return args


def invoke(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run `pheromone ARGS` through `main()` in this process; an exception that escapes it fails the test."""
    with CliRunner().isolation(env=env) as (out, err, _):
        saved = sys.argv
        sys.argv = ["pheromone", *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = saved
        return code, out.getvalue().decode(errors="replace"), err.getvalue().decode(errors="replace")


def check(path: tuple[str, ...], args: list[str], code: int, out: str, err: str) -> None:
    shown = f"pheromone {' '.join(repr(a) if len(a) < 80 else repr(a[:80]) + '…' for a in args)} -> exit {code}"
    assert "Traceback" not in out + err, f"{shown}\n{err}"
    assert code in EXIT_CODES | EXTRA_EXIT_CODES.get(path, set()), f"{shown}\nstdout: {out[-500:]}\n{err}"
    if code == 2 and "Usage:" not in out + err:  # else the parser's usage block (or a group's help)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{shown}: not a one-line error\n{out}{err}"
        leaked = [raw for raw in RAW_MESSAGES if raw in err]
        assert not leaked, f"{shown}: pydantic's or Redis's own words in the error\n{err}"


@pytest.fixture
def cli_root(tmp_path: Path, prefix: str, redis_url: str) -> Iterator[tuple[Path, dict[str, str]]]:
    """The test's directory (a store with some events, a text file, a directory) and the CLI environment."""
    fuzz = tmp_path / "fuzz"
    (fuzz / "dir").mkdir(parents=True)
    (fuzz / "text.txt").write_text("not a database\n")
    (fuzz / "data").mkdir()
    events = [h.envelope(h.observed("fuzz me")), h.envelope(h.applied("fuzz me", True)),
              h.envelope(h.execution()), h.envelope(h.recovery()), h.envelope(h.escalation()),
              h.envelope(h.evolution()), h.envelope(h.budget())]

    async def fill() -> None:
        async with Store(fuzz / "data" / "store.db") as store:
            await store.apply([(e, e.model_dump_json()) for e in events])

    asyncio.run(fill())
    env = {"PHEROMONE_REDIS_URL": redis_url, "PHEROMONE_PREFIX": prefix, "PHEROMONE_DATA_DIR": str(fuzz / "data"),
           "XDG_DATA_HOME": str(fuzz / "xdg"), "COLUMNS": "120"}
    yield tmp_path, env


EXAMPLES = int(os.environ.get("PHEROMONE_FUZZ_EXAMPLES", "12"))
"""Argument lists per command (12: about a second per command in CI; docs/RELIABILITY.md records a deeper run)."""


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=" ".join)
def test_hostile_arguments_never_produce_a_traceback(
    cli_root: tuple[Path, dict[str, str]], path: tuple[str, ...]
) -> None:
    root, env = cli_root
    bodies = 0

    @settings(max_examples=EXAMPLES, database=None, derandomize=True, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(argv(path, root))
    def fuzz(args: list[str]) -> None:
        if path in LONG_RUNNING:
            parse_only(path, args)
            return
        nonlocal bodies
        code, out, err = invoke(args, env)
        check(path, args, code, out, err)
        bodies += code != 2 or "Usage:" not in out + err  # past the parser: the command's own code ran

    fuzz()
    if path not in LONG_RUNNING and dict(COMMANDS)[path].params:
        assert bodies, f"no argument list got past the parser into {path}'s body: the fuzzer tests nothing"


def parse_only(path: tuple[str, ...], args: list[str]) -> None:
    """Parse and convert `args` for a long-running command without running it: a clean result or a usage
    error (exit 2), never another exception."""
    command = dict(COMMANDS)[path]
    try:
        with command.make_context(" ".join(path), args[len(path):]):
            pass
    except ClickException as exc:
        assert exc.exit_code == 2, (args, exc)
    except Exit as exc:
        assert exc.exit_code == 0, (args, exc)


@pytest.mark.parametrize("args", [
    ["serve", "--only", "'; DROP TABLE ledger; --"],
    ["serve", "--only", "x" * 10_000],
    ["serve", "--only", "store", "--only", "../store"],
    ["serve", "--prefix", "bad prefix!"],
    ["serve", "--redis-url", "http://x"],
    ["demo", "--seconds", "nan"],
    ["demo", "--seconds", "1e400"],
    ["demo", "--workspaces", "0"],
    ["demo", "--rate", "-inf"],
    ["demo", "--jobs", "2" * 400],
])
def test_long_running_commands_refuse_hostile_arguments_before_starting(
    cli_root: tuple[Path, dict[str, str]], args: list[str]
) -> None:
    code, out, err = invoke(args, cli_root[1])
    assert code == 2
    check((args[0],), args, code, out, err)
