"""Late-data reconciliation: recompute closed windows of hangup_rates from call_events.

The stream drops events that arrive after its grace period; the sink still stores them in
call_events. For a time range this module recomputes every window cell (all window sizes,
all dimensions) in SQL from `call_events FINAL`, compares it with the stored cell (FINAL =
its highest version) and writes a corrected row, source='reconcile', only where the counts
differ. The corrected row's version is the stored version + 1, so it wins over everything
stored so far; a later stream update of the same cell (versions keep increasing per key)
still wins over it. Running it twice writes nothing the second time.

Only closed windows are touched: windows that end after `closed_before` (now minus the
stream's grace period, by default) are still the stream's business.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from hangwatch.schemas.records import OUTCOME_COUNT_FIELDS
from hangwatch.sinks.backends import Backend
from hangwatch.sinks.catalogue.expr import CONNECTED_LIST, DIMENSION_SQL
from hangwatch.sinks.sql import ident
from hangwatch.sinks.tables import HANGUP_RATES

log = logging.getLogger(__name__)

COUNT_COLUMNS: Final = ("attempts", "connected", *OUTCOME_COUNT_FIELDS)
# Recompute in chunks of about this many seconds, so memory stays bounded for long ranges.
CHUNK_S: Final = 6 * 3600

Key = tuple[int, str, str]  # window_start, dimension, value


@dataclasses.dataclass(slots=True)
class ReconcileReport:
    windows: int = 0  # window cells compared (union of recomputed and stored)
    corrected: int = 0  # rows written (or that would be written in a dry run)
    by_size: dict[int, int] = dataclasses.field(default_factory=dict)  # corrections per window size


def recompute_sql(db: str, size: int, start_s: int, end_s: int) -> str:
    """Counts per (window_start, dimension, value) for the windows of `size` in [start_s, end_s)."""
    pairs = ",\n        ".join(f"('{d}', {expr})" for d, expr in DIMENSION_SQL.items())
    outcomes = ",\n       ".join(f"countIf(outcome = '{o}') AS n_{o}" for o in OUTCOME_COUNT_FIELDS)
    return f"""SELECT intDiv(toUInt32(occurred_at), {size}) * {size} AS ws, dv.1 AS dim, dv.2 AS val,
       count() AS n_attempts, countIf(outcome IN {CONNECTED_LIST}) AS n_connected,
       {outcomes}
FROM {ident(db)}.call_events FINAL
ARRAY JOIN [
        {pairs}
    ] AS dv
WHERE occurred_at >= toDateTime({start_s}, 'UTC') AND occurred_at < toDateTime({end_s}, 'UTC')
GROUP BY ws, dim, val"""


def stored_sql(db: str, size: int, start_s: int, end_s: int) -> str:
    counts = ", ".join(COUNT_COLUMNS)
    return f"""SELECT toUInt32(window_start), toString(dimension), toString(value), {counts}, version
FROM {ident(db)}.hangup_rates FINAL
WHERE window_size_s = {size}
  AND window_start >= toDateTime({start_s}, 'UTC') AND window_start < toDateTime({end_s}, 'UTC')"""


def reconcile(backend: Backend, db: str, since: datetime, until: datetime, window_sizes: Iterable[int], *,
              closed_before: datetime, dry_run: bool = False, now: datetime | None = None) -> ReconcileReport:
    """Correct every closed window of every size that lies in [since, until)."""
    report = ReconcileReport()
    now_s = int((now or datetime.now(tz=UTC)).timestamp())
    limit_s = min(int(until.timestamp()), int(closed_before.timestamp()))
    for size in sorted(set(window_sizes)):
        # Whole windows only: from the window holding `since` to the last one ending by the limit.
        start = int(since.timestamp()) // size * size
        end = limit_s // size * size
        step = max(size, CHUNK_S // size * size)
        fixed = 0
        for lo in range(start, end, step):
            hi = min(lo + step, end)
            rows = _corrections(backend, db, size, lo, hi, now_s, report)
            if rows and not dry_run:
                backend.insert(f"{ident(db)}.{HANGUP_RATES.name}", HANGUP_RATES.columns, rows)
            fixed += len(rows)
        report.by_size[size] = fixed
        report.corrected += fixed
        log.info("reconcile %d s windows %s .. %s: %d corrected%s", size, _iso(start), _iso(end), fixed,
                 " (dry run)" if dry_run else "")
    return report


def _corrections(backend: Backend, db: str, size: int, lo: int, hi: int, now_s: int,
                 report: ReconcileReport) -> list[tuple[object, ...]]:
    recomputed = backend.query(recompute_sql(db, size, lo, hi)).rows
    fresh: dict[Key, tuple[int, ...]] = {(int(r[0]), r[1], r[2]): tuple(int(x) for x in r[3:]) for r in recomputed}
    stored: dict[Key, tuple[tuple[int, ...], int]] = {
        (int(r[0]), r[1], r[2]): (tuple(int(x) for x in r[3:-1]), int(r[-1]))
        for r in backend.query(stored_sql(db, size, lo, hi)).rows}
    zero = (0,) * len(COUNT_COLUMNS)
    out: list[tuple[object, ...]] = []
    for key in fresh.keys() | stored.keys():
        report.windows += 1
        # A stored cell without any stored event (e.g. counted from an event the sink later
        # dead-lettered) is corrected to zero: call_events is the truth here.
        counts = fresh.get(key, zero)
        old_counts, old_version = stored.get(key, (zero, 0))
        if counts == old_counts and key in stored:
            continue
        if key not in stored and counts == zero:
            continue
        ws, dim, val = key
        out.append((size, ws, ws + size, dim, val, *counts, old_version + 1, 1, "reconcile", now_s, now_s))
    return out


def _iso(s: int) -> str:
    return datetime.fromtimestamp(s, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
