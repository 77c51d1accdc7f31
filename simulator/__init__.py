"""hangwatch simulator: realistic, reproducible CallOutcome traffic with injected faults.

API (everything tests and tools need):
    generate(SimConfig, clock=None) -> Iterator[SimRecord]   pure; records in delivery order
    generate_events(SimConfig) -> Iterator[(CallOutcome, value, key)]   the calls alone
    produce(records, KafkaSettings, topic, ...) -> int       async; batched aiokafka producer
    paced(records, rate) -> AsyncIterator[SimRecord]          live pacing in wall time
    write_jsonl(records, path) -> int / read_jsonl(path) -> Iterator[SimRecord]
    replay(path, KafkaSettings, topic, ...) -> int            async; a JSONL file into Kafka, in order
A SimRecord has key, value (exact bytes), event (the CallOutcome, None if malformed), fault
(None, "duplicate", "out_of_order", "late", "malformed"), error_kind/error_field for
malformed records, and lateness_ms. The oracle of a run is
    {r.event.event_id: r.event for r in records if r.event is not None}.

Modules, one job each: config (SimConfig and its validation), population (hash-derived
borrowers, agents), dialler (cases and retries: who is called next), model (outcome, stage
and talk-time probabilities from the seed article's factors), clock (event time, quiet hours, the
daily rhythm of call volume), generator (the call stream), faults and malformed (fault injection), records
(SimRecord), jsonl (files), kafka (producer). The CLI is hangwatch/cli/simulate.py.

Measured on the development machine (2 cores shared with a Kafka broker and other test
runs, Python 3.11, aiokafka 0.14, topic of 4 partitions on localhost), 300,000 calls, best
of three:
    generate() alone:                              ~60,000 events/s (~54,000 with all faults on)
    produce() of ready records, lz4 / none:        ~205,000 / ~200,000 events/s
    generate() + produce(), lz4:                   ~37,000 events/s
    `hangwatch simulate --start ... --count 300000` (Kafka, lz4, incl. start-up): 35,000-39,000 events/s
    generate() + write_jsonl():                    ~46,000 events/s
    replay() of a JSONL file, lz4:                 ~130,000 events/s
Generation is the bottleneck (one CPU-bound process); the producer alone is 5x faster.
"""


from __future__ import annotations

if __name__ != "hangwatch.simulator":  # the checkout root on sys.path would load a second copy
    raise ImportError(f"import hangwatch.simulator, not {__name__} (the package lives in the hangwatch namespace)")

from pathlib import Path

from hangwatch.platform.settings import KafkaSettings
from hangwatch.simulator.config import (
    BRANCHES,
    SCENARIOS,
    FaultConfig,
    Scenario,
    SegmentSpike,
    SimConfig,
    SpikeConfig,
)
from hangwatch.simulator.generator import generate, generate_events
from hangwatch.simulator.jsonl import read_jsonl, write_jsonl
from hangwatch.simulator.kafka import Compression, paced, produce
from hangwatch.simulator.records import DUPLICATE, FAULTS, LATE, MALFORMED, OUT_OF_ORDER, SimRecord

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
    "SegmentSpike",
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
