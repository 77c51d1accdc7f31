"""DeliveryGuard's decisions: when to seek, and when not to seek again. The consumer is a
stand-in that records calls; the seeking itself is exercised against the real broker in
tests/integration (test_worker_chaos, test_worker_rates)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import pytest

from hangwatch.streams import delivery
from hangwatch.streams.core.positions import Position
from hangwatch.streams.delivery import DeliveryGuard

TOPIC = "call-outcomes"


class RecordingConsumer:
    """hangwatch.streams.ports.ConsumerControl that records seeks."""

    def __init__(self, ends: dict[int, int], earliest: dict[int, int] | None = None,
                 handed: dict[int, int] | None = None) -> None:
        self.ends = ends
        self.earliest = earliest or {}
        self.handed = ends if handed is None else handed  # the consumer's positions
        self.seeks: list[tuple[int, int]] = []

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        assert topic == TOPIC
        self.seeks.append((partition, offset))

    async def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        return {p: self.ends[p] for p in partitions if p in self.ends}

    async def earliest_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        return {p: self.earliest.get(p, 0) for p in partitions}

    async def handed_out(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        return {p: self.handed[p] for p in partitions if p in self.handed}


def unstick(g: DeliveryGuard, positions: dict[int, int | None]) -> None:
    """As the worker's timers do: one end-offsets request, then the watchdog's decision."""
    ends = asyncio.run(g.end_offsets(positions))
    asyncio.run(g.unstick(positions, ends))


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    now = [1000.0]
    monkeypatch.setattr(delivery.time, "monotonic", lambda: now[0])
    return now


def test_a_gap_seeks_once_until_the_record_comes_or_the_wait_runs_out(clock: list[float]) -> None:
    c = RecordingConsumer({0: 100})
    g = DeliveryGuard(c, TOPIC)
    asyncio.run(g.seek_back({0: 40}))
    clock[0] += 1
    asyncio.run(g.seek_back({0: 40}))  # records fetched before the seek still show the gap
    assert c.seeks == [(0, 40)]
    clock[0] += delivery.RESEEK_AFTER_S
    asyncio.run(g.seek_back({0: 40}))
    assert c.seeks == [(0, 40), (0, 40)]
    g.arrived([0])
    asyncio.run(g.seek_back({0: 55}))  # a new gap after progress: sought at once
    assert c.seeks[-1] == (0, 55)


def test_a_partition_behind_the_end_with_no_record_for_a_while_is_sought(clock: list[float]) -> None:
    c = RecordingConsumer({0: 100, 1: 50})
    g = DeliveryGuard(c, TOPIC)
    unstick(g, {0: 60, 1: 50, 2: None})  # 1 is caught up, 2 has no position yet
    clock[0] += delivery.STALL_AFTER_S - 1
    unstick(g, {0: 60, 1: 50})
    assert c.seeks == []
    clock[0] += 1
    unstick(g, {0: 60, 1: 50})
    assert c.seeks == [(0, 60)]


def test_a_partition_waiting_for_its_turn_in_the_fetches_is_left_alone(clock: list[float]) -> None:
    c = RecordingConsumer({0: 100, 1: 100, 2: 100}, handed={0: 60, 1: 75})  # 2: no position yet
    g = DeliveryGuard(c, TOPIC)
    unstick(g, {0: 60, 1: 60, 2: 60})
    clock[0] += delivery.STALL_AFTER_S
    unstick(g, {0: 60, 1: 60, 2: 60})
    assert c.seeks == [(1, 60)]  # only 1's records 60-74 were handed out and never came
    c.handed[0] = 61  # 0's turn came, but its record went missing on the way
    clock[0] += delivery.STALL_AFTER_S - 1
    unstick(g, {0: 60, 2: 60})
    assert c.seeks == [(1, 60)]  # its wait starts again from the last look
    clock[0] += 1
    unstick(g, {0: 60, 2: 60})
    assert c.seeks == [(1, 60), (0, 60)]


def test_progress_keeps_the_watchdog_quiet(clock: list[float]) -> None:
    c = RecordingConsumer({0: 100})
    g = DeliveryGuard(c, TOPIC)
    for _ in range(5):
        unstick(g, {0: 60})
        clock[0] += delivery.STALL_AFTER_S / 2
        g.arrived([0])
    assert c.seeks == []


def test_a_partition_without_state_starts_at_the_beginning_of_the_retained_log() -> None:
    c = RecordingConsumer({}, earliest={3: 1234})
    g = DeliveryGuard(c, TOPIC)
    positions = {3: Position(), 1: Position(), 2: Position(77)}
    assert asyncio.run(g.start(positions)) == {3: 1234, 1: 0}
    assert [positions[p].next_offset for p in (3, 1, 2)] == [1234, 0, 77]
    assert asyncio.run(g.start({})) == {}
