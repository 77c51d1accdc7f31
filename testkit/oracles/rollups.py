"""Batch oracle for the rollups (rollup_1m/1h/1d): a plain recount of the distinct events.

Independent of sinks.rollup: buckets, facets and value spellings are written out here (the
facet names and the '(none)'/'true'/'false' spellings are the contract's), so a change in the
product shows up as a difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hangwatch.schemas.call_outcome import CallOutcome
from testkit.oracles.rates import CONNECTED, COUNTS, NONE, dedupe

# (grain, bucket start epoch s, facet, branch, campaign, channel, script_version, credit_grade,
#  pre_notified, first_time_borrower, hangup_stage, agent_id)
Key = tuple[str, int, str, str, str, str, str, str, str, str, str, str]
GRAINS = ("1m", "1h", "1d")


def _b(v: bool | None) -> str:
    return NONE if v is None else str(v).lower()


def _day_start(t_s: int, tz: str) -> int:
    zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(t_s, tz=zone).date()
    return int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp())


def bucket(grain: str, t_s: int, tz: str) -> int:
    if grain == "1m":
        return t_s - t_s % 60
    if grain == "1h":
        return t_s - t_s % 3600
    return _day_start(t_s, tz)


def facets(e: CallOutcome) -> list[tuple[str, str, str, str, str, str]]:
    """(facet, credit_grade, pre_notified, first_time_borrower, hangup_stage, agent_id) rows of an event."""
    return [
        ("all", "", "", "", "", ""),
        ("profile", e.credit_grade or NONE, _b(e.pre_notified), _b(e.first_time_borrower), "", ""),
        ("stage", "", "", "", e.hangup_stage or NONE, ""),
        ("agent", "", "", "", "", e.agent_id or NONE),
    ]


def rollup_counts(events: Iterable[CallOutcome], tz: str) -> dict[Key, dict[str, int]]:
    """Every rollup row's counts, for all three grains; duplicates of an event_id count once."""
    out: dict[Key, dict[str, int]] = {}
    for e in dedupe(events):
        t_s = e.occurred_at_ms // 1000
        segment = (e.branch, e.campaign, e.channel, e.script_version or NONE)
        for grain in GRAINS:
            for f in facets(e):
                key: Key = (grain, bucket(grain, t_s, tz), f[0], *segment, *f[1:])
                c = out.setdefault(key, dict.fromkeys(COUNTS, 0))
                c["attempts"] += 1
                c["connected"] += e.outcome in CONNECTED
                c[e.outcome] += 1
    return out


def totals(events: Iterable[CallOutcome], start_s: int, end_s: int, by: str | None = None,
           where: dict[str, set[str]] | None = None) -> dict[str, dict[str, int]]:
    """Counts of the distinct events in [start_s, end_s), per value of the event attribute `by`
    (or under "all"), keeping only events whose attributes are in `where`."""
    out: dict[str, dict[str, int]] = {}
    for e in dedupe(events):
        t_s = e.occurred_at_ms // 1000
        if not start_s <= t_s < end_s:
            continue
        if where and any((getattr(e, k) or NONE) not in v for k, v in where.items()):
            continue
        group = "all" if by is None else str(getattr(e, by) if getattr(e, by) is not None else NONE)
        c = out.setdefault(group, dict.fromkeys(COUNTS, 0))
        c["attempts"] += 1
        c["connected"] += e.outcome in CONNECTED
        c[e.outcome] += 1
    return out


def day_after(t_s: int, tz: str) -> int:
    zone = ZoneInfo(tz)
    d = datetime.fromtimestamp(t_s, tz=zone).date() + timedelta(days=1)
    return int(datetime(d.year, d.month, d.day, tzinfo=zone).timestamp())


# (grain, bucket start epoch s, facet, value, branch) of the compact rollups (rollup_compact_*).
CompactKey = tuple[str, int, str, str, str]


def compact_facets(e: CallOutcome) -> list[tuple[str, str, str]]:
    """(facet, value, branch) rows of an event in the compact rollups: one per column, the
    agent's with its branch."""
    return [
        ("all", "", ""),
        ("branch", e.branch, ""),
        ("campaign", e.campaign, ""),
        ("channel", e.channel, ""),
        ("script_version", e.script_version or NONE, ""),
        ("credit_grade", e.credit_grade or NONE, ""),
        ("pre_notified", _b(e.pre_notified), ""),
        ("first_time_borrower", _b(e.first_time_borrower), ""),
        ("agent", e.agent_id or NONE, e.branch),
    ]


def compact_counts(events: Iterable[CallOutcome], tz: str) -> dict[CompactKey, dict[str, int]]:
    """Every compact rollup row's counts, for all three grains; duplicates of an event_id count once."""
    out: dict[CompactKey, dict[str, int]] = {}
    for e in dedupe(events):
        t_s = e.occurred_at_ms // 1000
        for grain in GRAINS:
            for f in compact_facets(e):
                c = out.setdefault((grain, bucket(grain, t_s, tz), *f), dict.fromkeys(COUNTS, 0))
                c["attempts"] += 1
                c["connected"] += e.outcome in CONNECTED
                c[e.outcome] += 1
    return out
