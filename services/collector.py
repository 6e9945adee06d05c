"""Tuning of CPython's cyclic garbage collector for the services' batch hot path.

Parsing a batch of 1,000 envelopes allocates ~10,000 container objects (models, their dicts, lists,
datetimes) that live until the batch commits. With the default thresholds (700, 10, 10) that triggers a
young collection every ~70 events and a full one every ~7,000, and a full collection walks every object the
imports left behind (FastStream, pydantic's schemas, redis-py, rich), none of which is ever garbage: on the
hot path that walk is wasted work (bench/RESULTS.md, "What doubled it", has the figures).

`tune()` freezes what exists at start-up (module-level objects never become garbage) and raises the young
threshold, so collections are rarer and each walks only what the running service made since start. Cycles
are still collected: the service's working set is bounded (one batch in flight), so memory stays flat
(tests/reliability measures RSS under load).
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000
"""Allocations between young collections: about five batches' worth of objects."""
OLDER_THRESHOLDS = (20, 10)
"""Young collections per middle one, middle ones per full one (CPython's defaults are 10 and 10)."""


_tuned = False


def tune() -> tuple[int, int, int]:
    """Freeze start-up objects and raise the collector's thresholds, once per process (a process hosting
    several stores, as the tests do, freezes once). Returns the thresholds."""
    global _tuned
    if not _tuned:
        _tuned = True
        gc.collect()
        gc.freeze()
        gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return gc.get_threshold()
