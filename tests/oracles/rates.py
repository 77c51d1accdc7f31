"""Batch oracle for the rolling rates: a plain recomputation of every window cell's counts.

Deliberately simple and independent of streams.core: dedupe by event_id (first occurrence
wins), then count each event into every (size, window start, dimension, value) it belongs to.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from hangwatch.schemas.call_outcome import CallOutcome

CONNECTED = {"completed", "hung_up", "refused", "wrong_party"}
OUTCOMES = ["completed", "hung_up", "refused", "wrong_party", "declined", "no_answer", "busy", "voicemail",
            "invalid_number"]


def _dims(e: CallOutcome) -> list[tuple[str, str]]:
    def b(v: bool | None) -> str:
        return "(none)" if v is None else str(v).lower()

    return [
        ("all", "all"), ("branch", e.branch), ("agent_id", e.agent_id or "(none)"), ("campaign", e.campaign),
        ("channel", e.channel), ("script_version", e.script_version or "(none)"),
        ("credit_grade", e.credit_grade or "(none)"), ("pre_notified", b(e.pre_notified)),
        ("first_time_borrower", b(e.first_time_borrower)), ("hangup_stage", e.hangup_stage or "(none)"),
    ]


def dedupe(events: Iterable[CallOutcome]) -> list[CallOutcome]:
    seen: set[str] = set()
    out = []
    for e in events:
        if e.event_id not in seen:
            seen.add(e.event_id)
            out.append(e)
    return out


def oracle_counts(events: Iterable[CallOutcome], sizes: Iterable[int]) -> dict[str, dict[str, int]]:
    """cell key -> {"attempts", "connected", <outcome>: n}."""
    cells: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(["attempts", "connected", *OUTCOMES], 0))
    for e in dedupe(events):
        t_s = e.occurred_at_ms // 1000
        for size in sizes:
            start = t_s - t_s % size
            for dim, value in _dims(e):
                c = cells[f"{size}|{start}|{dim}|{value}"]
                c["attempts"] += 1
                c["connected"] += e.outcome in CONNECTED
                c[e.outcome] += 1
    return dict(cells)
