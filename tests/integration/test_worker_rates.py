"""The worker against the real broker: exact rates vs the batch oracle, bad input to the DLQ,
duplicates, shuffles, a SIGKILL mid-stream, two workers with one stopped mid-stream."""

from __future__ import annotations

import base64
import json
import random
import re
import time
from pathlib import Path

import pytest

from hangwatch.schemas.call_outcome import OUTCOMES, CallOutcome
from hangwatch.streams.core.windows import COUNT_FIELDS
from testkit.oracles.rates import oracle_counts
from testkit.waits import wait_for
from tests.integration.harness import KafkaEnv, WorkerProcess, latest_rates, produce, read_json

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "call_outcome"
SIZES = (60, 300, 3600)


def make_events(n: int, seed: int, start_ms: int, spacing_ms: int = 250) -> list[CallOutcome]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        agent = rnd.choice([None, "ag-1", "ag-2", "ag-3"])
        outcome = rnd.choice(OUTCOMES)
        out.append(CallOutcome(
            event_id=f"ev-{seed}-{i}", call_id=f"call-{i}", borrower_id=f"b-{rnd.randrange(200):04x}",
            loan_id=f"loan-{i % 50}", occurred_at_ms=start_ms + i * spacing_ms + rnd.randrange(spacing_ms),
            campaign=rnd.choice(["pre_loan_verification", "repayment_reminder"]),
            channel="human" if agent else "robot", agent_id=agent, branch=rnd.choice(["sh-pd", "bj-cy", "sz-ft"]),
            outcome=outcome, hangup_stage=rnd.choice(["greeting", "income_check"]) if outcome == "hung_up" else None,
            duration_s=float(rnd.randrange(0, 300)), attempt_no=1 + rnd.randrange(3), pre_notified=rnd.random() < .5,
            credit_grade=rnd.choice(["AAA", "B", None]), first_time_borrower=rnd.choice([True, False, None]),
            script_version=rnd.choice(["v1", "v2"])))
    return out


def wire(events: list[CallOutcome]) -> list[tuple[bytes, bytes]]:
    return [(e.borrower_id.encode(), e.to_json()) for e in events]


def oracle_lists(events: list[CallOutcome]) -> dict[str, list[int]]:
    return {k: [v[f] for f in COUNT_FIELDS] for k, v in oracle_counts(events, SIZES).items()}


def stream_lists(env: KafkaEnv) -> dict[str, list[int]]:
    return {k: [r[f] for f in COUNT_FIELDS] for k, r in latest_rates(env).items() if r["final"]}


def wait_exact(env: KafkaEnv, events: list[CallOutcome], workers: list[WorkerProcess], timeout_s: float = 120) -> None:
    expected = oracle_lists(events)

    def done() -> bool:
        return stream_lists(env) == expected

    try:
        wait_for(done, timeout_s, "final rates equal to the oracle", workers, every_s=2.0)
    except AssertionError:
        got = stream_lists(env)
        missing = sorted(set(expected) - set(got))[:5]
        wrong = [(k, expected[k], got[k]) for k in expected if k in got and got[k] != expected[k]][:5]
        extra = sorted(set(got) - set(expected))[:5]
        raise AssertionError(f"missing={missing} wrong={wrong} extra={extra} "
                             f"({len(got)} final keys of {len(expected)})") from None


def past_start() -> int:
    # a day ago, aligned to the hour: every window is long closed by the wall clock
    now_s = int(time.time())
    return (now_s - 86_400) // 3600 * 3600 * 1000


def test_ordered_input_gives_exact_final_rates_and_versions_increase(kenv: KafkaEnv) -> None:
    events = make_events(3000, 1, past_start())
    produce(kenv, "call-outcomes", wire(events))
    w = WorkerProcess(kenv)
    try:
        wait_exact(kenv, events, [w])
    finally:
        w.stop()
    per_key: dict[str, list[int]] = {}
    for r in read_json(kenv, "hangup-rates"):
        per_key.setdefault(r["key"], []).append(r["version"])
        if r["connected"]:
            assert r["hangup_rate"] == pytest.approx(r["hung_up"] / r["connected"])
    for versions in per_key.values():
        assert versions == sorted(versions) and len(set(versions)) == len(versions)


