"""Prometheus metrics of the worker (exposed with --metrics-port / HANGWATCH_METRICS_PORT)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter("hangwatch_events_total", "Events consumed from call-outcomes, by result",
                 ["result"])  # counted, duplicate, late, replayed, invalid, replay_skipped, gap, not_owned, not_ready
DEAD_LETTERS = Counter("hangwatch_dead_letters_total", "Messages sent to the DLQ, by error kind", ["kind"])
RATE_UPDATES = Counter("hangwatch_rate_updates_total", "RateUpdate records emitted", ["final"])
FLAGS = Counter("hangwatch_flags_total", "Borrower flag transitions emitted", ["rule", "status"])
ALERTS = Counter("hangwatch_alerts_total", "Spike alert transitions emitted", ["status"])
BATCH_SECONDS = Histogram("hangwatch_batch_seconds", "Time to process one batch, by stage", ["stage"],
                          buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
BATCH_MESSAGES = Histogram("hangwatch_batch_messages", "Messages per batch (one fetch), by stage", ["stage"],
                           buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 20000))
WATERMARK_LAG = Gauge("hangwatch_watermark_lag_seconds", "Wall clock minus watermark, per source partition",
                      ["partition"])
DELIVERY_GAPS = Counter("hangwatch_delivery_gaps_total",
                        "Seeks back after the consumer skipped records (streams.core.positions)", ["topic"])
BORROWERS_SWEPT = Counter("hangwatch_borrowers_swept_total",
                          "Borrower states deleted after no call for longer than the rules' retention")
ASSIGNED_PARTITIONS = Gauge("hangwatch_assigned_partitions", "Partitions of an input topic this worker owns",
                            ["topic"])
READY = Gauge("hangwatch_ready", "1 when no rebalance is running (partitions settled, state may be loaded and read), "
              "else 0; updated by the worker's timers and batches")
