"""The consumer positions the delivery watchdog reads (hangwatch.streams.faust_adapter's
`handed_out`), against the real broker: aiokafka's position of a partition is the next offset
it hands out, not the end of what it fetched, so a partition whose records are fetched but
still waiting in the consumer is not taken for one whose records went missing."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.types import TP
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from hangwatch.streams.faust_adapter import _positions_in_thread
from tests.integration.harness import KafkaEnv

pytestmark = pytest.mark.kafka


class ConsumerThread:
    """The one call of Faust's consumer thread that `_positions_in_thread` makes."""

    def __init__(self, consumer: AIOKafkaConsumer) -> None:
        self.consumer = consumer

    def _ensure_consumer(self) -> AIOKafkaConsumer:
        return self.consumer


def test_the_position_is_what_was_handed_out_not_what_was_fetched(kenv: KafkaEnv) -> None:
    servers = kenv.settings.kafka.bootstrap_servers
    topic = kenv.topic("positions")
    admin = KafkaAdminClient(bootstrap_servers=servers)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    for i in range(50):
        producer.send(topic, value=b"%d" % i, partition=0)
    producer.flush()
    producer.close()

    async def run() -> tuple[int, int, dict[int, int], dict[int, int]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            tp = TopicPartition(topic, 0)
            consumer.assign([tp])
            first = await consumer.getmany(tp, timeout_ms=10_000, max_records=10)
            thread = ConsumerThread(consumer)
            after_ten = await _positions_in_thread(thread, [TP(topic, 0), TP(topic, 1)])
            rest = await consumer.getmany(tp, timeout_ms=10_000, max_records=100)
            after_all = await _positions_in_thread(thread, [TP(topic, 0)])
            return len(first.get(tp, [])), len(rest.get(tp, [])), after_ten, after_all
        finally:
            await consumer.stop()

    first, rest, after_ten, after_all = asyncio.run(run())
    assert first == 10 and rest == 40  # all 50 came in one fetch; 10, then 40, were handed out
    assert after_ten == {0: 10}  # partition 1 is not held: left out
    assert after_all == {0: 50}