def test_duplicates_and_shuffles_within_grace_count_once(kenv: KafkaEnv) -> None:
    events = make_events(3000, 2, past_start())
    rnd = random.Random(7)
    deliveries = events + rnd.sample(events, 300)
    # displace each event by up to ~2 minutes of event time (grace is 10 minutes)
    deliveries.sort(key=lambda e: e.occurred_at_ms + rnd.randrange(0, 120_000))
    produce(kenv, "call-outcomes", wire(deliveries))
    w = WorkerProcess(kenv)
    try:
        wait_exact(kenv, events, [w])
    finally:
        w.stop()


def test_bad_input_goes_to_dlq_with_original_bytes_and_the_worker_keeps_running(kenv: KafkaEnv) -> None:
    cases = [json.loads(p.read_text()) for p in sorted((EXAMPLES / "invalid").glob("*.json"))]
    bad = [(c["key"].encode() if c["key"] else None, base64.b64decode(c["value_b64"])) for c in cases]
    events = make_events(200, 3, past_start())
    produce(kenv, "call-outcomes", bad[:8] + wire(events[:100]) + bad[8:] + wire(events[100:]))
    w = WorkerProcess(kenv)
    try:
        wait_exact(kenv, events, [w])
        dlq = wait_for(lambda: (r := read_json(kenv, "call-outcomes.dlq")) and len(r) >= len(bad) and r, 30,
                       "DLQ records", [w])
    finally:
        w.stop()
    assert len(dlq) == len(bad)
    # A personal_data dead letter keeps the bytes with every digit of the matched numbers masked
    # (docs/privacy.md); all others keep the original bytes exactly.
    by_value = {base64.b64decode(d["value_b64"]): d for d in dlq}
    masked = {_masked(base64.b64decode(d["value_b64"])): d for d in dlq if d["error_kind"] == "personal_data"}
    for c, (key, value) in zip(cases, bad, strict=True):
        d = masked[_masked(value)] if c["expect"]["error_kind"] == "personal_data" else by_value[value]
        stored = base64.b64decode(d["value_b64"])
        stored_key = base64.b64decode(d["key_b64"]) if d["key_b64"] else None
        assert d["error_kind"] == c["expect"]["error_kind"], c["description"]
        assert d["error_field"] == c["expect"]["error_field"]
        assert d["source_topic"] == kenv.topic("call-outcomes") and d["source_offset"] >= 0
        if d["error_kind"] == "personal_data":
            assert stored != value and d["personal_data"], c["description"]
            assert _masked(stored_key or b"") == _masked(key or b"")
        else:
            assert stored == value, c["description"]
            assert stored_key == (key or None) or key is None


def _masked(raw: bytes) -> bytes:
    return re.sub(rb"[0-9Xx*]", b"*", raw)


def test_sigkill_mid_stream_then_restart_is_exact(kenv: KafkaEnv) -> None:
    events = make_events(20000, 4, past_start(), spacing_ms=100)
    produce(kenv, "call-outcomes", wire(events))
    w = WorkerProcess(kenv)
    wait_for(lambda: len(read_json(kenv, "hangup-rates")) > 500, 60, "first rate updates", [w], every_s=0.5)
    w.kill()
    w2 = WorkerProcess(kenv, "w2")
    try:
        wait_exact(kenv, events, [w2], timeout_s=180)
    finally:
        w2.stop()


def test_two_workers_one_stopped_mid_stream_is_exact(kenv: KafkaEnv) -> None:
    # The member leaves the group with SIGTERM (a deploy, a scale-down): its partitions and
    # their state move to the other worker. A SIGKILLed worker is test_sigkill_mid_stream_...
    events = make_events(20000, 5, past_start(), spacing_ms=100)
    produce(kenv, "call-outcomes", wire(events))
    w1, w2 = WorkerProcess(kenv, "w1"), WorkerProcess(kenv, "w2")
    try:
        wait_for(lambda: len(read_json(kenv, "hangup-rates")) > 500, 60, "first rate updates", [w1, w2],
                 every_s=0.5)
        w2.stop()
        wait_exact(kenv, events, [w1], timeout_s=180)
    finally:
        w1.stop()
        w2.stop() if w2.proc.poll() is None else None
