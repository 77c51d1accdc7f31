"""What the sink has read but not yet stored: rows per table (with the message each came
from, to dead-letter it if ClickHouse refuses it) and the next offset per partition, which
may be committed once every row of the batch is stored."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from typing import Any

from aiokafka import TopicPartition

from hangwatch.sinks.convert import Message


@dataclasses.dataclass(slots=True)
class TableBuffer:
    rows: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    origins: list[Message] = dataclasses.field(default_factory=list)


class Batch:
    def __init__(self, tables: Iterable[str]) -> None:
        self.buffers = {t: TableBuffer() for t in tables}
        self.offsets: dict[TopicPartition, int] = {}
        self.started_at: float | None = None  # monotonic time of the first message

    def add(self, table: str, row: tuple[Any, ...], origin: Message) -> None:
        buf = self.buffers[table]
        buf.rows.append(row)
        buf.origins.append(origin)

    def consumed(self, tp: TopicPartition, next_offset: int) -> None:
        """A message of tp was handled (stored in a buffer, dead-lettered or skipped)."""
        if self.started_at is None:
            self.started_at = time.monotonic()
        self.offsets[tp] = next_offset

    @property
    def rows(self) -> int:
        return sum(len(b.rows) for b in self.buffers.values())

    @property
    def largest(self) -> int:
        return max((len(b.rows) for b in self.buffers.values()), default=0)

    def is_empty(self) -> bool:
        return not self.offsets

    def age(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    def merged_with(self, newer: Batch) -> Batch:
        """This batch followed by the rows read after it (used when a flush failed)."""
        for t, buf in newer.buffers.items():
            self.buffers[t].rows.extend(buf.rows)
            self.buffers[t].origins.extend(buf.origins)
        self.offsets.update(newer.offsets)
        return self

    def take(self) -> Batch:
        """Hand the contents over to a new Batch object and start empty."""
        out = Batch(self.buffers)
        out.buffers, out.offsets, out.started_at = self.buffers, self.offsets, self.started_at
        self.buffers = {t: TableBuffer() for t in self.buffers}
        self.offsets = {}
        self.started_at = None
        return out
