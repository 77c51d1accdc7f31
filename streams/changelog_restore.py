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
the end offset taken when it starts, keeping the last value of every key (None deletes it).
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

from aiokafka import AIOKafkaConsumer, TopicPartition

from hangwatch.settings import KafkaSettings

log = logging.getLogger(__name__)
# A read that makes no progress for this long fails (the worker crashes and restarts) rather
# than restore a partial state.
STALL_TIMEOUT_S = 60.0


async def read_partition(kafka: KafkaSettings, topic: str, partition: int) -> dict[bytes, bytes]:
    """The live records of one changelog partition: key -> latest value (deleted keys absent)."""
    records, _ = await read_changes(kafka, topic, partition)
    return {k: v for k, v in records.items() if v is not None}


async def read_changes(kafka: KafkaSettings, topic: str, partition: int,
                       start: int | None = None) -> tuple[dict[bytes, bytes | None], int]:
    """The records of one changelog partition from offset `start` (default: the beginning) up
    to its end offset: key -> latest value (None: deleted), and that end offset."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, **kafka.aiokafka_kwargs())
    await consumer.start()
    out: dict[bytes, bytes | None] = {}
    t0 = time.monotonic()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        if start is None:
            await consumer.seek_to_beginning(tp)
        else:  # below the log start (deleted by retention) the consumer resets to the beginning
            consumer.seek(tp, min(start, end))
        progress_at = time.monotonic()
        n = 0
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=20_000)
            records = batch.get(tp, [])
            if not records:
                if time.monotonic() - progress_at > STALL_TIMEOUT_S:
                    raise RuntimeError(f"{topic}[{partition}]: no progress reading the changelog for "
                                       f"{STALL_TIMEOUT_S:.0f} s (at {await consumer.position(tp)} of {end})")
                continue
            progress_at = time.monotonic()
            for r in records:
                if r.offset >= end:
                    break
                n += 1
                if r.key is not None:
                    out[r.key] = r.value
    finally:
        await consumer.stop()
    log.info("%s[%d]: read %d changelog records from offset %s up to %d in %.2f s: %d keys", topic, partition, n,
             start if start is not None else "0", end, time.monotonic() - t0, len(out))
    return out, end


async def stage_partition(kafka: KafkaSettings, topic: str, partition: int) -> list[tuple[str, bytes]]:
    """(key without its "<partition>|" prefix, value) of the live records of one partition of a
    stage's changelog."""
    return strip_partition(await read_partition(kafka, topic, partition), partition)


def strip_partition(records: dict[bytes, bytes], partition: int) -> list[tuple[str, bytes]]:
    """(key without its "<partition>|" prefix, value) of the records the stages wrote for
    `partition` (every key they write has that prefix)."""
    prefix = f"{partition}|".encode()
    n = len(prefix)
    return [(k[n:].decode(), v) for k, v in records.items() if k.startswith(prefix)]
