"""Batched, retried sends: every record of a batch is sent, then delivery is awaited.

The stages call `flush()` before they persist state and before their batch is acknowledged,
so an offset is never committed for an event whose outputs are not on the broker. A send that
fails (broker down, leader moving) is retried with backoff until it succeeds: a Kafka outage
pauses the pipeline instead of losing records. Every record sent here is idempotent
downstream (snapshots, deterministic ids, versions), so a retry that duplicates is harmless.

Why not Faust's `Topic.send` per record: it costs ~100 µs of Python per record (futures,
callbacks, Faust's producer buffer), and the partition stage writes several records per
event (profile in bench/results/profiles). Records are appended straight into aiokafka batch
builders, one per topic partition, of an AIOKafkaProducer (hangwatch.streams.ports.BatchProducer;
the Faust adapter provides the worker's), and handed over with `send_batch` in order, so
per-partition ordering is kept. hangwatch.streams.checkpoint decides the order between outboxes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiokafka.partitioner import DefaultPartitioner

from hangwatch.streams.ports import BatchProducer

log = logging.getLogger(__name__)
_partitioner = DefaultPartitioner()
# (topic, partition count, key) -> partition: Kafka's default partitioner is murmur2 in pure
# Python (~3 us a key), and the keys repeat (dimension values of the partials, borrowers).
_PARTITION_CACHE_MAX = 100_000
_partition_cache: dict[tuple[str, int, bytes], int] = {}


def partition_for(name: str, key: bytes, parts: list[int]) -> int:
    """The partition Kafka's default partitioner picks for `key` among `parts` (sorted)."""
    ck = (name, len(parts), key)
    p = _partition_cache.get(ck)
    if p is None:
        if len(_partition_cache) >= _PARTITION_CACHE_MAX:
            _partition_cache.clear()
        p = _partition_cache[ck] = _partitioner(key, parts, parts)
    return p

Record = tuple[str, bytes, bytes | None, int | None]  # topic, key, value, partition (None: by key)


def exact_size(value: bytes) -> bytes:
    """orjson.dumps returns bytes whose heap block stays ~4 KB whatever their length; a copy is
    its real size. Worth it for values held for long (a million borrower states: 4,097 -> 72
    bytes each) or in bulk: every record of a checkpoint waits in the outbox until the flush,
    and a batch of calls spread over hours of event time closes tens of thousands of windows
    (100,000 final-window records: ~410 MB of C heap as orjson left them, ~10 MB copied)."""
    return memoryview(value).tobytes()


class Outbox:
    def __init__(self, producer: BatchProducer, max_backoff_s: float = 30.0) -> None:
        self.producer = producer
        self._records: list[Record] = []
        self.max_backoff_s = max_backoff_s
        # (topic name, partition) -> offset of the first / last record delivered there by this outbox
        self.first_offsets: dict[tuple[str, int], int] = {}
        self.last_offsets: dict[tuple[str, int], int] = {}

    def add(self, topic: str, key: bytes, value: bytes | None, partition: int | None = None) -> None:
        """Queue a record; the value is held at its real size (exact_size) until the flush."""
        self._records.append((topic, key, None if value is None else exact_size(value), partition))

    def next_offsets(self, topic: str) -> dict[int, int]:
        """Per partition of `topic`, the offset after the last record this outbox delivered there."""
        return {p: last + 1 for (t, p), last in self.last_offsets.items() if t == topic}

    def first_offsets_of(self, topic: str) -> dict[int, int]:
        """Per partition of `topic`, the offset of the first record this outbox delivered there."""
        return {p: first for (t, p), first in self.first_offsets.items() if t == topic}

    def __len__(self) -> int:
        return len(self._records)

    async def flush(self) -> int:
        """Send everything added so far and wait until the broker acknowledged all of it."""
        todo = self._records
        self._records = []
        sent = len(todo)
        backoff = 0.2
        while todo:
            failed = await _send_all(self.producer, todo, self.first_offsets, self.last_offsets)
            if failed:
                log.warning("%d of %d records were not delivered; retrying in %.1f s", len(failed), len(todo),
                            backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
            todo = failed
        return sent


async def _send_all(producer: BatchProducer, todo: list[Record], first_offsets: dict[tuple[str, int], int],
                    last_offsets: dict[tuple[str, int], int]) -> list[Record]:
    """One attempt: returns the records whose delivery failed; notes the offsets of the first and
    the last record delivered per topic partition in `first_offsets` and `last_offsets`."""
    builders: dict[tuple[str, int], Any] = {}
    members: dict[tuple[str, int], list[Record]] = {}
    handed: list[tuple[Any, list[Record], tuple[str, int]]] = []
    partitions: dict[str, list[int]] = {}
    try:
        for rec in todo:
            name, key, value, p = rec
            if p is None:
                parts = partitions.get(name)
                if parts is None:
                    parts = partitions[name] = sorted(await producer.partitions_for(name))
                p = partition_for(name, key, parts)
            tp = (name, p)
            b = builders.get(tp)
            if b is None:
                b = builders[tp] = producer.create_batch()
                members[tp] = []
            if b.append(key=key, value=value, timestamp=None) is None:  # full: hand it over, start anew
                handed.append((await producer.send_batch(b, name, partition=p), members[tp], tp))
                b = builders[tp] = producer.create_batch()
                members[tp] = []
                b.append(key=key, value=value, timestamp=None)
            members[tp].append(rec)
        for (name, p), b in builders.items():
            if members[(name, p)]:
                handed.append((await producer.send_batch(b, name, partition=p), members[(name, p)], (name, p)))
    except Exception as e:  # e.g. no metadata while the broker is away: retry what was not handed over
        log.warning("sending failed before hand-over: %r", e)
        done = {id(r) for _, recs, _ in handed for r in recs}
        failed = [r for r in todo if id(r) not in done]
    else:
        failed = []
    results = await asyncio.gather(*(f for f, _, _ in handed), return_exceptions=True)
    for (_, recs, tp), r in zip(handed, results, strict=True):
        if isinstance(r, BaseException):
            failed.extend(recs)
        else:  # the batch's RecordMetadata carries its base offset; records follow in order
            last_offsets[tp] = max(last_offsets.get(tp, -1), r.offset + len(recs) - 1)
            first_offsets[tp] = min(first_offsets.get(tp, r.offset), r.offset)
    return failed
