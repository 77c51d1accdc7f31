"""Event-time tumbling windows and the counts kept per window cell (docs/contract.md).

A *cell* is one (window size, window start, dimension, value). Counts are a plain list of
ints in COUNT_FIELDS order: attempts, connected, then one count per outcome. Every ratio is
derived from counts at emit time, never stored as state.
"""

from __future__ import annotations

from typing import Final

from hangwatch.schemas.call_outcome import CONNECTED_OUTCOMES, CallOutcome, format_ts
from hangwatch.schemas.records import NONE_VALUE, OUTCOME_COUNT_FIELDS, RateUpdate, rate_key

COUNT_FIELDS: Final = ("attempts", "connected", *OUTCOME_COUNT_FIELDS)
N_COUNTS: Final = len(COUNT_FIELDS)
_OUTCOME_INDEX: Final = {o: i + 2 for i, o in enumerate(OUTCOME_COUNT_FIELDS)}
# Precomputed increments: adding an event is one list comprehension-free loop over 3 indexes.
_INCREMENTS: Final = {o: ((0, 1, i) if o in CONNECTED_OUTCOMES else (0, i)) for o, i in _OUTCOME_INDEX.items()}


def window_start_s(t_ms: int, size_s: int) -> int:
    """Start (epoch seconds) of the window of `size_s` that holds event time t: floor(t/size)*size."""
    return (t_ms // 1000) // size_s * size_s


def _bool_value(v: bool | None) -> str:
    return NONE_VALUE if v is None else ("true" if v else "false")


def dimension_values(e: CallOutcome) -> tuple[tuple[str, str], ...]:
    """The (dimension, value) pairs an event contributes to, in schemas.records.DIMENSIONS order."""
    return (
        ("all", "all"),
        ("branch", e.branch),
        ("agent_id", e.agent_id or NONE_VALUE),
        ("campaign", e.campaign),
        ("channel", e.channel),
        ("script_version", e.script_version or NONE_VALUE),
        ("credit_grade", e.credit_grade or NONE_VALUE),
        ("pre_notified", _bool_value(e.pre_notified)),
        ("first_time_borrower", _bool_value(e.first_time_borrower)),
        ("hangup_stage", e.hangup_stage or NONE_VALUE),
    )


def dimension_suffixes(e: CallOutcome) -> tuple[str, ...]:
    """"dimension|value" of each pair of `dimension_values`, the tail of a cell key (one string
    concatenation per cell on the hot path instead of three)."""
    return (
        "all|all",
        "branch|" + e.branch,
        "agent_id|" + (e.agent_id or NONE_VALUE),
        "campaign|" + e.campaign,
        "channel|" + e.channel,
        "script_version|" + (e.script_version or NONE_VALUE),
        "credit_grade|" + (e.credit_grade or NONE_VALUE),
        "pre_notified|" + _bool_value(e.pre_notified),
        "first_time_borrower|" + _bool_value(e.first_time_borrower),
        "hangup_stage|" + (e.hangup_stage or NONE_VALUE),
    )


def increments(outcome: str) -> tuple[int, ...]:
    """Indexes of the counts one event of this outcome adds 1 to."""
    return _INCREMENTS[outcome]


def new_counts() -> list[int]:
    return [0] * N_COUNTS


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def parse_cell_key(key: str) -> tuple[int, int, str, str]:
    size, start, dim, value = key.split("|", 3)
    return int(size), int(start), dim, value


def rate_update(key: str, counts: list[int], *, version: int, final: bool, now_ms: int,
                source: str = "stream") -> RateUpdate:
    """The hangup-rates record of one cell."""
    size, start, dim, value = parse_cell_key(key)
    attempts, connected = counts[0], counts[1]
    c = dict(zip(COUNT_FIELDS, counts, strict=True))
    return {
        "key": key,
        "window_size_s": size,
        "window_start": format_ts(start * 1000),
        "window_end": format_ts((start + size) * 1000),
        "dimension": dim,
        "value": value,
        "attempts": attempts,
        "connected": connected,
        "completed": c["completed"],
        "hung_up": c["hung_up"],
        "refused": c["refused"],
        "wrong_party": c["wrong_party"],
        "declined": c["declined"],
        "no_answer": c["no_answer"],
        "busy": c["busy"],
        "voicemail": c["voicemail"],
        "invalid_number": c["invalid_number"],
        "hangup_rate": _ratio(c["hung_up"], connected),
        "decline_rate": _ratio(c["declined"], attempts),
        "refusal_rate": _ratio(c["refused"], connected),
        "contact_rate": _ratio(connected, attempts),
        "version": version,
        "final": final,
        "source": "reconcile" if source == "reconcile" else "stream",
        "emitted_at": format_ts(now_ms),
    }


__all__ = [
    "COUNT_FIELDS",
    "N_COUNTS",
    "dimension_suffixes",
    "dimension_values",
    "increments",
    "new_counts",
    "parse_cell_key",
    "rate_key",
    "rate_update",
    "window_start_s",
]
