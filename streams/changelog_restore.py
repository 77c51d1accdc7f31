"""Restore a stage's partition state straight from its changelog partition on the broker.

The rates and merge stages keep their state in memory-store Faust tables and rebuild a
partition's state when they are assigned it. They used to read it from Faust's recovered
table; the chaos test (tests/integration/test_worker_chaos.py) showed that table missing
records whenever a worker was assigned partitions and rebalanced again while recovering them:
partition states came back with a fifth of their cells and seen ids, recovery reported
complete, and the rates of the windows those cells held came out low (about one run in three).
Clearing the table and Faust's recovery offsets at every rebalance, so that recovery re-read
everything, did not cure it either; the stages no longer depend on it. (The borrower table
still uses Faust's recovery: it is keyed by borrower, read per key, and too large to re-read
at every rebalance.)

So each stage reads its partition's changelog itself: a plain consumer (no group) assigned the
one partition, from the beginning up to the end offset taken when it starts, keeping the last
value of every key (None deletes it). The worker that was just assigned the partition is its
only writer from now on, so that end offset covers everything the previous owner wrote; if a
crashed owner's last records land after it, what is read is still a state the owner wrote in
order (cells and seen ids before the position record), which the replay from that position
completes (streams.core.partition_rates explains why a replay is exact). The changelogs are
compacted and expire after a day or two: a partition is tens of thousands of records, read in
well under a second.
"""

from __future__ import annotations

import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TableT

from hangwatch.settings import KafkaSettings

log = logging.getLogger(__name__)
# A read that makes no progress for this long fails (the worker crashes and restarts) rather
# than restore a partial state.
STALL_TIMEOUT_S = 60.0


async def read_partition(kafka: KafkaSettings, topic: str, partition: int) -> dict[bytes, bytes]:
    """The live records of one changelog partition: key -> latest value (deleted keys absent)."""
    tp = TopicPartition(topic, partition)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=None, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=8 * 1024 * 1024, **kafka.aiokafka_kwargs())
    await consumer.start()
    out: dict[bytes, bytes] = {}
    t0 = time.monotonic()
    try:
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        await consumer.seek_to_beginning(tp)
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
                if r.key is None:
                    continue
                if r.value is None:
                    out.pop(r.key, None)
                else:
                    out[r.key] = r.value
    finally:
        await consumer.stop()
    log.info("%s[%d]: read %d changelog records up to offset %d in %.2f s: %d live keys",
             topic, partition, n, end, time.monotonic() - t0, len(out))
    return out


async def table_partition(kafka: KafkaSettings, table: TableT, partition: int) -> list[tuple[str, bytes]]:
    """(key without its "<partition>|" prefix, value) of the live records of one partition of a
    stage's table, read from its changelog."""
    records = await read_partition(kafka, table.changelog_topic.get_topic_name(), partition)
    return strip_partition(records, partition)


def strip_partition(records: dict[bytes, bytes], partition: int) -> list[tuple[str, bytes]]:
    """(key without its "<partition>|" prefix, value) of the records the stages wrote for
    `partition` (every key they write has that prefix)."""
    prefix = f"{partition}|".encode()
    n = len(prefix)
    return [(k[n:].decode(), v) for k, v in records.items() if k.startswith(prefix)]
