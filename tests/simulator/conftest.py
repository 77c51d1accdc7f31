"""Shared runs: generating is cheap but not free on a 2-core machine, so the larger runs are
made once per session and shared by the tests that only read them."""

from __future__ import annotations

import pytest

from hangwatch.schemas.call_outcome import parse_ts
from hangwatch.simulator import FaultConfig, SimConfig, SimRecord, SpikeConfig, generate

START_MS = parse_ts("2026-11-20T08:00:00+08:00")  # a Friday morning, local time
FAULTS = FaultConfig(duplicates=0.02, out_of_order=0.05, late=0.01, malformed=0.02)


@pytest.fixture(scope="session")
def faulty_run() -> tuple[SimConfig, list[SimRecord]]:
    """40,000 calls over ~2 days of event time with every fault at a few per cent."""
    cfg = SimConfig(seed=11, count=40_000, rate=0.5, start_ms=START_MS, borrowers=5_000, faults=FAULTS)
    return cfg, list(generate(cfg))


@pytest.fixture(scope="session")
def clean_run() -> tuple[SimConfig, list[SimRecord]]:
    """120,000 calls over a bit more than two working days, with a spike at hangzhou-xihu from
    14:00 to 16:00 local time on the first day."""
    cfg = SimConfig(seed=5, count=120_000, rate=1.0, start_ms=START_MS, borrowers=200_000, scenario="branch_spike",
                    spike=SpikeConfig(branch="hangzhou-xihu", at_ms=START_MS + 6 * 3_600_000, minutes=120, factor=3.0))
    return cfg, list(generate(cfg))
