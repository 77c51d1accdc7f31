"""hangwatch.platform.gc_policy: the young threshold is applied, the older ratios kept, and the pause
metric counts real collections."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest
from prometheus_client import generate_latest

from hangwatch.platform import gc_policy
from hangwatch.platform.settings import Settings


@pytest.fixture
def restore_thresholds() -> Iterator[None]:
    saved = gc.get_threshold()
    yield
    gc.set_threshold(*saved)


def test_young_threshold_set_and_older_ratios_kept(restore_thresholds: None) -> None:
    _, older, oldest = gc.get_threshold()
    gc_policy.configure(12_345)
    assert gc.get_threshold() == (12_345, older, oldest)
    gc_policy.configure(50_000)  # again: no second callback, no duplicate metric registration
    assert gc.get_threshold() == (50_000, older, oldest)
    assert gc.callbacks.count(gc_policy._on_gc) == 1


def test_pause_metric_counts_collections(restore_thresholds: None) -> None:
    gc_policy.configure(50_000)
    before = gc_policy.pause_seconds()
    n_before = list(gc_policy._collections)
    junk = [[i] for i in range(200_000)]  # something for a full collection to walk
    gc.collect()
    del junk
    assert gc_policy._collections[2] >= n_before[2] + 1  # this one (the allocations may trigger more)
    assert gc_policy.pause_seconds()[2] > before[2]
    text = generate_latest().decode()
    assert 'hangwatch_gc_seconds_total{generation="2"}' in text


def test_worker_default_is_above_one_batch_of_allocations() -> None:
    s = Settings()
    # ~6 tracked objects per message of a full batch must fit in the young generation
    assert s.worker.gc_young_threshold >= 6 * s.worker.batch_max
    assert s.sink.gc_young_threshold == 700  # CPython's: the driver's cycles hold column data
