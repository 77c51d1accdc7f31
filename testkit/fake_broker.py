"""An in-memory broker that provides every port of hangwatch.streams.ports (producer, consumer
control, changelog reads), so the stages run without Faust or Kafka: topics are lists of records
per partition, sends append to them in order and are logged with every acknowledgement in one
event list (the commit order)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hangwatch.streams.changelog_restore import keep
from hangwatch.streams.outbox import partition_for
from hangwatch.streams.ports import Changes, Combine
from testkit.fakes import FakeMessage


@dataclass(frozen=True)
class _Meta:
    offset: int


class FakeBatch:
    def __init__(self, max_records: int) -> None:
        self.records: list[tuple[bytes | None, bytes | None]] = []
        self.max_records = max_records

    def append(self, *, key: bytes | None, value: bytes | None, timestamp: int | None) -> Any:
        if len(self.records) >= self.max_records:
            return None
        self.records.append((key, value))
        return object()


class FakeBroker:
    def __init__(self, partitions: Mapping[str, int], batch_records: int = 1000) -> None:
        self.partitions = dict(partitions)
        self.logs: dict[tuple[str, int], list[tuple[bytes | None, bytes | None]]] = {
            (t, p): [] for t, n in self.partitions.items() for p in range(n)}
        # ("send", topic, key) per record delivered / ("ack", "<n> records", b""), in order
        self.events: list[tuple[str, str, bytes]] = []
        self.seeks: list[tuple[str, int, int]] = []
        self.failures: dict[str, int] = {}  # topic -> send_batch calls still to fail
        self.batch_records = batch_records

    # ---- BatchProducer ------------------------------------------------------------------------
    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions[topic]))

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.batch_records)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.failures.get(topic, 0) > 0:
            self.failures[topic] -= 1
            fut.set_exception(ConnectionError(f"{topic}[{partition}]: broker unavailable"))
            return fut
        log = self.logs[(topic, partition)]
        base = len(log)
        log.extend(batch.records)
        self.events.extend(("send", topic, k or b"") for k, _ in batch.records)
        fut.set_result(_Meta(base))
        return fut

    # ---- ConsumerControl ------------------------------------------------------------------------
    async def earliest_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        return dict.fromkeys(partitions, 0)

    async def end_offsets(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        return {p: len(self.logs[(topic, p)]) for p in partitions}

    async def seek(self, topic: str, partition: int, offset: int) -> None:
        self.seeks.append((topic, partition, offset))

    async def handed_out(self, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        # the tests hand records to the stages themselves: to the consumer, all were handed out
        return await self.end_offsets(topic, partitions)

    # ---- ChangelogSource -------------------------------------------------------------------------
    async def read_latest(self, topic: str, partitions: Iterable[int], combine: Combine | None = None
                          ) -> dict[int, list[tuple[str, bytes]]]:
        out = {}
        for p in partitions:
            prefix = f"{p}|".encode()
            changes, _ = self._changes(topic, p, None, combine, prefix)
            out[p] = [(k[len(prefix):].decode(), v) for k, v in changes.items()
                      if v is not None and k.startswith(prefix)]
        return out

    async def read_since(self, topic: str, starts: Mapping[int, int | None], combine: Combine | None = None
                         ) -> dict[int, tuple[Changes, int]]:
        return {p: self._changes(topic, p, start, combine, f"{p}|".encode()) for p, start in starts.items()}

    def _changes(self, topic: str, p: int, start: int | None, combine: Combine | None = None,
                 prefix: bytes = b"") -> tuple[Changes, int]:
        log = self.logs[(topic, p)]
        changes: Changes = {}
        for key, value in log[start or 0:]:
            if key is not None:
                changes[key] = keep(combine, prefix, key, changes.get(key), value)
        return changes, len(log)

    # ---- test helpers -----------------------------------------------------------------------------
    def produce(self, topic: str, key: bytes, value: bytes | None) -> None:
        """Append a record where Kafka's default partitioner puts `key`."""
        p = partition_for(topic, key, list(range(self.partitions[topic])))
        self.logs[(topic, p)].append((key, value))

    def consume(self, topic: str, positions: dict[int, int], limit: int) -> list[FakeMessage]:
        """Up to `limit` records per partition from `positions` (moved on), partition by
        partition as a fetch delivers them."""
        out = []
        for p in range(self.partitions[topic]):
            log = self.logs[(topic, p)]
            start = positions.get(p, 0)
            for off in range(start, min(len(log), start + limit)):
                key, value = log[off]
                out.append(FakeMessage(topic, p, off, key, value))
            positions[p] = min(len(log), start + limit)
        return out

    def values(self, topic: str) -> list[bytes]:
        return [v for (t, _), log in sorted(self.logs.items()) if t == topic for _, v in log if v is not None]

    def acknowledge(self, records: list[Any]) -> None:
        self.events.append(("ack", f"{len(records)} records", b""))
