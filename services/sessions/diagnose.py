"""Diagnose: failure clusters from the train split, each one a failure rate clearly above comparable records.

A candidate cluster is a signature of one workspace and model, with the records it holds (`hit`) and
comparable records outside it (`rest`):
  - `pattern`:  runs on a model that applied a pattern, against runs on that model without it;
  - `error`:    runs on a model that failed with an error code, against runs on the workspace's other models
                (an error code comes with a failure, so the share of runs that fail *with it* is compared);
  - `recovery`: recoveries from an error code on a model that waited less than a wait `w`, against those that
                waited at least `w` (one candidate per distinct wait: the one thing an edit can change).
Only real train records count (dream tasks resample them; val and test stay held out).

A candidate is reported only when its failure rate is clearly above the comparison: a one-sided Fisher exact
test (hypergeometric tail) of "fails more often than the rest", with Holm's step-down correction over every
candidate the session tested, at family-wise level `cluster_alpha`; and it needs at least
`min_cluster_failures` failures in `min_cluster_runs` records, both groups at least `min_cluster_runs`
records, and a rate `min_rate_gap` above the comparison. A candidate without a comparison group is never
reported. So on a fleet where nothing differs, a session reports a cluster with probability at most about
`cluster_alpha`. Of a recovery signature, only its most significant wait is reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from math import exp, lgamma

from pheromone.contracts.sessions import FailureCluster
from pheromone.services.sessions.harvest import Recovery, Run, stable_hash
from pheromone.services.settings import SessionsSettings


def cluster_id(*parts: str | None) -> str:
    return "c_" + stable_hash(*(p or "*" for p in parts))[:20]


def _log_comb(n: int, k: int) -> float:
    return lgamma(n + 1) - lgamma(k + 1) - lgamma(n - k + 1)


def fisher_greater(fails_hit: int, hit: int, fails_rest: int, rest: int) -> float:
    """One-sided Fisher exact p-value that the hit group fails more often than the rest: P(X >= fails_hit)
    for X hypergeometric (hit draws from hit + rest records holding fails_hit + fails_rest failures)."""
    total, fails = hit + rest, fails_hit + fails_rest
    top = min(hit, fails)
    if fails_hit > top:
        return 0.0
    denominator = _log_comb(total, hit)
    p = sum(exp(_log_comb(fails, k) + _log_comb(total - fails, hit - k) - denominator)
            for k in range(fails_hit, top + 1) if hit - k <= total - fails)
    return min(1.0, p)


@dataclass(frozen=True)
class _Candidate:
    kind: str
    workspace: str
    model: str | None
    code: str | None
    pattern: str | None
    hit: Sequence[Run | Recovery]
    fails: int
    rest: int
    rest_fails: int
    hypothesis: str
    p: float = 1.0


def diagnose(runs: Sequence[Run], recoveries: Sequence[Recovery], s: SessionsSettings) -> list[FailureCluster]:
    candidates: list[_Candidate] = []
    by_model: dict[tuple[str, str | None], list[Run]] = defaultdict(list)
    for r in runs:
        by_model[(r.workspace, r.model)].append(r)
    for (ws, model), group in sorted(by_model.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        for pid in sorted({p for r in group if not r.success for p in r.patterns}):
            hit = [r for r in group if pid in r.patterns]
            rest = [r for r in group if pid not in r.patterns]
            candidates.append(_Candidate("pattern", ws, model, None, pid, hit, _fails(hit), len(rest), _fails(rest),
                                         f"pattern {pid} fails on {model or 'any model'}"))
        others = [r for (w, m), g in by_model.items() if w == ws and m != model for r in g]
        for code in sorted({c for r in group if not r.success for c in r.error_codes}):
            candidates.append(_Candidate(
                "error", ws, model, code, None, group, sum(1 for r in group if not r.success and code in r.error_codes),
                len(others), sum(1 for r in others if not r.success and code in r.error_codes),
                f"runs on {model or 'any model'} fail with {code}"))
    by_code: dict[tuple[str, str, str | None], list[Recovery]] = defaultdict(list)
    for c in recoveries:
        by_code[(c.workspace, c.error_code, c.model)].append(c)
    for (ws, code, model), recs in sorted(by_code.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or "")):
        for wait in sorted({c.wait for c in recs})[1:]:
            short = [c for c in recs if c.wait < wait]
            longer = [c for c in recs if c.wait >= wait]
            candidates.append(_Candidate(
                "recovery", ws, model, code, None, short, _fails(short), len(longer), _fails(longer),
                f"recoveries from {code} on {model or 'any model'} that wait less than {wait:g}s fail"))
    return _report(candidates, s)


def _fails(items: Sequence[Run | Recovery]) -> int:
    return sum(1 for r in items if not r.success)


def _report(candidates: list[_Candidate], s: SessionsSettings) -> list[FailureCluster]:
    tested = [
        _Candidate(**{**c.__dict__, "p": fisher_greater(c.fails, len(c.hit), c.rest_fails, c.rest)})
        for c in candidates
    ]
    # Holm: the i-th smallest p-value (from 0) is compared with alpha / (m - i); the first that fails stops it.
    m = len(tested)
    significant: list[_Candidate] = []
    for i, c in enumerate(sorted(tested, key=lambda c: c.p)):
        if c.p > s.cluster_alpha / (m - i):
            break
        significant.append(c)
    out: dict[str, FailureCluster] = {}
    for c in significant:  # most significant first: a recovery signature keeps its best wait
        hit = len(c.hit)
        if hit < s.min_cluster_runs or c.rest < s.min_cluster_runs or c.fails < s.min_cluster_failures:
            continue
        rate, base = c.fails / hit, c.rest_fails / c.rest
        cid = cluster_id(c.kind, c.workspace, c.model, c.code, c.pattern)
        if rate - base < s.min_rate_gap or cid in out:
            continue
        tasks = sorted({f"sheet {r.sheet}" for r in c.hit if isinstance(r, Run) and not r.success})[:256]
        out[cid] = FailureCluster(
            id=cid, workspace=c.workspace, model=c.model, error_code=c.code, pattern_id=c.pattern, tags=[c.kind],
            task_ids=tasks, runs=hit, failures=c.fails, failure_rate=rate, baseline_runs=c.rest,
            baseline_rate=base,
            hypothesis=f"{c.hypothesis}: {c.fails}/{hit} failed against {base:.0%} of {c.rest} comparable "
            f"(one-sided Fisher p = {c.p:.2g}, Holm over {m} candidates)",
        )
    return sorted(out.values(), key=lambda x: x.id)


def matches(c: FailureCluster, item: Run | Recovery) -> bool:
    """Does a run or recovery belong to the cluster's signature (the records its rate is about)?"""
    if item.workspace != c.workspace or item.model != c.model:
        return False
    if "recovery" in c.tags:
        return isinstance(item, Recovery) and item.error_code == c.error_code
    if not isinstance(item, Run):
        return False
    if c.pattern_id is not None:
        return c.pattern_id in item.patterns
    return True  # an error cluster is about every run on its model
