"""What the stages need from the outside world, as small protocols. The Faust adapter
(hangwatch.streams.faust_adapter) provides them in the worker; tests provide fakes, so the
stages run and are tested without Faust or a broker.

- InputRecord: one consumed message (a Faust Message has these attributes).
- BatchProducer: the three calls of aiokafka's AIOKafkaProducer that the Outbox uses.
- ConsumerControl: the consumer-side calls of the delivery guard (start offsets, end offsets,
  the consumer's own positions, seeking back).
- ChangelogSource: reads of a stage's changelog partitions (hangwatch.streams.changelog_restore).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

Changes = dict[bytes, bytes | None]  # key -> latest value (None: deleted)
# (key without its "<partition>|" prefix, value held, value read after it) -> the value to keep:
# how a stage fences a replaced owner's late writes out of its restored state
Combine = Callable[[str, bytes, bytes], bytes]


class InputRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp(self) -> float | None: ...  # seconds, as Faust gives it


class RecordBatch(Protocol):
    def append(self, *, key: bytes | None, value: bytes | None, timestamp: int | None) -> Any:
        """The record's metadata, or None when the batch is full."""


class BatchProducer(Protocol):
    async def partitions_for(self, topic: str) -> set[int]: ...
    def create_batch(self) -> RecordBatch: ...
    async def send_batch(self, batch: RecordBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        """Hand the batch over; the future resolves to its metadata (`.offset`: the base offset)."""


class ConsumerControl(Protocol):
    async def earliest_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]: ...
    async def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]: ...
    async def seek(self, topic: str, partition: int, offset: int) -> None: ...
    async def handed_out(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The consumer's position per partition it holds: the next offset it will hand out
        (records below it were handed out). Partitions with no position yet are left out."""


class ChangelogSource(Protocol):
    async def read_latest(self, topic: str, partitions: Iterable[int], combine: Combine | None = None
                          ) -> dict[int, list[tuple[str, bytes]]]:
        """Every live record of the partitions, keys without their "<partition>|" prefix. A key
        read again keeps `combine(key, held, read)` (default: the value read); a deletion
        deletes."""

    async def read_since(self, topic: str, starts: Mapping[int, int | None], combine: Combine | None = None
                         ) -> dict[int, tuple[Changes, int]]:
        """Per partition: the changes from its start offset (None: the beginning) to the end
        offset taken when the read starts, and that end offset. A key read again keeps
        `combine(key, held, read)` (default: the value read)."""
