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
from hangwatch.sinks.catalogue.frame import FixedFrame
from hangwatch.sinks.catalogue.registry import Context
from hangwatch.sinks.sql import literal
from hangwatch.sinks.tables import COMPACT_FACETS, ROLLUP_FACETS, ROLLUP_SEGMENT

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


def _if(cond: str, then: str, otherwise: str) -> str:
    """if() over two UInt32 branches. ClickHouse 18.16 folds a constant if() into a constant
    only when both branches have the same type (and never a multiIf()): otherwise the primary
    key cannot use a boundary built from it and the piece reads every bucket of its partitions."""
    if cond in ("0", "1"):
        return f"toUInt32({then if cond == '1' else otherwise})"
    return f"if({cond}, toUInt32({then}), toUInt32({otherwise}))"


def snapped_step(interval_s: str) -> str:
    """The interval (an SQL expression of seconds) rounded up to whole minutes, hours or days;
    a number when the interval is one (the CLI and the report)."""
    if interval_s.isdigit():
        return str(_snap(int(interval_s)))
    i = f"toUInt32({interval_s})"
    return _if(f"{i} >= {DAY}", f"intDiv({i} + {DAY - 1}, {DAY}) * {DAY}",
               _if(f"{i} >= {HOUR}", f"intDiv({i} + {HOUR - 1}, {HOUR}) * {HOUR}",
                   f"greatest({MINUTE}, intDiv({i} + {MINUTE - 1}, {MINUTE}) * {MINUTE})"))


