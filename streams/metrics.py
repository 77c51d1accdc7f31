"""Prometheus metrics of the worker (exposed with --metrics-port / HANGWATCH_METRICS_PORT)."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable

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
BORROWER_STORE_REBUILDS = Counter("hangwatch_borrower_store_rebuilds_total",
                                  "Local borrower stores marked for a rebuild: their changelog had records "
                                  "another owner wrote in between (a worker replaced while paused)")
ASSIGNED_PARTITIONS = Gauge("hangwatch_assigned_partitions", "Partitions of an input topic this worker owns",
                            ["topic"])
READY = Gauge("hangwatch_ready", "1 when no rebalance is running (partitions settled, state may be loaded and read), "
              "else 0; updated by the worker's timers and batches")
BORROWER_STORE_MEMORY = Gauge("hangwatch_borrower_store_memory_bytes",
                              "RocksDB memory of the borrower store (all partitions held), by kind: memtables, "
                              "table_readers (index and filter blocks outside the block cache), block_cache, "
                              "block_cache_pinned", ["kind"])
MALLOC_BYTES = Gauge("hangwatch_malloc_bytes", "The C heap (glibc's mallinfo2, all arenas): in_use, free "
                     "(held by the process, not returned to the system), mmapped", ["kind"])


def _mallinfo2() -> Callable[[], tuple[int, ...]] | None:
    try:
        libc = ctypes.CDLL(None)
        fn = libc.mallinfo2
    except (OSError, AttributeError):  # not glibc, or glibc before 2.33
        return None

    class Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                    "fsmblks", "uordblks", "fordblks", "keepcost")]

    fn.restype = Info

    def read() -> tuple[int, ...]:
        i = fn()
        return i.uordblks, i.fordblks, i.hblkhd

    return read


def _export_malloc() -> None:
    read = _mallinfo2()
    if read is None:
        return

    def one(n: int) -> float:
        return float(read()[n])

    for n, kind in enumerate(("in_use", "free", "mmapped")):
        MALLOC_BYTES.labels(kind).set_function(functools.partial(one, n))


_export_malloc()
