"""Rollups of call_events (rollup_1m, rollup_1h, rollup_1d; migration 0012), kept by the sink.

After every flush that stored call events, the sink recomputes the buckets those events fall
in (`refresh`): the minutes and hours from the distinct events of call_events, then the local
days from the hour rows. A bucket is always recomputed as a whole, never incremented, so:
- a redelivered or re-sent event is counted once (the recompute takes one row per event_id),
  where a materialized view over call_events would add every inserted copy again;
- a late event, however late, lands in call_events and its buckets are recomputed at once;
  nothing waits for `hangwatch reconcile`;
- a crash between storing the events and refreshing the rollups loses nothing: the offsets
  are not committed yet, the batch is read and flushed again, and the refresh runs again.

Versions: every row of a recompute carries the number of distinct events the recompute saw in
its bucket (for a day: the sum over its hours). Events are never removed, so a later
recompute sees the same events or more, and its version is at least as high; equal versions
mean equal events and equal rows. Two sinks recomputing one bucket concurrently therefore
always leave the more complete result on top, whatever their clocks say, and
ReplacingMergeTree(version) / argMax(..., version) (sinks.catalogue.rollup) pick it.

The compact rollups (rollup_compact_1m/1h/1d, migration 0016: one value of one column per
row, summed over the segments) follow the same way: the touched minutes and hours from their
current rollup_1m/1h rows (version: the bucket's distinct events, as the rollup's), then the
touched days from the compact hours.

`rebuild` recomputes a whole time range (after the upgrade that added the rollups, or to
re-align the day rows after the time zone setting changed), one day per statement.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

from hangwatch.schemas.call_outcome import OUTCOMES
from hangwatch.sinks.backends import Backend
from hangwatch.sinks.catalogue.expr import CONNECTED_LIST, DIMENSION_SQL
from hangwatch.sinks.sql import ident, literal
from hangwatch.sinks.tables import (
    COMPACT_COLUMNS,
    COMPACT_FACETS,
    ROLLUP_1D,
    ROLLUP_1H,
    ROLLUP_1M,
    ROLLUP_COLUMNS,
    ROLLUP_COMPACT_1D,
    ROLLUP_COMPACT_1H,
    ROLLUP_COMPACT_1M,
    ROLLUP_FACETS,
    ROLLUP_SEGMENT,
)

log = logging.getLogger(__name__)

# The segment every rollup row has and the facets that split it further (sinks.tables); the
# split columns in the column order of ROLLUP_COLUMNS.
SEGMENT: Final = ROLLUP_SEGMENT
SPLITS: Final = ("credit_grade", "pre_notified", "first_time_borrower", "hangup_stage", "agent_id")
FACETS: Final = ROLLUP_FACETS
KEY: Final = ("facet", *SEGMENT, *SPLITS)
COUNTS: Final = ("attempts", "connected", *OUTCOMES)
COMPACT_KEY: Final = ("facet", "value", "branch")
if ("bucket_start", *KEY, *COUNTS, "version", "computed_at") != ROLLUP_COLUMNS:
    raise RuntimeError("sinks.tables.ROLLUP_COLUMNS and sinks.rollup disagree on the rollup columns")
if ("bucket_start", *COMPACT_KEY, *COUNTS, "version", "computed_at") != COMPACT_COLUMNS:
    raise RuntimeError("sinks.tables.COMPACT_COLUMNS and sinks.rollup disagree on the compact rollup columns")

# The call_events columns a recompute reads (not the wide ones: extra, ids, Kafka position).
_EVENT_COLUMNS: Final = ("event_id", "occurred_at", "outcome", *SEGMENT, *SPLITS)
MINUTE: Final = 60
HOUR: Final = 3600


@dataclasses.dataclass(frozen=True, slots=True)
class Touched:
    """The buckets a set of event times falls in: minute and hour starts (epoch s, UTC) and
    local day starts with their ends (a day may be 23 or 25 hours long where clocks change)."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[tuple[int, int]]

    @classmethod
    def of(cls, times_s: Iterable[int], tz: str) -> Touched:
        minutes = frozenset(t // MINUTE * MINUTE for t in times_s)
        hours = frozenset(m // HOUR * HOUR for m in minutes)
        return cls(minutes, hours, frozenset(local_day(h, tz) for h in hours))

    def __bool__(self) -> bool:
        return bool(self.minutes)


def local_day(t_s: int, tz: str) -> tuple[int, int]:
    """[start, end) in epoch seconds of the local day (in `tz`) holding t_s."""
    zone = ZoneInfo(tz)
    day = datetime.fromtimestamp(t_s, tz=zone).date()
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return int(start.timestamp()), int(end.timestamp())


def _facet_array(e: str) -> str:
    """ARRAY JOIN list over the tuple `e` of an event (segment, splits, outcome): one tuple
    (facet, split values...) per facet."""
    tuples = []
    for facet, splits in FACETS.items():
        values = [f"{e}.{len(SEGMENT) + i + 1}" if c in splits else "''" for i, c in enumerate(SPLITS)]
        tuples.append(f"({literal(facet)}, {', '.join(values)})")
    return "[" + ", ".join(tuples) + "]"


def _counts(outcome: str) -> str:
    """The COUNTS aggregates over rows whose outcome is the expression `outcome`."""
    per_outcome = ", ".join(f"countIf({outcome} = {literal(o)})" for o in OUTCOMES)
    return f"count(), countIf({outcome} IN {CONNECTED_LIST}), {per_outcome}"


def _in_buckets(column: str, grain: int, starts: Sequence[int]) -> str:
    """`column` in one of the buckets of `grain` starting at `starts` (a time range first, so
    the day partitions and the primary key prune before the bucket test)."""
    lo, hi = min(starts), max(starts) + grain
    ids = ", ".join(str(s // grain) for s in sorted(starts))
    return (f"{column} >= toDateTime({lo}, 'UTC') AND {column} < toDateTime({hi}, 'UTC') "
            f"AND intDiv(toUInt32({column}), {grain}) IN ({ids})")


def from_events_sql(db: str, table: str, grain: int, where: str) -> str:
    """INSERT the recomputed buckets of `grain` (60 or 3600) that `where` selects from call_events.

    call_events is read once: one row per event_id (a redelivered event's copies are
    identical), gathered per bucket with the bucket's number of distinct events (the version),
    then spread out again, one row per facet of each event, and counted. Reading it twice
    (rows, then version) could let an insert land in between and label incomplete rows with
    a complete recompute's version."""
    db = ident(db)
    columns = [DIMENSION_SQL[c] for c in (*SEGMENT, *SPLITS)] + ["toString(outcome)"]
    n = len(columns)
    keys = [f"e.{i + 1}" for i in range(len(SEGMENT))] + [f"f.{i + 2}" for i in range(len(SPLITS))]
    return f"""INSERT INTO {db}.{ident(table)} ({", ".join(ROLLUP_COLUMNS)})
SELECT toDateTime(b, 'UTC'), f.1, {", ".join(keys)}, {_counts(f"e.{n}")}, any(v), now()
FROM
(
    SELECT b, v, e
    FROM
    (
        SELECT intDiv(toUInt32(occurred_at), {grain}) * {grain} AS b, count() AS v,
               groupArray(tuple({", ".join(columns)})) AS evs
        FROM (SELECT {", ".join(_EVENT_COLUMNS)} FROM {db}.call_events WHERE {where} LIMIT 1 BY event_id)
        GROUP BY b
    )
    ARRAY JOIN evs AS e
)
ARRAY JOIN {_facet_array("e")} AS f
GROUP BY b, f.1, {", ".join(keys)}"""


def _days_sql(db: str, source: str, target: str, key: Sequence[str], columns: Sequence[str], day_start: int,
              day_end: int) -> str:
    """INSERT into `target` the local day [day_start, day_end) summed from the current hour rows
    of `source` (rows keyed by `key`, with facet 'all' summing every event once).

    The hour rows are read once: the newest row of each hour and key, then all of them gathered
    with the day's version (the distinct events of its hours: the attempts of the 'all' facet),
    spread out again and summed per key."""
    db = ident(db)
    width = len(key)
    latest = ", ".join(f"argMax({c}, version) AS h_{c}" for c in COUNTS)
    sums = ", ".join(f"sum(r.{width + i + 1})" for i in range(len(COUNTS)))
    keys = ", ".join(f"r.{i + 1}" for i in range(width))
    return f"""INSERT INTO {db}.{target} ({", ".join(columns)})
SELECT toDateTime({day_start}, 'UTC'), {keys}, {sums}, any(v), now()
FROM
(
    SELECT v, r
    FROM
    (
        SELECT sumIf(h_attempts, facet = 'all') AS v,
               groupArray(tuple({", ".join(key)}, {", ".join(f"h_{c}" for c in COUNTS)})) AS rs
        FROM
        (
            SELECT bucket_start, {", ".join(key)}, {latest}
            FROM {db}.{source}
            WHERE bucket_start >= toDateTime({day_start}, 'UTC') AND bucket_start < toDateTime({day_end}, 'UTC')
            GROUP BY bucket_start, {", ".join(key)}
        )
    )
    ARRAY JOIN rs AS r
)
GROUP BY {keys}"""


def days_from_hours_sql(db: str, day_start: int, day_end: int) -> str:
    """INSERT the local day [day_start, day_end) of rollup_1d summed from the current rollup_1h rows."""
    return _days_sql(db, ROLLUP_1H.name, ROLLUP_1D.name, KEY, ROLLUP_COLUMNS, day_start, day_end)


def compact_days_sql(db: str, day_start: int, day_end: int) -> str:
    """INSERT the local day [day_start, day_end) of rollup_compact_1d summed from the current
    rollup_compact_1h rows."""
    return _days_sql(db, ROLLUP_COMPACT_1H.name, ROLLUP_COMPACT_1D.name, COMPACT_KEY, COMPACT_COLUMNS, day_start,
                     day_end)


def _compact_array(r: str) -> str:
    """ARRAY JOIN list over the tuple `r` of a rollup_1h row (facet, segment, splits, counts): one
    (compact facet, value, branch) per compact facet the row's facet feeds; [] for the others."""
    position = {c: i + 2 for i, c in enumerate((*SEGMENT, *SPLITS))}
    branches = []
    for source in dict.fromkeys(f for f, _ in COMPACT_FACETS.values()):
        items = []
        for name, (f, column) in COMPACT_FACETS.items():
            if f != source:
                continue
            value = f"toString({r}.{position[column]})" if column else "''"
            branch = f"toString({r}.{position['branch']})" if name == "agent" else "''"
            items.append(f"({literal(name)}, {value}, {branch})")
        branches.append(f"{r}.1 = {literal(source)}, [{', '.join(items)}]")
    return f"multiIf({', '.join(branches)}, [])"


def compact_sql(db: str, grain: int, where: str) -> str:
    """INSERT the compact minutes or hours (`grain` 60 or 3600) whose rollup_1m/1h rows `where`
    (on bucket_start) selects.

    The rollup is read once, like the day rows: the newest row of each bucket and key (of the
    facets the compact rows come from), gathered per bucket with its version (its 'all'
    attempts: the distinct events the rollup counted), spread out again, one row per compact
    facet it feeds, and summed."""
    source, target = (ROLLUP_1M, ROLLUP_COMPACT_1M) if grain == MINUTE else (ROLLUP_1H, ROLLUP_COMPACT_1H)
    db = ident(db)
    sources = tuple(dict.fromkeys(f for f, _ in COMPACT_FACETS.values()))
    latest = ", ".join(f"argMax({c}, version) AS h_{c}" for c in COUNTS)
    width = len(KEY)
    sums = ", ".join(f"sum(r.{width + i + 1})" for i in range(len(COUNTS)))
    return f"""INSERT INTO {db}.{target.name} ({", ".join(COMPACT_COLUMNS)})
SELECT toDateTime(b, 'UTC'), k.1, k.2, k.3, {sums}, any(v), now()
FROM
(
    SELECT b, v, r
    FROM
    (
        SELECT toUInt32(bucket_start) AS b, sumIf(h_attempts, facet = 'all') AS v,
               groupArray(tuple({", ".join(KEY)}, {", ".join(f"h_{c}" for c in COUNTS)})) AS rs
        FROM
        (
            SELECT bucket_start, {", ".join(KEY)}, {latest}
            FROM {db}.{source.name}
            WHERE facet IN {literal(sources)} AND {where}
            GROUP BY bucket_start, {", ".join(KEY)}
        )
        GROUP BY b
    )
    ARRAY JOIN rs AS r
)
ARRAY JOIN {_compact_array("r")} AS k
GROUP BY b, k.1, k.2, k.3"""


def refresh_statements(db: str, touched: Touched) -> list[str]:
    """The statements that bring the rollups up to date for these buckets, in order: minutes and
    hours from call_events, the compact hours from those hours, then the days (both kinds)
    from the hours just written."""
    if not touched:
        return []
    minutes, hours = sorted(touched.minutes), sorted(touched.hours)
    out = [
        from_events_sql(db, ROLLUP_1M.name, MINUTE, _in_buckets("occurred_at", MINUTE, minutes)),
        from_events_sql(db, ROLLUP_1H.name, HOUR, _in_buckets("occurred_at", HOUR, hours)),
        compact_sql(db, MINUTE, _in_buckets("bucket_start", MINUTE, minutes)),
        compact_sql(db, HOUR, _in_buckets("bucket_start", HOUR, hours)),
    ]
    out += [days_from_hours_sql(db, start, end) for start, end in sorted(touched.days)]
    out += [compact_days_sql(db, start, end) for start, end in sorted(touched.days)]
    return out


def refresh(backend: Backend, db: str, touched: Touched) -> int:
    """Recompute the touched buckets; returns the number of statements run."""
    statements = refresh_statements(db, touched)
    for sql in statements:
        backend.execute(sql)
    return len(statements)


def rebuild(backend: Backend, db: str, tz: str, since: datetime, until: datetime, *, compact_only: bool = False) -> int:
    """Recompute every bucket of the local days that overlap [since, until), one day at a time
    (a statement per grain and day keeps memory bounded and stays within one day partition
    of call_events). `compact_only`: only the compact rollups, from the stored rollup_1h (after
    the upgrade that added them, migration 0016). Returns the number of days rebuilt."""
    days = 0
    start, end = local_day(int(since.timestamp()), tz)
    limit = int(until.timestamp())
    while start < limit:
        where = f"occurred_at >= toDateTime({start}, 'UTC') AND occurred_at < toDateTime({end}, 'UTC')"
        if not compact_only:
            backend.execute(from_events_sql(db, ROLLUP_1M.name, MINUTE, where))
            backend.execute(from_events_sql(db, ROLLUP_1H.name, HOUR, where))
        on_buckets = where.replace("occurred_at", "bucket_start")
        backend.execute(compact_sql(db, MINUTE, on_buckets))
        backend.execute(compact_sql(db, HOUR, on_buckets))
        if not compact_only:
            backend.execute(days_from_hours_sql(db, start, end))
        backend.execute(compact_days_sql(db, start, end))
        days += 1
        log.info("rollups rebuilt for the local day from %s", datetime.fromtimestamp(start, tz=UTC).isoformat())
        start, end = end, local_day(end, tz)[1]
    return days
