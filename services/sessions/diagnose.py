"""Diagnose: failure clusters from the failing runs of the train split, with rates from real records.

A cluster is a signature shared by failing runs of one workspace, with the failure rate of the runs that
match it and of comparable runs that do not (same workspace and model):
  - `pattern`: runs on a model that applied a pattern (compared with runs on that model without it);
  - `error`:   runs on a model that reported an error code;
  - `recovery`: recoveries from an error code on a model (compared with the other recoveries on it).
Only real train records count (dream tasks resample them; val and test stay held out). A cluster is kept only
with evidence: at least `min_cluster_failures` failing runs out of `min_cluster_runs`, and, where a comparison
exists, a failure rate at least `min_rate_gap` above it. Everything else is dropped, never invented.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from contracts.sessions import FailureCluster
from services.sessions.harvest import Recovery, Run, stable_hash
from services.settings import SessionsSettings


def cluster_id(*parts: str | None) -> str:
    return "c_" + stable_hash(*(p or "*" for p in parts))[:20]


def diagnose(runs: Sequence[Run], recoveries: Sequence[Recovery], s: SessionsSettings) -> list[FailureCluster]:
    out: list[FailureCluster] = []
    by_model: dict[tuple[str, str | None], list[Run]] = defaultdict(list)
    for r in runs:
        by_model[(r.workspace, r.model)].append(r)
    for (ws, model), group in sorted(by_model.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        for pid in sorted({p for r in group if not r.success for p in r.patterns}):
            hit = [r for r in group if pid in r.patterns]
            rest = [r for r in group if pid not in r.patterns]
            out += _keep(ws, model, None, pid, hit, rest, s, f"pattern {pid} fails on {model or 'any model'}")
        for code in sorted({c for r in group if not r.success for c in r.error_codes}):
            hit = [r for r in group if code in r.error_codes]
            out += _keep(ws, model, code, None, hit, [], s, f"error {code} on {model or 'any model'}")
    by_code: dict[tuple[str, str, str | None], list[Recovery]] = defaultdict(list)
    for c in recoveries:
        by_code[(c.workspace, c.error_code, c.model)].append(c)
    for (ws, code, model), recovered in sorted(by_code.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        others = [c for c in recoveries if c.workspace == ws and c.model == model and c.error_code != code]
        out += _keep(ws, model, code, None, recovered, others, s,
                     f"recoveries from {code} on {model or 'any model'} fail", tag="recovery")
    return out


def _keep(ws: str, model: str | None, code: str | None, pid: str | None, hit: Sequence[Run | Recovery],
          rest: Sequence[Run | Recovery], s: SessionsSettings, hypothesis: str,
          tag: str | None = None) -> list[FailureCluster]:
    fails = sum(1 for r in hit if not r.success)
    if len(hit) < s.min_cluster_runs or fails < s.min_cluster_failures:
        return []
    rate = fails / len(hit)
    base = sum(1 for r in rest if not r.success) / len(rest) if len(rest) >= s.min_cluster_runs else None
    if base is not None and rate - base < s.min_rate_gap:
        return []
    if base is None and rate < s.min_failure_rate:
        return []
    kind = tag or ("pattern" if pid else "error")
    tasks = sorted({f"sheet {r.sheet}" for r in hit if isinstance(r, Run) and not r.success})[:256]
    return [FailureCluster(
        id=cluster_id(kind, ws, model, code, pid), workspace=ws, model=model, error_code=code, pattern_id=pid,
        tags=[kind], task_ids=tasks, runs=len(hit), failures=fails, failure_rate=rate,
        baseline_runs=len(rest), baseline_rate=base,
        hypothesis=f"{hypothesis}: {fails}/{len(hit)} failed"
        + (f" against {base:.0%} without" if base is not None else ""),
    )]


def matches(c: FailureCluster, item: Run | Recovery) -> bool:
    """Does a run or recovery belong to the cluster's signature?"""
    if item.workspace != c.workspace or item.model != c.model:
        return False
    if "recovery" in c.tags:
        return isinstance(item, Recovery) and item.error_code == c.error_code
    if not isinstance(item, Run):
        return False
    if c.pattern_id is not None:
        return c.pattern_id in item.patterns
    return c.error_code in item.error_codes
