"""Learning sessions' commands (docs/SESSIONS.md): `sessions list|show|run|rollback|reindex`, `review
list|show|approve|reject`, `flag ID` and `playbook`.

Reads open the store file and the session artifacts directly; actions send their events through Redis (the
triggers stream for `run` and `flag`, the ingest stream for review, rollback and playbook text) and, for the
ones that change guidance, wait until the store has applied them. Every refusal is one line, exit status 2.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from pheromone.cli import review
from pheromone.cli.common import (
    CliError,
    DataDirOpt,
    DbOpt,
    JsonOpt,
    PrefixOpt,
    RedisUrlOpt,
    Table,
    console,
    print_json,
    settings,
)
from pheromone.cli.session_common import (
    ActorOpt,
    SessionArg,
    TimeoutOpt,
    WorkspaceOpt,
    actor_name,
    artifacts_root,
    known,
    positive,
    read,
    send,
    store_view,
    workspace_name,
)
from pheromone.contracts import Envelope
from pheromone.contracts.query_args import PlaybookArgs
from pheromone.contracts.sessions import AutonomyMode, EditStatus, PlaybookWritten, SessionTrigger, TriggerKind
from pheromone.services.consolidator import review as rv
from pheromone.services.query.sessions import playbook as playbook_of
from pheromone.services.sessions import artifacts
from pheromone.services.settings import Settings
from pheromone.services.store.location import describe, is_postgres
from pheromone.services.store.reads import StoreReads

sessions_app = typer.Typer(help="Learning sessions: list, show, run, roll back, reindex.", no_args_is_help=True)
FINAL = ("completed", "awaiting_review", "failed", "rolled_back")


def register(app: typer.Typer) -> None:
    app.add_typer(sessions_app, name="sessions")
    app.add_typer(review.review_app, name="review")
    app.command("flag")(flag)
    app.command("playbook")(playbook)


# -- sessions ------------------------------------------------------------------------------------------------


@sessions_app.command("list")
def list_(workspace: WorkspaceOpt = None,
          limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many")] = 20,
          as_json: JsonOpt = False, data_dir: DataDirOpt = None, db: DbOpt = None) -> None:
    """Sessions, newest first."""
    if not 1 <= limit <= 1_000:
        raise CliError("--limit must be between 1 and 1000")
    s = settings(data_dir=data_dir, db=db)
    workspace = workspace_name(workspace) if workspace is not None else None
    with store_view(s) as view:
        rows = view.sessions(workspace, limit)
    if as_json:
        print_json(rows)
        return
    table = Table(title="Learning sessions (newest first)", title_justify="left")
    for name in ("session", "workspace", "status", "trigger", "applied", "staged", "rejected", "val before/after"):
        table.add_column(name, no_wrap=name != "workspace")
    for r in rows:
        score = "" if r["score_before"] is None else f"{r['score_before']:.3f} -> {r['score_after']:.3f}"
        table.add_row(r["session_id"], r["workspace"], r["status"], r["trigger"], str(r["applied"]),
                      str(r["staged"]), str(r["rejected"]), score)
    console.print(table)
    console.print(f"[dim]{len(rows)} session(s)[/dim]")


@sessions_app.command("show")
def show(session_id: SessionArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None, db: DbOpt = None) -> None:
    """One session: its report, edits and benchmark snapshots (from its session.json)."""
    s = settings(data_dir=data_dir, db=db)
    try:
        record = artifacts.read_session(artifacts_root(s), session_id)
    except artifacts.ArtifactError as exc:
        raise CliError(str(exc)) from exc
    if as_json:
        print_json(record.model_dump(mode="json"))
        return
    console.print(f"[bold]{record.id}[/bold] in {record.workspace}: {record.status.value} "
                  f"({record.trigger.value}, autonomy {record.autonomy.value}, teacher {record.teacher})")
    if record.error:
        console.print(f"error: {record.error}")
    report = record.report
    if report is not None:
        console.print(f"harvested {report.n_sessions} job run(s), mined {report.n_tasks} task(s); "
                      f"val score {report.baseline_score:.4f} -> {report.candidate_score:.4f}"
                      + (f"; no edits: {report.no_edits_reason}" if report.no_edits_reason else ""),
                      highlight=False)
    edits = Table(title="Edits", title_justify="left")
    edits.add_column("edit", no_wrap=True)  # whole: `review approve` takes it
    for name in ("op / model", "status", "reason"):
        edits.add_column(name, overflow="fold")
    for o in record.outcomes:  # target, tier and rationale: `pheromone review show SESSION EDIT`
        e = o.edit
        edits.add_row(e.id, f"{e.op.value}{' / ' + e.model if e.model else ''}", o.status.value, o.reason)
    console.print(edits)
    snaps = Table("label", "split", "score", "tasks", title="Benchmark snapshots", title_justify="left")
    for x in record.snapshots:
        snaps.add_row(x.label, x.split, f"{x.score:.4f}", str(x.tasks))
    console.print(snaps)


@sessions_app.command("run")
def run(workspace: Annotated[str, typer.Option("--workspace", "-w", help="Workspace to consolidate")],
        autonomy: Annotated[AutonomyMode | None, typer.Option("--autonomy", help="Override the autonomy mode")] = None,
        wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the session to end (0: don't)")] = 0.0,
        as_json: JsonOpt = False, redis_url: RedisUrlOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
        prefix: PrefixOpt = None) -> None:
    """Ask the consolidator for a session now (an on-demand trigger)."""
    if not 0 <= wait <= 3600:
        raise CliError("--wait must be in [0, 3600] seconds")
    s = settings(redis_url, data_dir, db, prefix)
    workspace = workspace_name(workspace)
    trigger = SessionTrigger(trigger=TriggerKind.ON_DEMAND, scope=workspace, autonomy=autonomy,
                             requested_by=actor_name(None))
    env = Envelope(workspace=workspace, job="cli", payload=trigger)
    send(s, lambda k: k.triggers, [env])
    result: dict[str, Any] = {"trigger_id": env.event_id, "workspace": workspace, "session": None}
    if wait > 0:
        result["session"] = _await_session(s, env.event_id, wait)
    if as_json:
        print_json(result)
    elif result["session"] is None:
        console.print(f"sent trigger {env.event_id} for {workspace}")
    else:
        r = result["session"]
        console.print(f"session {r['session_id']} in {workspace}: {r['status']} ({r['applied']} applied, "
                      f"{r['staged']} staged, {r['rejected']} rejected)")


def _await_session(s: Settings, trigger_id: str, wait: float) -> dict[str, Any]:
    deadline = time.monotonic() + wait
    while True:
        if is_postgres(s.store) or s.store_path.exists():
            found = read(s, lambda reads: reads.session_of_trigger(trigger_id))
            if found is not None and found["status"] in FINAL:
                return found
        if time.monotonic() >= deadline:
            raise CliError(f"sent trigger {trigger_id}, but no session ended within {wait:g}s "
                           "(is the consolidator running? `pheromone serve --only consolidator`)")
        time.sleep(0.1)


@sessions_app.command("rollback")
def rollback(session_id: SessionArg,
             reason: Annotated[str, typer.Option("--reason", "-r", help="Why (recorded)")] = "operator rollback",
             actor: ActorOpt = None, timeout: TimeoutOpt = 10.0, as_json: JsonOpt = False,
             redis_url: RedisUrlOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
             prefix: PrefixOpt = None) -> None:
    """Revert every edit a session applied (exactly, newest first) and reject the ones still staged."""
    s = settings(redis_url, data_dir, db, prefix)
    positive(timeout)
    known(s, session_id)
    with store_view(s) as view:
        record = send(s, lambda k: k.ingest, [], lambda emit: rv.rollback(
            view, emit, artifacts_root(s), session_id, reason, actor_name(actor), timeout))
    undone = [o.edit.id for o in record.outcomes if o.status is EditStatus.ROLLED_BACK]
    if as_json:
        print_json({"session_id": session_id, "status": record.status.value, "rolled_back": undone})
    else:
        console.print(f"session {session_id} rolled back ({len(undone)} edit(s) reverted)")


@sessions_app.command("reindex")
def reindex(as_json: JsonOpt = False, data_dir: DataDirOpt = None, db: DbOpt = None) -> None:
    """Rebuild the session index in SQLite from the session.json artifacts."""
    s = settings(data_dir=data_dir, db=db)
    with store_view(s) as view:
        count, bad = view.reindex(artifacts_root(s))
    if as_json:
        print_json({"indexed": count, "unreadable": bad})
    else:
        console.print(f"indexed {count} session(s)" + (f"; unreadable: {', '.join(bad)}" if bad else ""))


# -- flag and playbook ---------------------------------------------------------------------------------------


def flag(record_id: Annotated[str, typer.Argument(help="Execution id or event id to flag as a failure")],
         workspace: WorkspaceOpt = None, as_json: JsonOpt = False, redis_url: RedisUrlOpt = None,
         data_dir: DataDirOpt = None, db: DbOpt = None, prefix: PrefixOpt = None) -> None:
    """Flag a record as a failure and ask for a session in its workspace (a user-flag trigger)."""
    s = settings(redis_url, data_dir, db, prefix)
    if workspace is not None:
        workspace = workspace_name(workspace)
    else:
        with store_view(s) as view:
            workspace = view.workspace_of(record_id)
        if workspace is None:
            raise CliError(f"no execution or event {record_id!r} in the store (pass --workspace to flag it anyway)")
    env = Envelope(workspace=workspace, job="cli", payload=SessionTrigger(
        trigger=TriggerKind.USER_FLAG, scope=workspace, subject=record_id, requested_by=actor_name(None)))
    send(s, lambda k: k.triggers, [env])
    if as_json:
        print_json({"trigger_id": env.event_id, "workspace": workspace, "flagged": record_id})
    else:
        console.print(f"flagged {record_id} in {workspace} (trigger {env.event_id})")


def playbook(workspace: WorkspaceOpt = None,
             set_file: Annotated[Path | None, typer.Option("--set", help="Replace the hand-written text with this "
                                                          "file's (the learned block is kept)")] = None,
             timeout: TimeoutOpt = 10.0, as_json: JsonOpt = False, redis_url: RedisUrlOpt = None,
             data_dir: DataDirOpt = None, db: DbOpt = None, prefix: PrefixOpt = None) -> None:
    """Print a workspace's playbook (every workspace's without --workspace), or set its hand-written text."""
    s = settings(redis_url, data_dir, db, prefix)
    workspace = workspace_name(workspace) if workspace is not None else None
    if set_file is not None:
        _set_playbook(s, workspace, set_file, positive(timeout))

    async def books_of(reads: StoreReads) -> dict[str, str]:
        names = [workspace] if workspace else await reads.playbook_workspaces()
        return {w: (await playbook_of(reads, PlaybookArgs(workspace=w)))["markdown"] for w in names}

    books = read(s, books_of)
    if as_json:
        print_json(books if workspace is None else {"workspace": workspace, "markdown": books[workspace]})
        return
    if not books:  # nothing to print verbatim: say why rather than print nothing
        console.print(f"no playbook yet in {describe(s.store)}: no hand-written text was set and no learning "
                      "session has applied a playbook edit (`pheromone sessions list`); "
                      "`pheromone playbook --workspace W` prints what a job of W is served, `--set FILE` writes its "
                      "hand-written text", highlight=False)
        return
    for w, text in books.items():
        if workspace is None:
            sys.stdout.write(f"== {w} ==\n")
        sys.stdout.write(text)  # verbatim: a playbook goes into prompts, never re-wrapped


def _set_playbook(s: Settings, workspace: str | None, path: Path, timeout: float) -> None:
    if workspace is None:
        raise CliError("--set needs --workspace")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}") from exc
    env = Envelope(workspace=workspace, job="cli", payload=PlaybookWritten(workspace=workspace, text=text,
                                                                          actor=actor_name(None)))
    with store_view(s) as view:
        send(s, lambda k: k.ingest, [env], lambda emit: rv.wait_applied(view, env.event_id, timeout))
