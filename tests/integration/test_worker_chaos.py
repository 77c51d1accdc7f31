"""Rates and flags stay exact while workers join, leave (SIGTERM) and crash (SIGKILL) in the
middle of the stream, on traffic with duplicates, out-of-order and malformed records that
keeps arriving between the membership changes."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Iterator

import pytest

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.simulator import FaultConfig, SimConfig, generate, produce
from hangwatch.streams.core.rules_config import load_rules
from testkit.oracles.flags import oracle_flags
from testkit.waits import wait_for
from tests.integration.harness import KafkaEnv, WorkerProcess, read_json
from tests.integration.test_worker_flags_alerts import yesterday_8am_ms
from tests.integration.test_worker_rates import wait_exact

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.fixture
def kenv() -> Iterator[KafkaEnv]:
    # The traffic is from days ago and arrives in four bursts; a partition that read
    # everything and then waits longer than idle_close_s for the next burst would rightly
    # move its watermark to the wall clock and count that burst as late. 30 s is longer than
    # any pause here, so every event stays countable and the oracle applies.
    env = KafkaEnv(idle_close_s=30.0)
    yield env
    env.cleanup()


def test_rates_and_flags_exact_through_joins_leaves_and_crashes(kenv: KafkaEnv) -> None:
    cfg = SimConfig(seed=31, rate=1.0, count=24000, start_ms=yesterday_8am_ms(days=4), borrowers=1500,
                    refuser_share=0.2, faults=FaultConfig(duplicates=0.02, out_of_order=0.02, malformed=0.002))
    records = list(generate(cfg))
    events: list[CallOutcome] = list({r.event.event_id: r.event for r in records if r.event is not None}.values())
    chunks = [records[i * len(records) // 4:(i + 1) * len(records) // 4] for i in range(4)]

    def send(chunk: list) -> None:
        asyncio.run(produce(chunk, kenv.settings.kafka, kenv.topic("call-outcomes")))

    workers: list[WorkerProcess] = []
    try:
        send(chunks[0])
        workers.append(WorkerProcess(kenv, "w1"))
        wait_for(lambda: len(read_json(kenv, "hangup-rates")) > 200, 60, "first rate updates", workers, every_s=0.5)
        send(chunks[1])
        workers.append(WorkerProcess(kenv, "w2"))  # joins: the partitions are split
        time.sleep(8)
        send(chunks[2])
        workers[0].kill()  # crashes mid-stream: no final commit, no clean hand-over
        # ... and comes back on the same host: its RocksDB borrower store holds the state of
        # before the crash, which w2 has changed since; recovery must catch it up.
        workers.append(WorkerProcess(kenv, "w3", host="w1"))
        time.sleep(8)
        send(chunks[3])
        workers[1].stop()  # leaves cleanly: its partitions and state move to w3 (w1's host)
        alive = [workers[2]]
        wait_exact(kenv, events, alive, timeout_s=180)
        expected_flags = oracle_flags(events, load_rules())
        def flags_now() -> list[tuple[str, str]]:
            return sorted({(f["flag_id"], f["status"]) for f in read_json(kenv, "borrower-flags")})

        try:
            wait_for(lambda: flags_now() == expected_flags, 60, "flags equal to the oracle", alive, every_s=2.0)
        except AssertionError as e:
            got, want = set(flags_now()), set(expected_flags)
            raise AssertionError(f"{e}\nmissing {len(want - got)}: {sorted(want - got)[:10]}"
                                 f"\nextra {len(got - want)}: {sorted(got - want)[:10]}") from None
    finally:
        for w in workers:
            w.stop() if w.proc.poll() is None else None

    # A transition can be sent twice only by a crash between sending it and writing the
    # borrower's state; the copy is then the same transition with the same evidence.
    copies: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for f in read_json(kenv, "borrower-flags"):
        copies[(f["flag_id"], f["status"])].append(f)
    for same in copies.values():
        assert len({(f["explanation"], f["last_event_at"], str(f["evidence"])) for f in same}) == 1
