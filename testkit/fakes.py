"""Fakes of what the pipeline consumes, for tests and benchmarks without a broker."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class FakeMessage:
    """One consumed Kafka record: the attributes a Faust Message and an aiokafka ConsumerRecord
    both have, so it serves as the stages' InputRecord (hangwatch.streams.ports) and as the
    sink's Message (hangwatch.sinks.convert).

    `timestamp` is in the unit its reader expects: epoch milliseconds for the sink (aiokafka,
    Kafka itself), epoch seconds for the stages (Faust); None: no timestamp.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int | None = None
