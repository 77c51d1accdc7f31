"""The soak driver (bench/soak.py) for a few minutes: live traffic through 2 workers and a sink
while a worker and the sink are killed (-9) and restarted, the broker and ClickHouse are
stopped and started, and a worker is paused (SIGSTOP) past its session timeout and resumed
(the zombie of issue 17: bench/README.md, "Soak"); nothing may be lost or doubled.

Uses the services of the test command (deploy/local/test.sh: KAFKA_PORT / CH_TCP_PORT, default
9092 / 9000) and stops and starts them through the same scripts. `make soak` is the long run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import FAULT_KINDS, Soak, SoakConfig, quiet_clients, render, write

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_short_soak_loses_and_doubles_nothing(tmp_path: Path) -> None:
    quiet_clients()
    cfg = SoakConfig(minutes=4.0, rate=200.0, seed=3, gap_s=(5.0, 10.0), outage_s=(8.0, 12.0),
                     recovery_timeout_s=150.0, drain_timeout_s=240.0, wait_final=False, out=tmp_path)
    report = Soak(cfg).run()
    write(report, tmp_path)
    text = render(report)
    print(text)
    assert report["final"], text
    assert report["lost"] == 0 and report["doubled"] == 0, text
    assert cfg.kinds == FAULT_KINDS and "pause_worker" in FAULT_KINDS
    assert {f["kind"] for f in report["faults"]} == set(FAULT_KINDS), text
    assert report["verdict"] == "PASS", text
