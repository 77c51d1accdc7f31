"""The broker goes away mid-stream and comes back: the worker waits (it does not exit), its
log stays readable during the outage (about a line a second at most), and the final rates still
equal the oracle (nothing lost, nothing counted twice)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from testkit.waits import wait_for
from tests.integration.harness import ROOT, KafkaEnv, WorkerProcess, produce, read_json
from tests.integration.test_worker_rates import make_events, past_start, wait_exact, wire

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
KAFKA = str(ROOT / "deploy" / "local" / "kafka.sh")
OUTAGE_S = 30
MAX_LINES_PER_S = 1.0


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def test_broker_outage_mid_stream_pauses_and_resumes_exactly(kenv: KafkaEnv) -> None:
    events = make_events(20000, 9, past_start(), spacing_ms=100)
    produce(kenv, "call-outcomes", wire(events))
    w = WorkerProcess(kenv)
    try:
        wait_for(lambda: len(read_json(kenv, "hangup-rates")) > 500, 60, "first rate updates", [w], every_s=0.5)
        subprocess.run([KAFKA, "stop"], check=True, capture_output=True)
        before = _lines(w.log_path)
        try:
            time.sleep(OUTAGE_S)
            w.assert_alive()  # waiting for the broker, not crashed
            during = _lines(w.log_path) - before
        finally:
            subprocess.run([KAFKA, "start"], check=True, capture_output=True)
        print(f"worker log during a {OUTAGE_S} s broker outage: {during} lines")
        assert during <= OUTAGE_S * MAX_LINES_PER_S, f"{during} log lines in a {OUTAGE_S} s outage"
        wait_exact(kenv, events, [w], timeout_s=180)
    finally:
        w.stop()
