"""The simulator against the real broker: what is produced is what a consumer reads, byte for
byte, in order per key, on the partition any Java client would choose; the same for a JSONL
replay and for the CLI."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import codec as aiokafka_codec
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.record import default_records as kafka_records
from kafka import KafkaConsumer
from kafka.admin import NewTopic
from typer.testing import CliRunner

from hangwatch.cli import app
from hangwatch.platform.kafka_admin import admin_client, delete_topics
from hangwatch.platform.settings import KafkaSettings
from hangwatch.simulator import FaultConfig, SimConfig, SimRecord, generate, produce, replay, write_jsonl

from .conftest import START_MS

pytestmark = pytest.mark.kafka
PARTITIONS = 3
KAFKA = KafkaSettings()


@pytest.fixture
def topic() -> Iterator[str]:
    name = f"simtest-{uuid.uuid4().hex[:10]}"
    admin = admin_client(KAFKA)
    try:
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])
    finally:
        admin.close()
    yield name
    delete_topics(KAFKA, [name])


def _read(topic: str, n: int, timeout_s: float = 60.0) -> list[tuple[int, bytes | None, bytes]]:
    """(partition, key, value) of the first n records, in offset order within each partition."""
    c = KafkaConsumer(topic, **KAFKA.kafka_python_kwargs(), auto_offset_reset="earliest", enable_auto_commit=False,
                      group_id=None, consumer_timeout_ms=1000)
    out: list[tuple[int, bytes | None, bytes]] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < n and time.monotonic() < deadline:
            for m in c:
                out.append((m.partition, m.key, m.value))
                if len(out) >= n:
                    break
    finally:
        c.close()
    return out


def _records() -> list[SimRecord]:
    cfg = SimConfig(seed=77, count=2000, rate=0.5, start_ms=START_MS, borrowers=300,
                    faults=FaultConfig(duplicates=0.02, out_of_order=0.05, late=0.01, malformed=0.04))
    records = list(generate(cfg))
    assert any(r.key is None for r in records) and any(r.error_kind == "oversized" for r in records)
    return records


def _assert_same(sent: list[SimRecord], got: list[tuple[int, bytes | None, bytes]]) -> None:
    assert len(got) == len(sent)
    partitions = list(range(PARTITIONS))
    by_key_sent: dict[bytes | None, list[bytes]] = defaultdict(list)
    for r in sent:
        by_key_sent[r.key].append(r.value)
    by_key_got: dict[bytes | None, list[bytes]] = defaultdict(list)
    for p, k, v in got:
        by_key_got[k].append(v)
        if k is not None:
            assert p == DefaultPartitioner()(k, partitions, partitions)  # murmur2, as Java clients
    # Order is kept per key (so per borrower); null keys are spread round-robin, so only
    # their multiset is comparable.
    nulls_sent, nulls_got = by_key_sent.pop(None, []), by_key_got.pop(None, [])
    assert sorted(nulls_sent) == sorted(nulls_got)
    assert by_key_got == by_key_sent


def test_produce_2000_records_and_read_them_back(topic: str) -> None:
    records = _records()
    progress: list[int] = []
    n = asyncio.run(produce(records, KAFKA, topic, on_progress=progress.append))
    assert n == len(records)
    assert progress and progress[-1] == n
    _assert_same(records, _read(topic, n))
    # The faster lz4 level applies only while producing.
    assert kafka_records.lz4_encode is aiokafka_codec.lz4_encode


def test_replay_of_a_jsonl_file_keeps_bytes_and_order(topic: str, tmp_path: Path) -> None:
    records = _records()
    path = tmp_path / "run.jsonl"
    write_jsonl(records, path)
    n = asyncio.run(replay(path, KAFKA, topic, compression="none", linger_ms=5, max_batch_size=16 * 1024))
    assert n == len(records)
    _assert_same(records, _read(topic, n))


def test_cli_to_kafka_and_replay(topic: str, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["simulate", "--start", "2026-11-20T08:00:00+08:00", "--count", "500", "--seed", "5", "--malformed",
            "0.02"]
    res = runner.invoke(app, [*base, "--topic", topic])
    assert res.exit_code == 0, res.output
    path = tmp_path / "same.jsonl"
    assert runner.invoke(app, [*base, "--out", str(path)]).exit_code == 0
    res = runner.invoke(app, ["simulate", "replay", str(path), "--topic", topic])
    assert res.exit_code == 0, res.output
    per_run = len(path.read_bytes().splitlines())  # calls plus the malformed extras
    assert per_run > 500
    got = _read(topic, 2 * per_run)
    assert len(got) == 2 * per_run
    # The live run and the replay of the same seed produced the same records twice.
    per_key: dict[bytes | None, list[bytes]] = defaultdict(list)
    for _, k, v in got:
        per_key[k].append(v)
    for k, values in per_key.items():
        if k is not None:
            half = len(values) // 2
            assert values[:half] == values[half:]


def test_missing_topic_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="does not exist"):
        asyncio.run(produce(_records()[:10], KAFKA, f"simtest-missing-{uuid.uuid4().hex[:8]}",
                            metadata_timeout_s=2))
