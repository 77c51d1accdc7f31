"""CPython's cyclic garbage collector, tuned for batch processing, and its pause time as a metric.

Why: CPython starts a young-generation collection every 700 net allocations of container
objects (gc.get_threshold()[0]). A worker batch allocates ~30,000 of them (a Faust message, an
aiokafka record, tuples and dicts per message) that stay alive until the batch is done, so
with the default every batch is scanned ~40 times, its objects are promoted to the older
generations while still in use, and every ~70,000 promotions trigger a FULL collection, which
walks every live container: the state's sets and dicts of ids and cells included. Measured
with the pause metric below on the 202,226-message bench (`python -m bench --only ours`): the
worker spent 1.85-2.0 s of its ~9 s of CPU in the collector (27 full collections of ~60 ms,
2,900 young ones). With a young threshold above one batch's allocations (worker.
gc_young_threshold, 50,000) most batch objects are freed by reference counting before any
collection sees them: 0.28 s (3 full collections), worker CPU 8.8 -> 7.1 s, worker throughput
25.7k -> 31.2k events/s, end to end 19.3k -> 22.4k (`python -m bench --only ours --set
WORKER__GC_YOUNG_THRESHOLD=700` against the default, back to back).

Nothing else changes: cycles are still collected, only in larger steps (a young generation of
at most `young_threshold` objects), and the older generations keep CPython's own ratios. The
sink keeps CPython's 700 (sink.gc_young_threshold): each INSERT leaves clickhouse-driver column
objects in reference cycles that hold the batch's column data, and with 10,000 or 50,000 they
lived long enough to raise the sink's peak RSS from 250 to 310 MB.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import REGISTRY, CounterMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Accumulated in plain lists, not prometheus Counters: a gc callback runs wherever an allocation
# triggers a collection, possibly while the same thread holds a metric's (non-reentrant) lock.
_seconds = [0.0, 0.0, 0.0]
_collections = [0, 0, 0]
_started = [0.0]
_installed = [False]


def _on_gc(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
    else:
        g = info["generation"]
        _seconds[g] += time.perf_counter() - _started[0]
        _collections[g] += 1


class _GcPauseCollector(Collector):
    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily("hangwatch_gc_seconds", "Time spent in CPython's cyclic garbage collector "
                                  "(the process paused), by generation", labels=["generation"])
        for g, s in enumerate(_seconds):
            fam.add_metric([str(g)], s)
        yield fam


def pause_seconds() -> list[float]:
    """Seconds spent in collections so far, per generation (0 young .. 2 full)."""
    return list(_seconds)


def configure(young_threshold: int) -> None:
    """Set the young-generation threshold (older generations keep their ratios) and start
    measuring collection pauses (metric hangwatch_gc_seconds_total). Idempotent."""
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(young_threshold, older, oldest)
    if not _installed[0]:
        _installed[0] = True
        gc.callbacks.append(_on_gc)
        REGISTRY.register(_GcPauseCollector())
    log.info("gc thresholds %s", gc.get_threshold())