def _snap(i: int) -> int:
    grain = DAY if i >= DAY else HOUR if i >= HOUR else MINUTE
    return max(MINUTE, -(-i // grain) * grain)


def series_time(ctx: Context, step: str) -> str:
    """The start of the `step`-second interval holding a row's bucket (local-midnight aligned
    from one hour up)."""
    if step.isdigit():
        off = str(utc_offset_s(ctx.tz) if int(step) >= HOUR else 0)
    else:
        off = _if(f"{step} >= {HOUR}", str(utc_offset_s(ctx.tz)), "0")
    return f"toDateTime(intDiv(toUInt32(bucket_start) + {off}, {step}) * {step} - {off}, 'UTC')"


def _local_midnight(t_s: int, tz: str) -> int:
    """toStartOfDay(toDateTime(t_s, 'UTC'), tz) in epoch seconds."""
    day = datetime.fromtimestamp(t_s, tz=ZoneInfo(tz)).date()
    return int(datetime(day.year, day.month, day.day, tzinfo=ZoneInfo(tz)).timestamp())


class _Bounds:
    """Epoch-second SQL expressions of the pieces' boundaries: minutes in [a, h1) and [h2, b),
    hours in [h1, d1) and [d2, h2), days in [d1, d2). Disabled grains collapse their range.

    With a fixed range and step (the CLI, the report) they are numbers computed here; 18.16
    spends ~0.1 s analysing the nested expressions a Grafana panel's macros need, before
    reading a row."""

    def __init__(self, ctx: Context, hours: str, days: str) -> None:
        f = ctx.frame
        if isinstance(f, FixedFrame) and f.start and f.end and hours in ("0", "1") and days in ("0", "1"):
            a = int(f.start.timestamp()) // MINUTE * MINUTE
            b = (int(f.end.timestamp()) // MINUTE + 1) * MINUTE
            h1 = -(-a // HOUR) * HOUR if hours == "1" else b
            h2 = b // HOUR * HOUR if hours == "1" else b
            d1 = _local_midnight(h1 + DAY - 1, ctx.tz) if days == "1" else h2
            d2 = _local_midnight(h2, ctx.tz) if days == "1" else h2
            self.a, self.b, self.h1, self.h2, self.d1, self.d2 = (str(v) for v in (a, b, h1, h2, d1, d2))
            self.fixed = True
            return
        self.fixed = False
        self.a = f"(intDiv(toUInt32({f.from_time()}), {MINUTE}) * {MINUTE})"
        self.b = f"((intDiv(toUInt32({f.to_time('now()')}), {MINUTE}) + 1) * {MINUTE})"
        ceil_hour, floor_hour = f"intDiv({self.a} + {HOUR - 1}, {HOUR}) * {HOUR}", f"intDiv({self.b}, {HOUR}) * {HOUR}"
        self.h1 = _if(hours, ceil_hour, self.b)
        self.h2 = _if(hours, floor_hour, self.b)
        floor_day = "toStartOfDay(toDateTime({x}, 'UTC'), " + literal(ctx.tz) + ")"
        # Days are used only where hours are (a whole number of days is one of hours).
        self.d1 = _if(days, floor_day.format(x=f"{ceil_hour} + {DAY - 1}"), self.h2)
        self.d2 = _if(days, floor_day.format(x=floor_hour), self.h2)

    def least(self, x: str, y: str) -> str:
        return str(min(int(x), int(y))) if self.fixed else f"least({x}, {y})"

    def greatest(self, x: str, y: str) -> str:
        return str(max(int(x), int(y))) if self.fixed else f"greatest({x}, {y})"


def _within(lo: str, hi: str) -> str:
    return f"bucket_start >= toDateTime({lo}, 'UTC') AND bucket_start < toDateTime({hi}, 'UTC')"


def _piece(ctx: Context, table: str, facet: str, keys: Sequence[str], columns: Sequence[str], time: str,
           where: str, select: str | None = None) -> str:
    """The newest version of each row of `facet` in `table` within `time` and `where`: bucket_start,
    `select` (default: the keys) and c_<column> for each of `columns`."""
    latest = ", ".join(f"argMax({c}, version) AS c_{c}" for c in columns)
    return (f"SELECT bucket_start, {select or ', '.join(keys)}, {latest} FROM {ctx.db}.{table} "
            f"WHERE facet = {literal(facet)} AND ({time}) AND {where} GROUP BY bucket_start, {', '.join(keys)}")


def _grains(ctx: Context, step: str | None, days: bool) -> tuple[str, str, str]:
    """The time conditions on bucket_start of the minute, hour and day pieces of a read."""
    use_hours = ("1" if int(step) % HOUR == 0 else "0") if step and step.isdigit() else \
        f"({step}) % {HOUR} = 0" if step else "1"
    use_days = "0" if not days else ("1" if int(step) % DAY == 0 else "0") if step and step.isdigit() else \
        f"({step}) % {DAY} = 0" if step else "1"
    b = _Bounds(ctx, use_hours, use_days)
    minutes = f"({_within(b.a, b.least(b.h1, b.b))}) OR ({_within(b.greatest(b.h2, b.h1), b.b)})"
    hours = f"({_within(b.h1, b.least(b.d1, b.h2))}) OR ({_within(b.greatest(b.d2, b.d1), b.h2)})"
    return minutes, hours, _within(b.d1, b.d2)


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
    minutes, hours, whole_days = _grains(ctx, step, days)
    pieces = [_piece(ctx, "rollup_1m", facet, keys, columns, minutes, where),
              _piece(ctx, "rollup_1h", facet, keys, columns, hours, where)]
    if days:
        pieces.append(_piece(ctx, "rollup_1d", facet, keys, columns, whole_days, where))
    body = "\n    UNION ALL\n    ".join(pieces)
    return f"(\n    {body}\n)"


def compact_rows(ctx: Context, facet: str, columns: Sequence[str] = COUNT_COLUMNS,
                 filters: Sequence[str] = SEGMENT, *, step: str | None = None, days: bool = True) -> str:
    """A subquery: the current counts of one column's values (`facet`, sinks.tables.COMPACT_FACETS)
    over the frame's range, as bucket_start, value, branch (the row's branch for the 'branch'
    and 'agent' facets, else '') and c_<column> for each of `columns`; `step` and `days` as in
    rollup_rows.

    Without a filter on any of `filters` (the frame's all_of), the compact rollups
    (rollup_compact_1m/1h/1d, pieces as in rollup_rows); with one, the full rollups, filtered.
    A fixed frame (the CLI, the report) gets the one it needs; a Grafana panel gets both,
    each under a constant condition ($__conditionalAll) the server folds, so it reads one."""
    if facet not in COMPACT_FACETS:
        raise ValueError(f"no compact rollup facet {facet!r}; facets: {', '.join(COMPACT_FACETS)}")
    source, column = COMPACT_FACETS[facet]
    unfiltered = " AND ".join(ctx.frame.all_of(v) for v in filters) or "1=1"
    minutes, hours, whole_days = _grains(ctx, step, days)
    pieces = []
    # k_value, k_branch inside (renamed outside): an alias equal to a key column would be
    # what GROUP BY groups by.
    if unfiltered != "1=1":
        filtered = " AND ".join([f"NOT ({unfiltered})", *(ctx.frame.any_of(v, v) for v in filters)])
        keys = (*SEGMENT, *FACET_COLUMNS[source])
        branch = {"agent": "branch", "branch": "branch"}.get(facet, "''")
        select = f"toString({column or literal('')}) AS k_value, toString({branch}) AS k_branch"
        grains = [("rollup_1m", minutes), ("rollup_1h", hours)] + ([("rollup_1d", whole_days)] if days else [])
        pieces += [_piece(ctx, table, source, keys, columns, time, filtered, select) for table, time in grains]
    if unfiltered != "1=0":
        branch = {"agent": "branch", "branch": "value"}.get(facet, "''")
        select = f"toString(value) AS k_value, toString({branch}) AS k_branch"
        grains = [("rollup_compact_1m", minutes), ("rollup_compact_1h", hours)] + (
            [("rollup_compact_1d", whole_days)] if days else [])
        pieces += [_piece(ctx, table, facet, ("value", "branch"), columns, time, unfiltered, select)
                   for table, time in grains]
    body = "\n    UNION ALL\n    ".join(pieces)
    counts = ", ".join(f"c_{c}" for c in columns)
    return f"(\n  SELECT bucket_start, k_value AS value, k_branch AS branch, {counts} FROM (\n    {body}\n  )\n)"
