"""Reading the rollups (rollup_1m/1h/1d, kept by the sink: sinks.rollup) for a time range.

A range is served by the coarsest buckets that fit inside it: whole local days from
rollup_1d, the whole hours at either side from rollup_1h, the minutes at the very edges from
rollup_1m. The pieces never overlap, so every event of the range is counted exactly once, and
a 90-day range reads about 90 day rows per segment instead of 90 days of events. The range is
widened to whole minutes (an event in the range's first or last minute counts whole).

Series (a count per interval of `step` seconds) use only buckets that fit in one interval:
the step is rounded up to whole minutes, hours or days, hour rows are used when the step is a
whole number of hours and day rows when it is a whole number of days. Intervals of an hour or
more are aligned to the local zone's midnight (the zone's current UTC offset), like the day rows.

Each piece reads the newest version of every row (argMax(..., version) grouped by the row's
key: exact before merges, no FINAL). Every boundary is a constant expression of the frame's
times, so the primary key (facet, bucket_start, ...) and the partitions prune each piece to its
own buckets, for Grafana's macros and the CLI's literal times alike. Runs on 18.16 and current.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final
from zoneinfo import ZoneInfo

from hangwatch.sinks.catalogue.expr import COUNT_COLUMNS
from hangwatch.sinks.catalogue.registry import Context
from hangwatch.sinks.sql import literal
from hangwatch.sinks.tables import ROLLUP_FACETS, ROLLUP_SEGMENT

MINUTE: Final = 60
HOUR: Final = 3600
DAY: Final = 86400
SEGMENT: Final = ROLLUP_SEGMENT
# The columns a facet splits its segment by.
FACET_COLUMNS: Final = ROLLUP_FACETS

# Rates from summed counts of rollup_rows (c_<count>); NULL (a gap, not 0) when there is
# nothing to divide by.
CONNECTED: Final = "sum(c_connected)"
HANGUP_RATE: Final = "sum(c_hung_up) / nullIf(sum(c_connected), 0)"
DECLINE_RATE: Final = "sum(c_declined) / nullIf(sum(c_attempts), 0)"
REFUSAL_RATE: Final = "sum(c_refused) / nullIf(sum(c_connected), 0)"
CONTACT_RATE: Final = "sum(c_connected) / nullIf(sum(c_attempts), 0)"


def utc_offset_s(tz: str) -> int:
    """The zone's current offset from UTC in seconds (Asia/Shanghai: 28800)."""
    offset = datetime.now(tz=UTC).astimezone(ZoneInfo(tz)).utcoffset()
    return int(offset.total_seconds()) if offset else 0


def snapped_step(interval_s: str) -> str:
    """The interval (an SQL expression of seconds) rounded up to whole minutes, hours or days."""
    i = f"toUInt32({interval_s})"
    return (f"multiIf({i} >= {DAY}, intDiv({i} + {DAY - 1}, {DAY}) * {DAY}, "
            f"{i} >= {HOUR}, intDiv({i} + {HOUR - 1}, {HOUR}) * {HOUR}, "
            f"greatest({MINUTE}, intDiv({i} + {MINUTE - 1}, {MINUTE}) * {MINUTE}))")


def series_time(ctx: Context, step: str) -> str:
    """The start of the `step`-second interval holding a row's bucket (local-midnight aligned
    from one hour up)."""
    off = f"if({step} >= {HOUR}, {utc_offset_s(ctx.tz)}, 0)"
    return f"toDateTime(intDiv(toUInt32(bucket_start) + {off}, {step}) * {step} - {off}, 'UTC')"


class _Bounds:
    """Epoch-second SQL expressions of the pieces' boundaries: minutes in [a, h1) and [h2, b),
    hours in [h1, d1) and [d2, h2), days in [d1, d2). Disabled grains collapse their range."""

    def __init__(self, ctx: Context, hours: str, days: str) -> None:
        f = ctx.frame
        self.a = f"(intDiv(toUInt32({f.from_time()}), {MINUTE}) * {MINUTE})"
        self.b = f"((intDiv(toUInt32({f.to_time('now()')}), {MINUTE}) + 1) * {MINUTE})"
        self.h1 = f"if({hours}, intDiv({self.a} + {HOUR - 1}, {HOUR}) * {HOUR}, {self.b})"
        self.h2 = f"if({hours}, intDiv({self.b}, {HOUR}) * {HOUR}, {self.b})"
        floor_day = "toUInt32(toStartOfDay(toDateTime({x}, 'UTC'), " + literal(ctx.tz) + "))"
        self.d1 = f"if({days}, {floor_day.format(x=f'{self.h1} + {DAY - 1}')}, {self.h2})"
        self.d2 = f"if({days}, {floor_day.format(x=self.h2)}, {self.h2})"


def _within(lo: str, hi: str) -> str:
    return f"bucket_start >= toDateTime({lo}, 'UTC') AND bucket_start < toDateTime({hi}, 'UTC')"


def _piece(ctx: Context, table: str, facet: str, keys: Sequence[str], columns: Sequence[str], time: str,
           where: str) -> str:
    latest = ", ".join(f"argMax({c}, version) AS c_{c}" for c in columns)
    return (f"SELECT bucket_start, {', '.join(keys)}, {latest} FROM {ctx.db}.{table} "
            f"WHERE facet = {literal(facet)} AND ({time}) AND {where} GROUP BY bucket_start, {', '.join(keys)}")


def rollup_rows(ctx: Context, facet: str = "all", columns: Sequence[str] = COUNT_COLUMNS, where: str = "1=1",
                *, step: str | None = None, days: bool = True) -> str:
    """A subquery: the current rollup rows of `facet` that cover the frame's range, with
    bucket_start, the segment and facet columns and c_<column> for each of `columns`.
    `where` may test only key columns (the segment and facet columns), so that every version
    of a row passes or none does. `step`: a series step (see snapped_step); `days=False`
    keeps day rows out (a per-hour-of-day breakdown needs hours)."""
    if facet not in FACET_COLUMNS:
        raise ValueError(f"no rollup facet {facet!r}; facets: {', '.join(FACET_COLUMNS)}")
    keys = (*SEGMENT, *FACET_COLUMNS[facet])
    use_hours = f"({step}) % {HOUR} = 0" if step else "1"
    use_days = ("0" if not days else f"({step}) % {DAY} = 0" if step else "1")
    b = _Bounds(ctx, use_hours, use_days)
    minutes = f"({_within(b.a, f'least({b.h1}, {b.b})')}) OR ({_within(f'greatest({b.h2}, {b.h1})', b.b)})"
    hours = f"({_within(b.h1, f'least({b.d1}, {b.h2})')}) OR ({_within(f'greatest({b.d2}, {b.d1})', b.h2)})"
    pieces = [_piece(ctx, "rollup_1m", facet, keys, columns, minutes, where),
              _piece(ctx, "rollup_1h", facet, keys, columns, hours, where)]
    if days:
        pieces.append(_piece(ctx, "rollup_1d", facet, keys, columns, _within(b.d1, b.d2), where))
    body = "\n    UNION ALL\n    ".join(pieces)
    return f"(\n    {body}\n)"
