"""Write one batch to ClickHouse: every data table (call events also to borrower_calls, and
the rollups of the buckets they fall in recomputed: sinks.rollup), then the dead letters
(including rows refused just now), then a line per table in sink_batches. Runs in the writer's storage
thread (the backends block). Unavailable propagates, and the caller retries the whole batch:
tables that were already written deduplicate the repeat."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from hangwatch.sinks import rollup
from hangwatch.sinks.backends import Backend, DataRejected
from hangwatch.sinks.sql import ident
from hangwatch.sinks.tables import BORROWER_CALLS, CALL_EVENTS, DATA_TABLES, DEAD_LETTERS, SINK_BATCHES, TableSpec
from hangwatch.sinks.writer import metrics
from hangwatch.sinks.writer.batch import Batch
from hangwatch.sinks.writer.deadletter import bare_dead_letter, column_from_error, sink_dead_letter
from hangwatch.sinks.writer.isolate import insert_isolating

log = logging.getLogger(__name__)


@dataclasses.dataclass(slots=True)
class TableFlush:
    table: str
    rows: int
    rejected: int
    seconds: float
    newest_event_ms: int = 0  # the newest event time among the rows (sink_batches.newest_event_ms)
    late_rows: int = 0  # stored calls older than the late limit when stored (sink_batches.late_rows)


@dataclasses.dataclass(slots=True)
class FlushReport:
    tables: list[TableFlush] = dataclasses.field(default_factory=list)
    seconds: float = 0.0

    @property
    def rows(self) -> int:
        return sum(t.rows - t.rejected for t in self.tables)

    @property
    def rejected(self) -> int:
        return sum(t.rejected for t in self.tables)


def newest_event_ms(spec: TableSpec, rows: Sequence[Sequence[Any]], refused: set[int]) -> int:
    """The newest event time (ms) among the stored rows of a flush: call_events' occurred_at_ms,
    else the table's time column (epoch seconds in the rows); 0 when there is none. What
    `freshness` and the "pipeline stalled" rule read instead of scanning the tables."""
    if spec is CALL_EVENTS:
        i, scale = spec.columns.index("occurred_at_ms"), 1
    elif spec.time_column is not None:
        i, scale = spec.columns.index(spec.time_column), 1000
    else:
        return 0
    values = [r[i] for n, r in enumerate(rows) if n not in refused and isinstance(r[i], int)]
    return max(values) * scale if values else 0


# borrower_calls takes these columns of each stored call_events row.
_BORROWER_CALLS_FROM_EVENTS = tuple(CALL_EVENTS.columns.index(c) for c in BORROWER_CALLS.columns)
_OCCURRED_AT = CALL_EVENTS.columns.index("occurred_at")


class Flusher:
    """`tz` is the zone whose calendar days the day rollups follow (the `timezone` setting);
    a stored call that happened more than `late_after_s` before its flush counts as late
    (worker.grace_s: the stream had closed its windows)."""

    def __init__(self, backend: Backend, db: str, worker: str, tz: str, late_after_s: int = 0) -> None:
        self.backend = backend
        self.db = ident(db)
        self.worker = worker
        self.tz = tz
        self.late_after_s = late_after_s

    def flush(self, batch: Batch) -> FlushReport:
        t_start = time.monotonic()
        report = FlushReport()
        now_s = int(datetime.now(tz=UTC).timestamp())
        dead = batch.buffers[DEAD_LETTERS.name]
        dead_rows, dead_origins = list(dead.rows), list(dead.origins)
        for spec in DATA_TABLES:
            if spec is DEAD_LETTERS:
                continue
            buf = batch.buffers[spec.name]
            if not buf.rows:
                continue
            t0 = time.monotonic()
            refused = insert_isolating(self.backend, f"{self.db}.{spec.name}", spec.columns, buf.rows)
            for i, err in refused:
                log.warning("ClickHouse refused a %s row (%s[%d]@%d): %s", spec.name, buf.origins[i].topic,
                            buf.origins[i].partition, buf.origins[i].offset, err)
                dead_rows.append(sink_dead_letter(buf.origins[i], "sink_rejected", column_from_error(str(err)),
                                                  str(err), self.worker, now_s))
                dead_origins.append(buf.origins[i])
                metrics.REJECTED.labels(spec.name, "refused_by_clickhouse").inc()
            refused_at = {i for i, _ in refused}
            report.tables.append(TableFlush(spec.name, len(buf.rows), len(refused), time.monotonic() - t0,
                                            newest_event_ms(spec, buf.rows, refused_at)))
            if spec is CALL_EVENTS:
                report.tables[-1].late_rows = self._late(buf.rows, refused_at, now_s)
                report.tables.extend(self._derive_from_events(buf.rows, refused_at))
        if dead_rows:
            t0 = time.monotonic()
            refused_dead = self._write_dead_letters(dead_rows, dead_origins, now_s)
            report.tables.append(TableFlush(DEAD_LETTERS.name, len(dead_rows), refused_dead, time.monotonic() - t0,
                                            newest_event_ms(DEAD_LETTERS, dead_rows, set())))
        self._log_batches(report, now_s)
        report.seconds = time.monotonic() - t_start
        for t in report.tables:
            metrics.ROWS_WRITTEN.labels(t.table).inc(t.rows - t.rejected)
            metrics.BATCHES.labels(t.table).inc()
        metrics.FLUSH_SECONDS.observe(report.seconds)
        return report

    def _late(self, rows: Sequence[Sequence[Any]], refused: set[int], now_s: int) -> int:
        if not self.late_after_s:
            return 0
        limit = now_s - self.late_after_s
        return sum(1 for n, r in enumerate(rows) if n not in refused and int(r[_OCCURRED_AT]) < limit)

    def _derive_from_events(self, rows: Sequence[Sequence[Any]], refused: set[int]) -> list[TableFlush]:
        """The stored events' copies in borrower_calls, then their buckets' rollups recomputed.
        Both repeat harmlessly when the batch is flushed again after a failure."""
        stored = [r for n, r in enumerate(rows) if n not in refused]
        if not stored:
            return []
        t0 = time.monotonic()
        self.backend.insert(f"{self.db}.{BORROWER_CALLS.name}", BORROWER_CALLS.columns,
                            [tuple(r[i] for i in _BORROWER_CALLS_FROM_EVENTS) for r in stored])
        copied = TableFlush(BORROWER_CALLS.name, len(stored), 0, time.monotonic() - t0)
        t0 = time.monotonic()
        touched = rollup.Touched.of((int(r[_OCCURRED_AT]) for r in stored), self.tz)
        statements = rollup.refresh(self.backend, self.db, touched)
        metrics.ROLLUP_SECONDS.observe(time.monotonic() - t0)
        # sink_batches' line for the rollups: buckets recomputed (minutes + hours + days).
        buckets = len(touched.minutes) + len(touched.hours) + len(touched.days)
        return [copied, TableFlush("rollups", buckets, 0, time.monotonic() - t0)] if statements else [copied]

    def _write_dead_letters(self, rows: list[tuple[Any, ...]], origins: list[Any], now_s: int) -> int:
        table = f"{self.db}.{DEAD_LETTERS.name}"
        refused = insert_isolating(self.backend, table, DEAD_LETTERS.columns, rows)
        lost = 0
        for i, err in refused:
            # Keep at least the position and the reason, without the payload that was refused.
            bare = bare_dead_letter(origins[i], "sink_rejected", f"dead letter refused: {err}", self.worker, now_s)
            try:
                self.backend.insert(table, DEAD_LETTERS.columns, [bare])
            except DataRejected as e2:
                lost += 1
                log.error("cannot store even a bare dead letter for %s[%d]@%d: %s (the message stays in Kafka "
                          "until its retention ends)", origins[i].topic, origins[i].partition, origins[i].offset, e2)
        return lost

    def _log_batches(self, report: FlushReport, now_s: int) -> None:
        rows = [(t.table, t.rows, t.rejected, round(t.seconds, 6), now_s, self.worker, t.newest_event_ms, t.late_rows)
                for t in report.tables]
        if not rows:
            return
        try:
            self.backend.insert(f"{self.db}.{SINK_BATCHES.name}", SINK_BATCHES.columns, rows)
        except DataRejected as e:  # the health log must never block the data
            log.error("sink_batches refused the batch log: %s", e)
