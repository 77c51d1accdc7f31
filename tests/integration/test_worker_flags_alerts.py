"""Borrower flags and spike alerts from the real worker vs the batch oracles, on simulator
traffic (duplicates, out-of-order delivery), also across a SIGKILL."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.simulator import FaultConfig, SimConfig, SpikeConfig, generate, produce
from hangwatch.streams.core.rules_config import load_rules
from hangwatch.streams.core.spikes import AlertConfig
from testkit.oracles.alerts import oracle_alerts
from testkit.oracles.flags import oracle_flags
from testkit.waits import wait_for
from tests.integration.harness import ROOT, KafkaEnv, WorkerProcess, read_json, read_topic
from tests.integration.harness import produce as produce_raw

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
TZ = ZoneInfo("Asia/Shanghai")


def yesterday_8am_ms(days: int = 2) -> int:
    now = datetime.now(TZ)
    d = now.replace(hour=8, minute=0, second=0, microsecond=0)
    return int(d.timestamp() * 1000) - days * 86_400_000


def sim(cfg: SimConfig, env: KafkaEnv) -> list[CallOutcome]:
    records = list(generate(cfg))
    asyncio.run(produce(records, env.settings.kafka, env.topic("call-outcomes")))
    return list({r.event.event_id: r.event for r in records if r.event is not None}.values())


def stream_flags(env: KafkaEnv) -> list[dict]:
    return read_json(env, "borrower-flags")


def test_flags_equal_the_oracle_with_duplicates_and_reordering_and_one_raise_per_episode(kenv: KafkaEnv) -> None:
    cfg = SimConfig(seed=11, rate=0.2, count=4000, start_ms=yesterday_8am_ms(days=4), borrowers=250,
                    refuser_share=0.2, faults=FaultConfig(duplicates=0.03, out_of_order=0.05))
    events = sim(cfg, kenv)
    expected = oracle_flags(events, load_rules())
    assert any(s == "raised" for _, s in expected), "the scenario must produce flags"
    w = WorkerProcess(kenv)
    try:
        wait_for(lambda: sorted({(f["flag_id"], f["status"]) for f in stream_flags(kenv)}) == expected, 120,
                 "flags equal to the oracle", [w], every_s=2.0)
    finally:
        w.stop()
    flags = stream_flags(kenv)
    raised = Counter(f["flag_id"] for f in flags if f["status"] == "raised")
    assert max(raised.values()) == 1, "exactly one raised record per episode"
    for f in flags:
        assert f["evidence"] and f["explanation"] and f["rule_version"] >= 1
        assert all(e["call_id"] for e in f["evidence"])


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_flags_survive_a_sigkill_and_a_restart_on_the_same_host(store: str) -> None:
    """rocksdb: the restarted worker finds the borrower states its predecessor wrote locally
    (only those whose changelog records were delivered) and recovers the rest; memory: it
    rebuilds everything from the changelog."""
    env = KafkaEnv(borrower_store=store)
    try:
        cfg = SimConfig(seed=12, rate=0.3, count=12000, start_ms=yesterday_8am_ms(days=6), borrowers=600,
                        refuser_share=0.2, faults=FaultConfig(duplicates=0.02))
        events = sim(cfg, env)
        expected = oracle_flags(events, load_rules())
        w = WorkerProcess(env)
        wait_for(lambda: len(stream_flags(env)) > 20, 60, "first flags", [w], every_s=0.3)
        w.kill()
        w2 = WorkerProcess(env, "w2", host="w1")
        try:
            wait_for(lambda: sorted({(f["flag_id"], f["status"]) for f in stream_flags(env)}) == expected, 150,
                     "flags equal to the oracle after a restart", [w2], every_s=2.0)
        finally:
            w2.stop()
        if store == "rocksdb":
            assert any((ROOT / ".local" / "faust-test" / env.app_id / "w1" / "borrower-state").glob("p*/CURRENT")), \
                "the borrower store must be on disk (streams.borrower_store: one RocksDB per partition)"
    finally:
        env.cleanup()


def test_borrowers_without_recent_calls_are_swept_from_the_state(kenv: KafkaEnv) -> None:
    """Three weeks after their calls: a borrower never flagged is deleted (a tombstone on the
    changelog), a borrower whose flag was resolved keeps only its small reset anchor."""
    env = KafkaEnv(borrower_sweep_interval_s=1.0)
    try:
        t0 = yesterday_8am_ms(days=21)
        calls = [CallOutcome(event_id=f"e{i}", call_id=f"c{i}", borrower_id=b, loan_id="l1",
                             occurred_at_ms=t0 + i * 3_600_000, campaign="post_loan_review", channel="robot",
                             agent_id=None, branch="br-1", outcome=o,
                             hangup_stage="greeting" if o == "hung_up" else None, duration_s=3.0, attempt_no=1,
                             pre_notified=True, credit_grade=None, first_time_borrower=None, script_version="v1")
                 for i, (b, o) in enumerate([("quiet", "completed"), ("flagged", "hung_up"), ("flagged", "refused"),
                                             ("flagged", "hung_up"), ("flagged", "completed")])]
        produce_raw(env, "call-outcomes", [(c.borrower_id.encode(), c.to_json()) for c in calls])
        changelog = f"{env.app_id}-borrower-state-changelog"

        def latest_state() -> dict[str, bytes | None]:
            out: dict[str, bytes | None] = {}
            for r in read_topic(env, changelog, absolute=True):
                out[r.key.decode().split("|", 1)[1]] = r.value
            return out

        w = WorkerProcess(env)
        try:
            final = wait_for(lambda: (s := latest_state()).get("quiet", b"") is None and s, 90,
                             "the quiet borrower's tombstone", [w], every_s=2.0)
        finally:
            w.stop()
        flagged = final["flagged"]
        assert flagged is not None and b'"e":[]' in flagged and len(flagged) < 120
        assert sorted(f["status"] for f in read_json(env, "borrower-flags")) == ["raised", "resolved"]
    finally:
        env.cleanup()


# A 3 h baseline keeps the run short; the simulator's time-of-day effects are real changes,
# so the run stays within the morning (08:00-12:00 local) and asks for a 50 % increase.
ALERTS = {"min_connected": 30, "min_baseline_connected": 60, "baseline_s": 3 * 3600, "min_relative_increase": 0.5}
HOURS = 4


@pytest.mark.parametrize("spike", [True, False], ids=["spike", "no_spike"])
def test_spike_alert_fires_once_and_resolves_only_with_a_spike(spike: bool) -> None:
    env = KafkaEnv(alerts=ALERTS)
    try:
        start = yesterday_8am_ms(days=1)
        cfg = SimConfig(seed=21, rate=3.0, duration_s=HOURS * 3600, start_ms=start, borrowers=200_000,
                        scenario="branch_spike" if spike else "none",
                        spike=SpikeConfig(branch="shanghai-pudong", at_ms=start + 3 * 3600_000, minutes=20, factor=3.0))
        events = sim(cfg, env)
        acfg = AlertConfig(**ALERTS)
        expected = oracle_alerts(events, acfg)
        if spike:
            assert [s for a, s in expected if a.startswith("branch|shanghai-pudong|")] == ["firing", "resolved"]
        else:
            assert expected == []
        w = WorkerProcess(env)
        try:
            # all windows final: the last 5-minute window of the run has a final record
            last_key = f"300|{((start // 1000 + HOURS * 3600) // 300 - 1) * 300}|all|all"
            wait_for(lambda: any(r["key"] == last_key and r["final"] for r in read_json(env, "hangup-rates")), 150,
                     "the last window to become final", [w], every_s=2.0)
            got = wait_for(lambda: sorted({(a["alert_id"], a["status"]) for a in read_json(env, "hangup-alerts")})
                           == sorted(set(expected)) and True, 30, "alerts equal to the oracle", [w])
            assert got
        finally:
            w.stop()
        alerts = read_json(env, "hangup-alerts")
        if spike:
            firing = [a for a in alerts if a["status"] == "firing" and a["value"] == "shanghai-pudong"]
            assert len(firing) >= 1 and len({a["alert_id"] for a in firing}) == len(firing)
            assert any(a["status"] == "resolved" and a["alert_id"] == firing[0]["alert_id"] for a in alerts)
            assert firing[0]["wilson_low"] > firing[0]["baseline_rate"]
        else:
            assert alerts == []
    finally:
        env.cleanup()
