"""The query operations of learning sessions (issue 6): what jobs are served after sessions edited it.

- `playbook` {workspace}: the workspace's playbook markdown (hand-written text, then the learned block);
- `guidance` {workspace, model?, limit?}: the patterns a job running `model` is served (blocked ones left
  out, edited priorities and actions served instead of the derived ones), the wait policies that apply to
  it, and the playbook.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from pheromone.contracts.query_args import GuidanceArgs, PlaybookArgs
from pheromone.services.query import learning as q
from pheromone.services.sessions.guidance import Guidance, render_playbook, served_patterns, unslot
from pheromone.services.store.reads import StoreReads


async def playbook(reads: StoreReads, a: PlaybookArgs) -> dict[str, Any]:
    g = Guidance(await reads.guidance(a.workspace))
    hand = await reads.hand(a.workspace)
    return {"workspace": a.workspace, "markdown": render_playbook(hand, g.learned), "hand": hand,
            "learned": g.learned}


async def guidance(reads: StoreReads, a: GuidanceArgs) -> dict[str, Any]:
    g = Guidance(await reads.guidance(a.workspace))
    s = await reads.settings()
    ranked = await q.patterns(reads, q.PatternsArgs(limit=min(1_000, a.limit * 5)), s)
    waits = [{"error_code": code, "model": model, "seconds": v}
             for (p, k), v in sorted(g.entries.items()) if p == "wait_policy"
             for code, model, _ in [unslot(k)] if model is None or model == a.model]
    book = await playbook(reads, PlaybookArgs(workspace=a.workspace))
    return {"workspace": a.workspace, "model": a.model,
            "patterns": served_patterns(ranked, g, a.model)[: a.limit], "waits": waits,
            "playbook": book["markdown"]}


def _op(fn: Callable[[StoreReads, Any], Awaitable[Any]],
        model: type[q.Args]) -> Callable[[StoreReads, dict[str, Any]], Awaitable[Any]]:
    async def run(reads: StoreReads, args: dict[str, Any]) -> Any:
        return await fn(reads, model.model_validate(args))

    run.__name__ = fn.__name__
    run.args_model = model  # type: ignore[attr-defined]  # `pheromone schema --queries` exports its schema
    return run


SESSION_OPS: dict[str, Callable[[StoreReads, dict[str, Any]], Awaitable[Any]]] = {
    "playbook": _op(playbook, PlaybookArgs),
    "guidance": _op(guidance, GuidanceArgs),
}
"""Registered into `services.query.service.OPS`."""
