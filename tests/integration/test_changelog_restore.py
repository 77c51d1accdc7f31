"""hangwatch.streams.changelog_restore and hangwatch.streams.borrower_store against the real broker: a partition's
live records, last value per key, tombstones applied, other partitions and records after the end
offset left out; a borrower store taking a partition over from the changelog and catching up
from the offset its local copy holds."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from hangwatch.streams import changelogs
from hangwatch.streams.borrower_store import OFFSET_KEY, BorrowerStore
from hangwatch.streams.changelog_restore import KafkaChangelogSource, read_partition, strip_partition
from hangwatch.streams.changelogs import ensure_changelogs
from hangwatch.streams.checkpoint import Checkpoint
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


_producers: list[Any] = []


async def _borrower_store(kenv: KafkaEnv, data_dir: Path, kind: str = "rocksdb") -> BorrowerStore:
    """A store as a worker builds it; its writes are committed by `_commit` through a started
    producer (stopped by `_stop_producers`)."""
    s = kenv.settings.model_copy(deep=True)
    s.worker.data_dir = data_dir
    s.worker.borrower_store = kind  # type: ignore[assignment]
    ensure_changelogs(s.kafka, s.worker.app_id)
    if not _producers:
        producer = AIOKafkaProducer(acks="all", **s.kafka.aiokafka_kwargs())
        await producer.start()
        _producers.append(producer)
    return BorrowerStore(changelogs.BORROWERS.name(s.worker.app_id), KafkaChangelogSource(s.kafka), s.worker)


async def _commit(store: BorrowerStore) -> None:
    """What a stage's checkpoint does with the store: changelog records, then the local store."""
    await Checkpoint(_producers[0], [store]).commit()


async def _stop_producers() -> None:
    while _producers:
        await _producers.pop().stop()


@pytest.mark.parametrize("kind", ["rocksdb", "memory"])
def test_borrower_store_takes_over_a_partition_from_its_changelog(kenv: KafkaEnv, tmp_path: Path,
                                                                  kind: str) -> None:
    """Worker A writes through the changelog; worker B (its own data dir) loads the partition and
    sees A's last values and deletes; A's store, reopened later, catches up with B's writes
    from the offset it had stored, not from the beginning."""
    async def run() -> None:
        a = await _borrower_store(kenv, tmp_path / "a", kind)
        await a.load([1])
        a.put(1, b"1|x", b"x1")
        a.put(1, b"1|y", b"y1")
        await _commit(a)
        a.put(1, b"1|x", b"x2")
        a.put(1, b"1|y", None)
        await _commit(a)
        a.close()

        b = await _borrower_store(kenv, tmp_path / "b", kind)
        await b.load([1])
        assert b.get_many([(1, b"1|x"), (1, b"1|y")]) == [b"x2", None]
        b.put(1, b"1|z", b"z1")
        await _commit(b)
        b.close()

        again = await _borrower_store(kenv, tmp_path / "a", kind)
        await again.load([1])
        assert again.get_many([(1, b"1|x"), (1, b"1|y"), (1, b"1|z")]) == [b"x2", None, b"z1"]
        if kind == "rocksdb":  # the local offset after A's 4 records; B's 1 record read on top
            assert again._dbs[1].get(OFFSET_KEY) == b"5"
        again.close()
        await _stop_producers()

    asyncio.run(run())


def test_borrower_store_rebuilds_when_the_changelog_is_behind_its_local_copy(kenv: KafkaEnv, tmp_path: Path) -> None:
    """A local database claiming more of the changelog than exists (the topic was recreated) is
    rebuilt from the changelog, not trusted."""
    async def run() -> None:
        st = await _borrower_store(kenv, tmp_path)
        st.open_local(0)
        st.put(0, b"0|stale", b"from an older changelog")
        held, st._overlay = st._overlay, {}
        st.write_at(held, {0: 1000})
        st.close()

        st = await _borrower_store(kenv, tmp_path)
        await st.load([0])
        assert st.get(0, b"0|stale") is None
        assert st._dbs[0].get(OFFSET_KEY) == b"0"
        st.close()
        await _stop_producers()

    asyncio.run(run())


def test_topics_are_created_with_the_configured_replication_factor(kenv: KafkaEnv) -> None:
    """kafka.replication_factor reaches the broker: this one-broker cluster refuses 2 replicas
    for the changelogs (and creates them with the default 1, as the worker does)."""
    from kafka.errors import InvalidReplicationFactorError

    s = kenv.settings.model_copy(deep=True)
    s.kafka.replication_factor = 2
    with pytest.raises(InvalidReplicationFactorError):
        ensure_changelogs(s.kafka, s.worker.app_id + "-rf2")
    assert ensure_changelogs(kenv.settings.kafka, kenv.app_id + "-rf1") == [
        f"{kenv.app_id}-rf1-{t}-changelog" for t in ("rates-state", "borrower-state", "merge-state")]
    from kafka.admin import ConfigResource, ConfigResourceType

    admin = KafkaAdminClient(bootstrap_servers=kenv.settings.kafka.bootstrap_servers)
    try:
        name = f"{kenv.app_id}-rf1-merge-state-changelog"
        described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        # kafka-python 3: {"topic": {name: {config: {"value": ...}}}}
        configs = {k: v["value"] for k, v in described["topic"][name].items()}
    finally:
        admin.close()
    assert configs["min.insync.replicas"] == "1" and configs["cleanup.policy"] == "compact,delete"
