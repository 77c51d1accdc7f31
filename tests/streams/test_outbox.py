"""streams.outbox.partition_for: the same partition as Kafka's default partitioner (what
consumers and co-partitioned topics rely on), cached, and the cache bounded."""

from __future__ import annotations

import random

from aiokafka.partitioner import DefaultPartitioner

from hangwatch.streams import outbox


def test_partition_for_equals_the_default_partitioner() -> None:
    rng = random.Random(3)
    reference = DefaultPartitioner()
    for n in (1, 4, 7):
        parts = list(range(n))
        for _ in range(2000):
            key = rng.randbytes(rng.randint(0, 40))
            assert outbox.partition_for("t", key, parts) == reference(key, parts, parts)
            assert outbox.partition_for("t", key, parts) == reference(key, parts, parts)  # cached


def test_the_cache_is_bounded() -> None:
    outbox._partition_cache.clear()
    saved = outbox._PARTITION_CACHE_MAX
    outbox._PARTITION_CACHE_MAX = 10
    try:
        for i in range(35):
            outbox.partition_for("t", str(i).encode(), [0, 1, 2, 3])
        assert len(outbox._partition_cache) <= 10
    finally:
        outbox._PARTITION_CACHE_MAX = saved
        outbox._partition_cache.clear()
