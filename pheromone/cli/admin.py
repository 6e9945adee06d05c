"""`pheromone rebuild` and `pheromone schema`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from pydantic import BaseModel

from pheromone import contracts
from pheromone.cli.common import (
    CliError,
    DataDirOpt,
    DbOpt,
    JsonOpt,
    PrefixOpt,
    RedisUrlOpt,
    console,
    print_json,
    require_store,
    settings,
)
from pheromone.services.store.location import open_backend


def rebuild(data_dir: DataDirOpt = None, db: DbOpt = None, as_json: JsonOpt = False) -> None:
    """Drop every projection and replay the ledger; prints the state digest before and after."""
    path = require_store(settings(data_dir=data_dir, db=db))

    async def run() -> dict[str, object]:
        async with open_backend(path) as store:
            before = await store.checksum()
            replayed = await store.rebuild()
            after = await store.checksum()
        return {"replayed": replayed, "checksum_before": before, "checksum_after": after,
                "identical": before == after}

    result = asyncio.run(run())
    if as_json:
        print_json(result)
    else:
        console.print(f"replayed {result['replayed']} events; projections "
                      f"{'identical' if result['identical'] else 'CHANGED'} ({str(result['checksum_after'])[:16]})")


def _contract_models() -> dict[str, type[BaseModel]]:
    from pheromone.contracts.events import WireEnvelope

    models: dict[str, type[BaseModel]] = {
        name: obj for name in contracts.__all__
        if isinstance(obj := getattr(contracts, name), type) and issubclass(obj, BaseModel)
    }
    models["Envelope"] = WireEnvelope  # what producers must send: event_id and occurred_at required
    return models


def schema(
    name: Annotated[str | None, typer.Argument(help="One contract (default: all)")] = None,
    queries: Annotated[
        bool, typer.Option("--queries", help="The query operations' argument and result schemas instead")
    ] = False,
) -> None:
    """Print the JSON Schema of every wire contract (for producers in other languages)."""
    if queries:
        from pheromone.services.query.schemas import query_schemas

        found = query_schemas()
        if name is not None:
            if name not in found["operations"]:
                raise CliError(f"unknown query {name!r}; choose from: {', '.join(found['operations'])}")
            found["operations"] = {name: found["operations"][name]}
        print_json(found)
        return
    models = _contract_models()
    if name is not None:
        if name not in models:
            raise CliError(f"unknown contract {name!r}; choose from: {', '.join(sorted(models))}")
        print_json(models[name].model_json_schema())
        return
    print_json({n: m.model_json_schema() for n, m in sorted(models.items())})




def asyncapi(
    redis_url: RedisUrlOpt = None,
    prefix: PrefixOpt = None,
) -> None:
    """Print the AsyncAPI 3.0 document of every stream, group and list (JSON; `serve --http-port` serves it too)."""
    from importlib.metadata import version

    from pheromone.plumbing.connection import settings_url
    from pheromone.services import asyncapi as spec

    s = settings(redis_url, prefix=prefix)
    print_json(spec.document(s.prefix, settings_url(s) or "redis://localhost:6379", version("pheromone")))
