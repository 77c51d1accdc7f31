"""The consumer side of streams.core.positions for one input topic: where a partition with no
persisted position starts, seeking back when the delivery skipped records, and a watchdog
for partitions whose records stopped coming although the broker has more."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from hangwatch.streams import metrics
from hangwatch.streams.core.positions import Position
from hangwatch.streams.ports import ConsumerControl

log = logging.getLogger(__name__)
# A seek is repeated only if the record it asked for has not come after this long: records
# fetched before the seek are still on their way and show the same gap meanwhile.
RESEEK_AFTER_S = 5.0
# A partition behind the broker's end offset with no record for this long, whose records the
# consumer has handed out past the stage's position, is sought to that position (records
# dropped after a seek or a rebalance never come back).
STALL_AFTER_S = 10.0


class DeliveryGuard:
    def __init__(self, control: ConsumerControl, topic_name: str) -> None:
        self.control = control
        self.topic_name = topic_name
        self._seeks: dict[int, tuple[int, float]] = {}
        self._progress: dict[int, float] = {}

    async def start(self, positions: Mapping[int, Position]) -> dict[int, int]:
        """Give positions that hold no offset (first run, or state lost) the beginning of the
        retained log, as auto_offset_reset=earliest, so state is rebuilt from the input
        instead of resuming wherever the group's commit points. Returns what was set."""
        todo = [p for p, pos in positions.items() if pos.next_offset is None]
        if not todo:
            return {}
        earliest = await self.control.earliest_offsets(self.topic_name, todo)
        started = {p: int(earliest.get(p) or 0) for p in todo}
        for p, offset in started.items():
            positions[p].next_offset = offset
            log.info("%s[%d]: no persisted position, starting at offset %d", self.topic_name, p, offset)
        return started

    async def end_offsets(self, partitions: Iterable[int]) -> dict[int, int]:
        """The broker's end offset of each partition (one request)."""
        partitions = list(partitions)
        if not partitions:
            return {}
        return await self.control.end_offsets(self.topic_name, partitions)

    def arrived(self, partitions: Iterable[int]) -> None:
        """Partitions whose records came in order (processed or skipped as replays)."""
        now = time.monotonic()
        for p in partitions:
            self._progress[p] = now
            self._seeks.pop(p, None)

    async def seek_back(self, gaps: Mapping[int, int], why: str = "the delivery skipped records") -> None:
        """Seek each partition of `gaps` back to its next offset (partition -> offset)."""
        now = time.monotonic()
        for p, offset in gaps.items():
            last = self._seeks.get(p)
            if last is not None and last[0] == offset and now - last[1] < RESEEK_AFTER_S:
                continue
            log.warning("%s[%d]: %s; seeking to offset %d", self.topic_name, p, why, offset)
            metrics.DELIVERY_GAPS.labels(self.topic_name).inc()
            await self.control.seek(self.topic_name, p, offset)
            self._seeks[p] = (offset, now)
            self._progress[p] = now

    async def unstick(self, positions: Mapping[int, int | None], ends: Mapping[int, int]) -> None:
        """Seek partitions that are behind the broker's end offset (`ends`, from end_offsets),
        had no record for STALL_AFTER_S and whose records the consumer has handed out beyond
        their position: those records were dropped on the way (a delivery cancelled by a
        rebalance) and will not come again. A partition the consumer has not handed out past
        its position is waiting for its turn in the fetches (a backlog on a busy machine):
        a seek there gains nothing and restarts the partition's fetch."""
        now = time.monotonic()
        overdue = {}
        for p, pos in positions.items():
            if pos is None:
                continue
            end = ends.get(p)
            if end is None or pos >= end:
                self._progress[p] = now  # nothing to wait for
            elif now - self._progress.setdefault(p, now) >= STALL_AFTER_S:
                overdue[p] = pos
        if not overdue:
            return
        handed = await self.control.handed_out(self.topic_name, overdue)
        stalled = {p: pos for p, pos in overdue.items() if handed.get(p, pos) > pos}
        for p in overdue.keys() - stalled.keys():
            self._progress[p] = now  # still in line: look again after another STALL_AFTER_S
        await self.seek_back(stalled, "its records were handed out but never came")

    def forget(self, partitions: Iterable[int]) -> None:
        for p in partitions:
            self._seeks.pop(p, None)
            self._progress.pop(p, None)
