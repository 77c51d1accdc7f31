"""Which delivered records a stage processes, decided by the next offset the stage persisted.

Why the stages do not trust the consumer group's committed offset alone: after a rebalance
faust-streaming acknowledges the records it skips because they were fetched in the previous
consumer generation, so its commit can cover offsets no stage processed, and a later seek to
that commit makes the fetch position jump past them (measured here: 16 records of one
partition never delivered after a member left; upstream faust-streaming #216, #221, #312).
So each stage persists the next offset it needs, after everything the records before it
produced, and checks every delivered record against it:

- offset < next: processed and persisted already, a replay: skip it (acknowledge it);
- offset == next: process it;
- offset > next: records are missing from the delivery: do not process or acknowledge it,
  and seek the consumer back to `next`.
"""

from __future__ import annotations

from typing import Literal

Delivery = Literal["process", "replay", "gap"]


def classify(next_offset: int, offset: int) -> Delivery:
    if offset == next_offset:
        return "process"
    return "replay" if offset < next_offset else "gap"


class Position:
    """The next offset of one partition, as a stage persists it."""

    __slots__ = ("dirty", "next_offset")

    def __init__(self, next_offset: int | None = None) -> None:
        # None until the shell sets the start (or, without a shell, until the first record)
        self.next_offset = next_offset
        self.dirty = False

    def accept(self, offset: int) -> Delivery:
        """Classify the record at `offset`; a record to process advances the position."""
        d: Delivery = "process" if self.next_offset is None else classify(self.next_offset, offset)
        if d == "process":
            self.next_offset = offset + 1
            self.dirty = True
        return d
