"""The JSON Schemas of every query operation's arguments and result, for clients in other languages.

`pheromone schema --queries` prints `query_schemas()`. The arguments' schemas come from the models the
operations validate with and the client sends (`contracts.query_args.QUERY_ARGS`), so they cannot drift. The
results are dicts built by SQL, so their schemas are declared here: each names the top-level members an answer
always has and their JSON types; `tests/ops/test_query_schemas.py` validates every operation's real answer
against its schema. The request and reply around them: `contracts.queries.QueryRequest` / `QueryReply`, and
docs/WIRE.md.
"""

from __future__ import annotations

from typing import Any

from pheromone.contracts.events import WireEnvelope
from pheromone.contracts.query_args import QUERY_ARGS


def _obj(description: str, **members: Any) -> dict[str, Any]:
    return {"type": "object", "description": description, "required": sorted(members), "properties": members}


_STR, _NUM, _INT, _BOOL = {"type": "string"}, {"type": "number"}, {"type": "integer"}, {"type": "boolean"}
_ARR, _OBJ = {"type": "array"}, {"type": "object"}
_OPT_STR, _OPT_NUM, _OPT_OBJ = {"type": ["string", "null"]}, {"type": ["number", "null"]}, {"type": ["object", "null"]}
_PATTERN = _obj("A pattern (contracts.PatternRecord's fields, in JSON) with the store's derived fields",
                id=_STR, pattern_type=_STR, pattern_name=_STR, effectiveness_score=_NUM, priority_score=_NUM,
                trust_score=_NUM, quarantine_status=_STR, context_tags=_ARR, occurrence_count=_INT,
                last_applied=_OPT_STR)

RESULTS: dict[str, dict[str, Any]] = {
    "events": {"type": "array", "description": "Ledger events, oldest first",
               "items": {"$ref": "#/$defs/Envelope"}},
    "counts": {"type": "object", "description": "Events in the ledger per payload type",
               "additionalProperties": _INT},
    "patterns": {"type": "array", "description": "Best patterns first (by priority)", "items": _PATTERN},
    "pattern": _obj("One pattern with its provenance, transitions, success factors and drift", pattern=_PATTERN,
                    provenance=_OBJ, same_content=_ARR, transitions=_ARR, why=_OBJ, recent_applications=_ARR,
                    drift=_OPT_OBJ, epistemic_drift=_OPT_OBJ),
    "entropy": _obj("The population's current entropy (contracts.PatternEntropyMetrics) and, if asked, history",
                    current=_OBJ, threshold=_NUM),
    "budget": _obj("The exploration budget: latest record, history, statistics and rules", current=_OPT_OBJ,
                   history=_ARR, statistics=_OBJ, rules=_OBJ),
    "drift": _obj("Patterns whose effectiveness (or belief) drifted, most first", kind=_STR, summary=_OBJ,
                  patterns=_ARR),
    "wait": _obj("A learned wait for an error code (and model)", error_code=_STR, model=_OPT_STR,
                 wait_seconds=_NUM, confidence=_NUM, strategy=_STR, learned_seconds=_OPT_NUM,
                 static_seconds=_OPT_NUM, samples=_INT),
    "escalations_similar": _obj("Past escalation decisions near the given confidence and pass rate",
                                suggestion=_OPT_OBJ, similar=_ARR),
    "execution_stats": _obj("Execution statistics, overall or grouped, and the optimal time window",
                            stats=_ARR, optimal_window=_OBJ),
    "trajectory": _obj("Evolution trajectory entries and recurring issue classes", entries=_ARR,
                       recurring_issues=_OBJ, window_cycles={"type": ["integer", "null"]}, min_occurrences=_INT),
    "playbook": _obj("A workspace's playbook: the hand-written text, the learned block, both as markdown",
                     workspace=_STR, markdown=_STR, hand=_STR, learned=_ARR),
    "guidance": _obj("What a workspace's jobs running a model are served", workspace=_STR, model=_OPT_STR,
                     patterns=_ARR, waits=_ARR, playbook=_STR),
}


def query_schemas() -> dict[str, Any]:
    """{"operations": {name: {"args": schema, "result": schema}}, "$defs": {"Envelope": …, its records}}: a
    result's `#/$defs/…` references resolve against this document's `$defs`."""
    models = QUERY_ARGS
    missing = sorted(set(models) ^ set(RESULTS))
    if missing:  # an operation added without its schemas, or a schema left after its operation
        raise LookupError(f"query operations without both schemas: {', '.join(missing)}")
    operations = {name: {"args": models[name].model_json_schema(), "result": RESULTS[name]}
                  for name in sorted(models)}
    envelope = WireEnvelope.model_json_schema()
    defs = {**envelope.pop("$defs"), "Envelope": envelope}  # one level, so every "#/$defs/…" resolves here
    return {"operations": operations, "$defs": defs}
