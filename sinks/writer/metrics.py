"""Prometheus metrics of the sink (exposed when settings.metrics_port is set)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS_WRITTEN = Counter("hangwatch_sink_rows_written_total", "Rows ClickHouse accepted", ["table"])
BATCHES = Counter("hangwatch_sink_batches_total", "INSERT batches ClickHouse accepted", ["table"])
REJECTED = Counter("hangwatch_sink_rejected_rows_total",
                   "Rows sent to dead_letters by the sink (unreadable record or refused by ClickHouse)",
                   ["table", "reason"])
INVALID_EVENTS = Counter("hangwatch_sink_invalid_events_total",
                         "call-outcomes messages skipped as contract violations (the worker dead-letters them)",
                         ["kind"])
RETRIES = Counter("hangwatch_sink_retries_total", "Failed flush attempts that will be retried (ClickHouse down)")
COMMITS = Counter("hangwatch_sink_commits_total", "Kafka offset commits after a successful flush")
FLUSH_SECONDS = Histogram("hangwatch_sink_flush_seconds", "Duration of a flush (all tables)",
                          buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
PAUSED = Gauge("hangwatch_sink_paused", "1 while consumption is paused because ClickHouse is unavailable")
BUFFERED_ROWS = Gauge("hangwatch_sink_buffered_rows", "Rows waiting for the next flush")
ROLLUP_SECONDS = Histogram("hangwatch_sink_rollup_seconds", "Recomputing the rollups of a flush's buckets",
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
