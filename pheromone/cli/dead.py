"""`pheromone dead list|replay`: inspect and re-inject dead letters."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any, cast

import typer

from pheromone.cli.common import (
    CliError,
    DataDirOpt,
    JsonOpt,
    PrefixOpt,
    RedisUrlOpt,
    Table,
    console,
    print_json,
    redis_url_for,
    settings,
)
from pheromone.contracts.streams import Keys, read_dead_letter
from pheromone.plumbing.append import add_entry
from pheromone.plumbing.connection import redis_client
from pheromone.services.transport import Entry

STREAM_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")


def is_stream_id(text: str) -> bool:
    """A Redis stream entry id as XADD makes them: milliseconds-sequence, each an unsigned 64-bit integer."""
    match = STREAM_ID.fullmatch(text)
    return match is not None and all(int(part) < 2**64 for part in match.groups())


app = typer.Typer(help="Dead letters: entries that could not be parsed or applied.", no_args_is_help=True)


def _decode(letter_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    own, original = read_dead_letter(fields)
    payload = {k.decode(errors="replace"): v.decode(errors="replace") for k, v in original.items()}
    return {"dead_id": letter_id.decode(), **own, "fields": payload}


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=10_000)] = 50,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    data_dir: DataDirOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Show the newest dead letters with their error."""
    s = settings(redis_url, data_dir, prefix=prefix)

    async def run(url: str) -> list[dict[str, Any]]:
        r = redis_client(url)
        try:
            rows = cast(list[Entry], await r.xrevrange(Keys(s.prefix).dead, count=limit))
        finally:
            await r.aclose()
        return [_decode(i, f) for i, f in reversed(rows)]

    with redis_url_for(s) as url:
        letters = asyncio.run(run(url))
    if as_json:
        print_json(letters)
        return
    table = Table("dead_id", "stream", "group", "deliveries", "error")
    for d in letters:
        table.add_row(d["dead_id"], d.get("stream", ""), d.get("group", ""), d.get("deliveries", ""),
                      d.get("error", "")[:120])
    console.print(table)
    console.print(f"[dim]{len(letters)} dead letter(s)[/dim]")


@app.command("replay")
def replay(
    ids: Annotated[list[str] | None, typer.Argument(help="Dead-letter ids to replay")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Replay every dead letter")] = False,
    as_json: JsonOpt = False,
    redis_url: RedisUrlOpt = None,
    data_dir: DataDirOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Put dead letters back on their original stream (byte for byte) and remove them from the dead stream."""
    if not ids and not all_:
        raise CliError("name dead-letter ids to replay, or pass --all")
    for dead_id in ids or ():
        if not is_stream_id(dead_id):  # else Redis answers "ResponseError: Invalid stream ID ..."
            raise CliError(f"{dead_id!r} is not a dead-letter id (ids look like 1700000000000-0: the dead_id "
                           "column of `pheromone dead list`)")
    s = settings(redis_url, data_dir, prefix=prefix)
    keys = Keys(s.prefix)

    async def run(url: str) -> list[str]:
        r = redis_client(url)
        try:
            rows: list[Entry]
            if all_:
                rows = cast(list[Entry], await r.xrange(keys.dead))
            else:
                rows = []
                for dead_id in ids or ():
                    found = cast(list[Entry], await r.xrange(keys.dead, min=dead_id, max=dead_id))
                    if not found:
                        raise CliError(f"no dead letter {dead_id!r}")
                    rows.extend(found)
            replayed = []
            for letter_id, fields in rows:
                own, original = read_dead_letter(fields)
                stream = own.get("stream", "")
                if not keys.owns(stream):
                    raise CliError(f"dead letter {letter_id.decode()} names stream {stream!r} outside this prefix")
                if not original:
                    raise CliError(f"dead letter {letter_id.decode()} carries no original fields to replay")
                async with r.pipeline(transaction=True) as pipe:
                    add_entry(pipe, stream, original)  # byte for byte what was sent
                    pipe.xdel(keys.dead, letter_id)
                    await pipe.execute()
                replayed.append(letter_id.decode())
            return replayed
        finally:
            await r.aclose()

    with redis_url_for(s) as url:
        done = asyncio.run(run(url))
    if as_json:
        print_json({"replayed": done})
    else:
        console.print(f"replayed {len(done)} dead letter(s)")
