"""When the sink flushes (SinkLoop._flush_due / _poll_timeout): by size, by age, and after the
input went quiet (no sooner than min_flush_gap_s after the last flush). Pure timing logic: the
clock is set by the test; the flush path itself is tested against real servers elsewhere."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from aiokafka import TopicPartition

from hangwatch.platform.settings import Settings, SinkSettings
from hangwatch.sinks.writer import loop as loop_mod
from hangwatch.sinks.writer.loop import SinkLoop


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(loop_mod.time, "monotonic", c.monotonic)
    monkeypatch.setattr("hangwatch.sinks.writer.batch.time.monotonic", c.monotonic)
    return c


def _loop(**sink: Any) -> SinkLoop:
    settings = Settings(sink=SinkSettings(**sink))
    return SinkLoop(settings, router=None, flusher=None, stop=asyncio.Event())  # type: ignore[arg-type]


def _receive(loop: SinkLoop, clock: Clock, rows: int = 1) -> None:
    """What _poll does with records: rows into the batch, the time of the data noted."""
    tp = TopicPartition("t", 0)
    for i in range(rows):
        loop.batch.add("call_events", (i,), None)  # type: ignore[arg-type]
        loop.batch.consumed(tp, i + 1)
    loop._last_data_at = clock.now


def test_empty_batch_is_never_flushed(clock: Clock) -> None:
    loop = _loop()
    clock.now += 100
    assert not loop._flush_due()


def test_flush_by_size_and_by_age(clock: Clock) -> None:
    loop = _loop(batch_rows=10, idle_flush_s=0)
    _receive(loop, clock, 10)
    assert loop._flush_due()  # full
    loop.batch.take()
    _receive(loop, clock, 1)
    clock.now += 0.9
    assert not loop._flush_due()
    clock.now += 0.1
    assert loop._flush_due()  # flush_interval_s (1 s) after the first row


def test_quiet_input_flushes_early(clock: Clock) -> None:
    loop = _loop()  # idle_flush_s 0.3, min_flush_gap_s 0.5, flush_interval_s 1.0
    _receive(loop, clock)
    clock.now += 0.2
    _receive(loop, clock)  # still arriving
    clock.now += 0.25
    assert not loop._flush_due()
    clock.now += 0.1  # 0.35 s without records
    assert loop._flush_due()


def test_quiet_flushes_keep_the_minimum_gap(clock: Clock) -> None:
    loop = _loop()
    loop._last_flush_at = clock.now
    _receive(loop, clock)
    clock.now += 0.35  # quiet, but the last flush was 0.35 s ago
    assert not loop._flush_due()
    clock.now += 0.15
    assert loop._flush_due()


def test_a_steady_stream_is_flushed_by_the_interval(clock: Clock) -> None:
    """Records every 0.1 s: never quiet, so one flush per flush_interval_s as before."""
    loop = _loop()
    flushes = []
    for _ in range(50):  # 5 s
        _receive(loop, clock)
        if loop._flush_due():
            flushes.append(clock.now)
            loop.batch.take()
            loop._last_flush_at = clock.now
        clock.now += 0.1
    assert len(flushes) == 4  # at 1.0, 2.1, 3.2, 4.3 s: every interval, none early
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(flushes))


def test_poll_waits_no_longer_than_the_quiet_time(clock: Clock) -> None:
    loop = _loop()
    assert loop._poll_timeout() == 0.5  # empty batch: nothing to flush
    _receive(loop, clock)
    assert loop._poll_timeout() == pytest.approx(0.3)
    assert _loop(idle_flush_s=0)._poll_timeout() == 0.5
