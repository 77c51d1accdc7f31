"""Plain-Python batch recomputation of the window counts (docs/contract.md), the oracle that
the stored and reconciled hangup_rates are compared with."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.schemas.records import DIMENSIONS, NONE_VALUE, OUTCOME_COUNT_FIELDS

Key = tuple[int, int, str, str]  # window_size_s, window_start epoch s, dimension, value
CONNECTED = ("completed", "hung_up", "refused", "wrong_party")


def _text(v: object) -> str:
    if v is None:
        return NONE_VALUE
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def dimension_values(e: CallOutcome) -> list[tuple[str, str]]:
    return [(d, "all" if d == "all" else _text(getattr(e, d))) for d in DIMENSIONS]


def window_counts(events: Iterable[CallOutcome], sizes: Iterable[int]) -> dict[Key, dict[str, int]]:
    seen: set[str] = set()
    out: dict[Key, Counter[str]] = defaultdict(Counter)
    sizes = list(sizes)
    for e in events:
        if e.event_id in seen:  # duplicates of one event_id count once
            continue
        seen.add(e.event_id)
        t = e.occurred_at_ms // 1000
        for size in sizes:
            start = t // size * size
            for dim, val in dimension_values(e):
                out[(size, start, dim, val)][e.outcome] += 1
    return {k: full_counts(c) for k, c in out.items()}


def full_counts(c: Counter[str] | dict[str, int]) -> dict[str, int]:
    counts = {f: int(c.get(f, 0)) for f in OUTCOME_COUNT_FIELDS}
    counts["attempts"] = sum(counts[f] for f in OUTCOME_COUNT_FIELDS)
    counts["connected"] = sum(counts[f] for f in CONNECTED)
    return counts
