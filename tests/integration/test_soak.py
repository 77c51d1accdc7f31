"""The soak driver (bench/soak.py) for a few minutes: live traffic through 2 workers and a sink
while a worker and the sink are killed (-9) and restarted and the broker and ClickHouse are
stopped and started; nothing may be lost or doubled.

Not here: a worker paused (SIGSTOP) past its session timeout. That fault exposes an open bug (in
about one run in three some final window cells come out short, events and flags stay exact:
bench/README.md, "Soak"); `make soak` keeps injecting it until the bug is fixed.

Uses the services of the test command (deploy/local/test.sh: KAFKA_PORT / CH_TCP_PORT, default
9092 / 9000) and stops and starts them through the same scripts. `make soak` is the long run."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import FAULT_KINDS, Soak, SoakConfig, quiet_clients, render, write

KINDS = tuple(k for k in FAULT_KINDS if k != "pause_worker")

pytestmark = [pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_short_soak_loses_and_doubles_nothing(tmp_path: Path) -> None:
    quiet_clients()
    cfg = SoakConfig(minutes=4.0, rate=200.0, seed=3, gap_s=(5.0, 10.0), outage_s=(8.0, 12.0),
                     recovery_timeout_s=150.0, drain_timeout_s=240.0, wait_final=False, out=tmp_path, kinds=KINDS)
    report = Soak(cfg).run()
    write(report, tmp_path)
    text = render(report)
    print(text)
    assert report["final"], text
    assert report["lost"] == 0 and report["doubled"] == 0, text
    assert {f["kind"] for f in report["faults"]} == set(KINDS), text
    assert report["verdict"] == "PASS", text
