"""Batch oracle for the rolling rates: a plain recomputation of every window cell's counts.

Deliberately simple and independent of streams.core and of the constants in schemas.records:
dedupe by event_id (first occurrence wins), then count each event into every (window size,
window start, dimension, value) it belongs to. The outcome and dimension lists are written out
here, so a change to the product's lists shows up as a difference (an unknown outcome is a
KeyError), not as an oracle that silently follows along.

Two views of the same counts:
- window_counts: keyed (window_size_s, window_start_s, dimension, value);
- oracle_counts: keyed "size|start|dimension|value", the stream's rate keys.
"""

from __future__ import annotations

from collections.abc import Iterable

from hangwatch.schemas.call_outcome import CallOutcome

OUTCOMES = ("completed", "hung_up", "refused", "wrong_party", "declined", "no_answer", "busy", "voicemail",
            "invalid_number")
CONNECTED = frozenset({"completed", "hung_up", "refused", "wrong_party"})
COUNTS = ("attempts", "connected", *OUTCOMES)  # the fields of one cell's counts
NONE = "(none)"

Cell = tuple[int, int, str, str]  # window_size_s, window_start_s (epoch s), dimension, value


def dedupe(events: Iterable[CallOutcome]) -> list[CallOutcome]:
    """The events in order, each event_id once (its first occurrence)."""
    seen: set[str] = set()
    out = []
    for e in events:
        if e.event_id not in seen:
            seen.add(e.event_id)
            out.append(e)
    return out


def dimension_values(e: CallOutcome) -> list[tuple[str, str]]:
    """The (dimension, value) pairs the event counts into; a missing optional value is "(none)"."""

    def b(v: bool | None) -> str:
        return NONE if v is None else str(v).lower()

    return [
        ("all", "all"), ("branch", e.branch), ("agent_id", e.agent_id or NONE), ("campaign", e.campaign),
        ("channel", e.channel), ("script_version", e.script_version or NONE),
        ("credit_grade", e.credit_grade or NONE), ("pre_notified", b(e.pre_notified)),
        ("first_time_borrower", b(e.first_time_borrower)), ("hangup_stage", e.hangup_stage or NONE),
    ]


def window_counts(events: Iterable[CallOutcome], sizes: Iterable[int]) -> dict[Cell, dict[str, int]]:
    """(size, start, dimension, value) -> {"attempts", "connected", <outcome>: n} for every cell
    with an event; duplicates of one event_id count once."""
    sizes = list(sizes)
    cells: dict[Cell, dict[str, int]] = {}
    for e in dedupe(events):
        t_s = e.occurred_at_ms // 1000
        for size in sizes:
            start = t_s - t_s % size
            for dim, value in dimension_values(e):
                c = cells.setdefault((size, start, dim, value), dict.fromkeys(COUNTS, 0))
                c["attempts"] += 1
                c["connected"] += e.outcome in CONNECTED
                c[e.outcome] += 1  # KeyError for an outcome the oracle does not know
    return cells


def oracle_counts(events: Iterable[CallOutcome], sizes: Iterable[int]) -> dict[str, dict[str, int]]:
    """The same counts keyed "size|start|dimension|value" (the stream's rate keys)."""
    return {f"{size}|{start}|{dim}|{value}": c for (size, start, dim, value), c in window_counts(events, sizes).items()}
