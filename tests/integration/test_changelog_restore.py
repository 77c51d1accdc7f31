"""streams.changelog_restore against the real broker: a partition's live records, last value
per key, tombstones applied, other partitions and records after the end offset left out."""

from __future__ import annotations

import asyncio

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from streams.changelog_restore import read_partition, strip_partition
from tests.integration.harness import KafkaEnv

pytestmark = pytest.mark.kafka


def _new_topic(kenv: KafkaEnv, name: str, partitions: int) -> str:
    """A topic of the test's private set (deleted with it)."""
    topic = kenv.topic(name)
    admin = KafkaAdminClient(bootstrap_servers=kenv.settings.kafka.bootstrap_servers)
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    admin.close()
    return topic


def test_read_partition_keeps_the_last_value_of_each_live_key(kenv: KafkaEnv) -> None:
    kafka = kenv.settings.kafka
    topic = _new_topic(kenv, "restore-test", partitions=2)
    producer = KafkaProducer(bootstrap_servers=kafka.bootstrap_servers, acks="all")
    writes: list[tuple[int, bytes, bytes | None]] = [
        (1, b"1|a", b"v1"), (1, b"1|b", b"v2"), (0, b"0|x", b"other partition"), (1, b"1|a", b"v3"),
        (1, b"1|b", None), (1, b"1|c", b"v4"), (1, b"1|c", b"v5"),
    ]
    for partition, key, value in writes:
        producer.send(topic, key=key, value=value, partition=partition)
    producer.flush()

    got = asyncio.run(read_partition(kafka, topic, 1))
    assert got == {b"1|a": b"v3", b"1|c": b"v5"}
    assert sorted(strip_partition(got, 1)) == [("a", b"v3"), ("c", b"v5")]
    assert asyncio.run(read_partition(kafka, topic, 0)) == {b"0|x": b"other partition"}
    producer.close()


def test_read_partition_of_an_empty_changelog(kenv: KafkaEnv) -> None:
    topic = _new_topic(kenv, "restore-empty", partitions=1)
    assert asyncio.run(read_partition(kenv.settings.kafka, topic, 0)) == {}
