"""Restore a stage's partition state straight from its changelog partition on the broker.

Every stage keeps its state itself and rebuilds a partition's state when it is assigned it:
the rates and merge stages in memory (the whole changelog partition is read), the borrower
store in RocksDB (only the records after the offset its local database already holds). Faust's
table recovery is not used: the chaos test (tests/integration/test_worker_chaos.py) showed its
recovered tables missing records whenever a worker was assigned partitions and rebalanced again
while recovering them (partition states came back with a fifth of their cells and seen ids,
recovery reported complete, and the rates of the windows those cells held came out low, about
one run in three), and it read ~10,000 records/s, so a rebalance paused a worker for seconds.

Each read is a plain consumer (no group) assigned the one partition, from a start offset up to
the end offset taken when it starts, keeping the last value of every key (None deletes it), or
what the stage's `combine` keeps of the values read in order: the rates and merge stages keep
the newest by content, so a replaced owner's late writes cannot roll a restored state back
(docs/architecture.md, "How the numbers stay exact": fencing a replaced owner).
The worker that was just assigned the partition is its only writer from now on, so that end
offset covers everything the previous owner wrote; if a crashed owner's last records land after
it, what is read is still a state the owner wrote in order (cells and seen ids before the
position record), which the replay from that position completes (streams.core.partition_rates
explains why a replay is exact). A partition is tens of thousands of records, read in well
under a second.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition

from hangwatch.platform.settings import KafkaSettings
from hangwatch.streams.ports import Changes, Combine

log = logging.getLogger(__name__)
# A read that makes no progress for this long fails (the worker crashes and restarts) rather
# than restore a partial state.
STALL_TIMEOUT_S = 60.0




async def read_partition(kafka: KafkaSettings, topic: str, partition: int) -> dict[bytes, bytes]:
    """The live records of one changelog partition: key -> latest value (deleted keys absent)."""
    records, _ = await read_changes(kafka, topic, partition)
    return {k: v for k, v in records.items() if v is not None}


async def read_changes(kafka: KafkaSettings, topic: str, partition: int,
                       start: int | None = None) -> tuple[Changes, int]:
    """The records of one changelog partition from offset `start` (default: the beginning) up
    to its end offset, and that end offset."""
    tp = TopicPartition(topic, partition)
    return (await read_many(kafka, {tp: start}))[tp]


async def read_many(kafka: KafkaSettings, starts: dict[TopicPartition, int | None],
                    combine: Combine | None = None) -> dict[TopicPartition, tuple[Changes, int]]:
    """`read_changes` for several changelog partitions (of one or more topics) with one consumer:
    a worker assigned partitions restores them all in one pass. With `combine`, a key read again
    keeps what `combine` returns (hangwatch.streams.ports.Combine) instead of the later value."""
    if not starts:
        return {}
    tps = list(starts)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, **kafka.aiokafka_kwargs())
    await consumer.start()
    out: dict[TopicPartition, Changes] = {tp: {} for tp in tps}
    counts = dict.fromkeys(tps, 0)
    t0 = time.monotonic()
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp, start in starts.items():
            if start is None:
                await consumer.seek_to_beginning(tp)
            else:  # below the log start (deleted by retention) the consumer resets to the beginning
                consumer.seek(tp, min(start, ends[tp]))
        progress_at = time.monotonic()
        todo = [tp for tp in tps if await consumer.position(tp) < ends[tp]]
        while todo:
            batch = await consumer.getmany(*todo, timeout_ms=500, max_records=20_000)
            if not any(batch.values()):
                if time.monotonic() - progress_at > STALL_TIMEOUT_S:
                    at = {f"{tp.topic}[{tp.partition}]": (await consumer.position(tp), ends[tp]) for tp in todo}
                    raise RuntimeError(f"no progress reading changelogs for {STALL_TIMEOUT_S:.0f} s "
                                       f"(position, end offset: {at})")
                continue
            progress_at = time.monotonic()
            for tp, records in batch.items():
                changes, end = out[tp], ends[tp]
                prefix = f"{tp.partition}|".encode()
                for r in records:
                    if r.offset >= end:
                        break
                    counts[tp] += 1
                    if r.key is not None:
                        changes[r.key] = keep(combine, prefix, r.key, changes.get(r.key), r.value)
            todo = [tp for tp in todo if await consumer.position(tp) < ends[tp]]
    finally:
        await consumer.stop()
    secs = time.monotonic() - t0
    for tp in tps:
        log.info("%s[%d]: read %d changelog records from offset %s up to %d in %.2f s: %d keys", tp.topic,
                 tp.partition, counts[tp], starts[tp] if starts[tp] is not None else "0", ends[tp], secs,
                 len(out[tp]))
    return {tp: (out[tp], ends[tp]) for tp in tps}


def keep(combine: Combine | None, prefix: bytes, key: bytes, held: bytes | None, read: bytes | None
         ) -> bytes | None:
    """The value of `key` after reading `read` while holding `held` (None: absent or deleted)."""
    if combine is None or held is None or read is None or not key.startswith(prefix):
        return read
    return combine(key[len(prefix):].decode(), held, read)


async def stage_partitions(kafka: KafkaSettings, topic: str, partitions: Iterable[int],
                           combine: Combine | None = None) -> dict[int, list[tuple[str, bytes]]]:
    """Per partition, (key without its "<partition>|" prefix, value) of the live records of a
    stage's changelog partitions, read in one pass."""
    got = await read_many(kafka, {TopicPartition(topic, p): None for p in partitions}, combine)
    return {tp.partition: strip_partition({k: v for k, v in changes.items() if v is not None}, tp.partition)
            for tp, (changes, _) in got.items()}


def strip_partition(records: dict[bytes, bytes], partition: int) -> list[tuple[str, bytes]]:
    """(key without its "<partition>|" prefix, value) of the records the stages wrote for
    `partition` (every key they write has that prefix)."""
    prefix = f"{partition}|".encode()
    n = len(prefix)
    return [(k[n:].decode(), v) for k, v in records.items() if k.startswith(prefix)]


class KafkaChangelogSource:
    """hangwatch.streams.ports.ChangelogSource on the broker: the reads above."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka

    async def read_latest(self, topic: str, partitions: Iterable[int], combine: Combine | None = None
                          ) -> dict[int, list[tuple[str, bytes]]]:
        return await stage_partitions(self.kafka, topic, partitions, combine)

    async def read_since(self, topic: str, starts: Mapping[int, int | None], combine: Combine | None = None
                         ) -> dict[int, tuple[Changes, int]]:
        got = await read_many(self.kafka, {TopicPartition(topic, p): s for p, s in starts.items()}, combine)
        return {tp.partition: v for tp, v in got.items()}
