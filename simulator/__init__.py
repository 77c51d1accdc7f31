"""hangwatch simulator: realistic, reproducible CallOutcome traffic with injected faults.

API (everything tests and tools need):
    generate(SimConfig, clock=None) -> Iterator[SimRecord]   pure; records in delivery order
    produce(records, KafkaSettings, topic, ...) -> int       async; batched aiokafka producer
    paced(records, rate) -> AsyncIterator[SimRecord]          live pacing in wall time
    write_jsonl(records, path) -> int / read_jsonl(path) -> Iterator[SimRecord]
    replay(path, KafkaSettings, topic, ...) -> int            async; a JSONL file into Kafka, in order
A SimRecord has key, value (exact bytes), event (the CallOutcome, None if malformed), fault
(None, "duplicate", "out_of_order", "late", "malformed"), error_kind/error_field for
malformed records, and lateness_ms. The oracle of a run is
    {r.event.event_id: r.event for r in records if r.event is not None}.

Modules: config (SimConfig), population (borrowers, agents), model (outcome probabilities),
clock (event time, quiet hours, time parsing), generator (the call stream), faults and
malformed (fault injection), records (SimRecord), jsonl (files), kafka (producer).

Measured on the development machine (2 cores, Python 3.11, Kafka 4 on localhost, one broker,
topic with 4 partitions), `hangwatch simulate --count 300000 --start ... --seed 1`:
    generation only (generate(), no output):          ~95,000 events/s
    generation + Kafka (lz4, linger 20 ms, 512 KiB):  ~52,000 events/s
    generation + JSONL file:                          ~60,000 events/s
    replay JSONL file -> Kafka:                       ~75,000 events/s
"""

from __future__ import annotations

from pathlib import Path

from hangwatch.settings import KafkaSettings
from simulator.config import BRANCHES, SCENARIOS, FaultConfig, Scenario, SimConfig, SpikeConfig
from simulator.generator import generate, generate_events
from simulator.jsonl import read_jsonl, write_jsonl
from simulator.kafka import Compression, paced, produce
from simulator.records import DUPLICATE, FAULTS, LATE, MALFORMED, OUT_OF_ORDER, SimRecord

__all__ = [
    "BRANCHES",
    "DUPLICATE",
    "FAULTS",
    "LATE",
    "MALFORMED",
    "OUT_OF_ORDER",
    "SCENARIOS",
    "Compression",
    "FaultConfig",
    "Scenario",
    "SimConfig",
    "SimRecord",
    "SpikeConfig",
    "generate",
    "generate_events",
    "paced",
    "produce",
    "read_jsonl",
    "replay",
    "write_jsonl",
]


async def replay(path: Path | str, kafka: KafkaSettings, topic: str, **produce_options: object) -> int:
    """Send the records of a JSONL file to `topic` in file order; returns how many."""
    return await produce(read_jsonl(path, events=False), kafka, topic, **produce_options)  # type: ignore[arg-type]
