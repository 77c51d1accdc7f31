"""The benchmark's fixed event set (seeded simulator backfill) and its batch oracle.

One dataset is generated per `python -m bench` run and produced again to each variant's own
topic, so every variant (ours, naive Faust, raw ceiling) reads byte-identical messages.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from hangwatch.platform.settings import KafkaSettings, Settings
from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.simulator import FaultConfig, SimConfig, SimRecord, generate, produce
from hangwatch.streams.core.rules_config import load_rules
from testkit.oracles.flags import oracle_flags
from testkit.oracles.rates import oracle_counts

SIZES = (60, 300, 3600)
COUNT_FIELDS = ("attempts", "connected", "completed", "hung_up", "refused", "wrong_party", "declined", "no_answer",
                "busy", "voicemail", "invalid_number")


@dataclasses.dataclass
class Dataset:
    records: list[SimRecord]
    events: list[CallOutcome]  # valid events in delivery order (duplicates included)
    seed: int
    start_ms: int
    rate: float
    borrowers: int
    _rates: dict[str, tuple[int, ...]] | None = None
    _flags: set[tuple[str, str]] | None = None

    @property
    def messages(self) -> int:
        return len(self.records)

    @property
    def distinct_events(self) -> int:
        return len({e.event_id for e in self.events})

    def head(self, n: int) -> Dataset:
        """The first n messages, as their own dataset (for the slow peers)."""
        recs = self.records[:n]
        return Dataset(recs, [r.event for r in recs if r.event is not None], self.seed, self.start_ms, self.rate,
                       self.borrowers)

    def oracle_rates(self) -> dict[str, tuple[int, ...]]:
        """cell key "size|start|dim|value" -> counts in COUNT_FIELDS order."""
        if self._rates is None:
            self._rates = {k: tuple(v[f] for f in COUNT_FIELDS) for k, v in oracle_counts(self.events, SIZES).items()}
        return self._rates

    def oracle_flags(self) -> set[tuple[str, str]]:
        if self._flags is None:
            w = Settings().worker
            self._flags = set(oracle_flags(self.events, load_rules(w.rules_file, w.timezone)))
        return self._flags

    def describe(self) -> dict[str, Any]:
        faults: dict[str, int] = {}
        for r in self.records:
            if r.fault:
                faults[r.fault] = faults.get(r.fault, 0) + 1
        return {"messages": self.messages, "distinct_valid_events": self.distinct_events, "seed": self.seed,
                "event_time_rate_per_s": self.rate, "borrower_population": self.borrowers,
                "distinct_borrowers": len({e.borrower_id for e in self.events}), "faults": faults,
                "mean_message_bytes": round(sum(len(r.value) for r in self.records) / max(1, self.messages), 1)}


def past_start_ms(days: int = 2) -> int:
    """Midnight UTC `days` ago: every window of the backfill is long closed by the wall clock."""
    return (int(time.time()) // 86400 - days) * 86400 * 1000


def make_dataset(count: int, seed: int = 7, rate: float = 50.0, borrowers: int = 100_000,
                 grace_s: int = 60) -> Dataset:
    """Backfill of `count` calls: 1 % re-sent duplicates, 1 % out of order (within grace),
    0.1 % malformed messages; no events beyond the grace period (the stream does not count
    those by design; `hangwatch reconcile` does)."""
    start = past_start_ms()
    cfg = SimConfig(seed=seed, rate=rate, count=count, start_ms=start, borrowers=borrowers,
                    faults=FaultConfig(duplicates=0.01, out_of_order=0.01, malformed=0.001,
                                       ooo_window_s=min(20.0, grace_s / 3), grace_s=float(grace_s)))
    records = list(generate(cfg))
    return Dataset(records, [r.event for r in records if r.event is not None], seed, start, rate, borrowers)


def produce_records(records: list[SimRecord], kafka: KafkaSettings, topic: str) -> tuple[int, float]:
    """Produce to `topic`; returns (delivered, seconds)."""
    import asyncio

    t0 = time.perf_counter()
    n = asyncio.run(produce(records, kafka, topic))
    return n, time.perf_counter() - t0
