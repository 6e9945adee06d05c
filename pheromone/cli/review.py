"""`pheromone review list|show|approve|reject`: the edits sessions staged, and the decisions on them.

Approving applies the edit (an `EditTransitioned` to `applied` the store applies to the guidance); rejecting
records why. Both wait until the store has applied the decision (`services.consolidator.review`).
"""

from __future__ import annotations

from typing import Annotated

import typer

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
    EditArg,
    SessionArg,
    TimeoutOpt,
    WorkspaceOpt,
    actor_name,
    artifacts_root,
    known,
    positive,
    send,
    store_view,
)
from pheromone.contracts.sessions import Edit
from pheromone.services.consolidator import review as rv
from pheromone.services.sessions import artifacts

review_app = typer.Typer(help="Edits sessions staged for review: list, show, approve, reject.",
                         no_args_is_help=True)


@review_app.command("list")
def list_(workspace: WorkspaceOpt = None, as_json: JsonOpt = False, data_dir: DataDirOpt = None,
          db: DbOpt = None) -> None:
    """Edits waiting for review, oldest first."""
    s = settings(data_dir=data_dir, db=db)
    with store_view(s) as view:
        rows = [(sid, Edit.model_validate_json(body)) for sid, _, body in view.staged(workspace)]
    if as_json:
        print_json([{"session_id": sid, **e.model_dump(mode="json")} for sid, e in rows])
        return
    table = Table(title="Edits staged for review (oldest first)", title_justify="left")
    for name in ("session", "edit", "workspace", "op", "target", "model", "tier", "rationale"):
        table.add_column(name, overflow="fold", no_wrap=name in ("session", "edit"))  # whole: approve takes them
    for sid, e in rows:
        table.add_row(sid, e.id, e.workspace, e.op.value, e.target or e.content or "", e.model or "",
                      e.risk_tier.value, e.rationale)
    console.print(table)
    console.print(f"[dim]{len(rows)} staged edit(s)[/dim]")


@review_app.command("show")
def show(session_id: SessionArg, edit_id: EditArg, as_json: JsonOpt = False, data_dir: DataDirOpt = None,
         db: DbOpt = None) -> None:
    """One edit of a session: what it changes, why, its gate scores and its status."""
    s = settings(data_dir=data_dir, db=db)
    with store_view(s) as view:
        status = view.edit_statuses(session_id).get(edit_id)
        record = artifacts.read_session(artifacts_root(s), session_id)
    outcome = next((o for o in record.outcomes if o.edit.id == edit_id), None)
    if outcome is None:
        raise CliError(f"session {session_id} has no edit {edit_id}")
    data = {**outcome.model_dump(mode="json"), "store_status": status.value if status else None}
    if as_json:
        print_json(data)
        return
    for key, value in {**outcome.edit.model_dump(mode="json", exclude_none=True), "status": data["store_status"],
                       "gate": outcome.reason}.items():
        console.print(f"[bold]{key}[/bold]: {value}", highlight=False)


@review_app.command("approve")
def approve(session_id: SessionArg, edit_id: EditArg, actor: ActorOpt = None, timeout: TimeoutOpt = 10.0,
            as_json: JsonOpt = False, redis_url: RedisUrlOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
            prefix: PrefixOpt = None) -> None:
    """Approve a staged edit: it is applied to the guidance jobs are served."""
    s = settings(redis_url, data_dir, db, prefix)
    positive(timeout)
    known(s, session_id)
    with store_view(s) as view:
        record = send(s, lambda k: k.ingest, [], lambda emit: rv.approve(
            view, emit, artifacts_root(s), session_id, edit_id, actor_name(actor), timeout))
    _done(as_json, session_id, edit_id, "applied", record.status.value)


@review_app.command("reject")
def reject(session_id: SessionArg, edit_id: EditArg,
           reason: Annotated[str, typer.Option("--reason", "-r", help="Why (required, recorded)")],
           actor: ActorOpt = None, timeout: TimeoutOpt = 10.0, as_json: JsonOpt = False,
           redis_url: RedisUrlOpt = None, data_dir: DataDirOpt = None, db: DbOpt = None,
           prefix: PrefixOpt = None) -> None:
    """Reject a staged edit, recording why; the guidance is unchanged."""
    s = settings(redis_url, data_dir, db, prefix)
    positive(timeout)
    if not reason.strip():
        raise CliError("--reason must not be empty")
    known(s, session_id)
    with store_view(s) as view:
        record = send(s, lambda k: k.ingest, [], lambda emit: rv.reject(
            view, emit, artifacts_root(s), session_id, edit_id, reason, actor_name(actor), timeout))
    _done(as_json, session_id, edit_id, "rejected", record.status.value)


def _done(as_json: bool, session_id: str, edit_id: str, status: str, session_status: str) -> None:
    if as_json:
        print_json({"session_id": session_id, "edit_id": edit_id, "status": status,
                    "session_status": session_status})
    else:
        console.print(f"edit {edit_id} of session {session_id}: {status} (session {session_status})")
