"""Evolution trajectory (seed 000, v16): recurring issue classes over a window of cycles."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def recurring_issues(
    entries: Iterable[tuple[int, Sequence[str]]], *, min_occurrences: int, window_cycles: int | None = None
) -> dict[str, list[int]]:
    """{issue class: cycles it appeared in, newest first} for classes seen in >= min_occurrences cycles.

    `entries` are (cycle, issue classes); only the newest `window_cycles` cycles count when given. A class
    listed twice in one cycle counts once for that cycle.
    """
    ordered = sorted(entries, key=lambda e: -e[0])
    if window_cycles is not None:
        ordered = ordered[:window_cycles]
    cycles: dict[str, list[int]] = {}
    for cycle, classes in ordered:
        for issue in dict.fromkeys(classes):
            cycles.setdefault(issue, []).append(cycle)
    return {k: v for k, v in sorted(cycles.items()) if len(v) >= min_occurrences}
