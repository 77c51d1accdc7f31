"""The alert-quality benchmark's end-to-end check (`python -m bench.alert_quality --e2e`):
one short scenario through the real worker and sink, its alerts against the replayed detector.

6 h of simulated calls (08:00 - 14:00 local, daily rhythm, 5 calls/s: ~90,000 events, a
backfill with event times in the past) with a 3x spike on a branch and a 2x spike on a
campaign are produced to the run's own topics (bench/env.py RunEnv: own prefix, app id, sink
group and ClickHouse database, removed afterwards). The worker (`python -m hangwatch worker`)
and the sink (`python -m hangwatch sink`) run as deployed, with the default alert settings. The
reference is the same events' 5-minute window cells (testkit.oracles.alerts.
oracle_window_counts) replayed through streams.core.spikes.on_final_window
(bench.alert_quality.replay_records). Equal means: the alert records on the worker's
`hangup-alerts` topic, and the rows of the sink's `hangup_alerts` table (one row per alert_id
and status since migration 0009, read FINAL), are exactly the replayed records, every field but
emitted_at (and the table's ingested_at).
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

import orjson
from kafka import KafkaConsumer
from rich.console import Console

from bench.alert_quality import START_MS, replay_records
from bench.env import BOOTSTRAP, Proc, RunEnv, python_module
from hangwatch.schemas.topics import CALL_OUTCOMES, HANGUP_ALERTS
from hangwatch.simulator import SegmentSpike, SimConfig, generate, produce
from hangwatch.streams.merge_stage import alert_config
from testkit.oracles.alerts import oracle_window_counts

HOUR_MS = 3_600_000
E2E_START_MS = START_MS + 8 * HOUR_MS  # 2026-11-23 08:00 Asia/Shanghai
E2E_HOURS = 6
WAIT_S = 240.0
SKIP = ("emitted_at", "ingested_at")


def scenario() -> SimConfig:
    spikes = (SegmentSpike("branch", "shanghai-pudong", E2E_START_MS + 3 * HOUR_MS + 7 * 60_000, 20.0, 3.0),
              SegmentSpike("campaign", "repayment_reminder", E2E_START_MS + 4 * HOUR_MS + 32 * 60_000, 30.0, 2.0))
    return SimConfig(seed=31, rate=5.0, duration_s=E2E_HOURS * 3600, start_ms=E2E_START_MS, daily_rhythm=True,
                     borrowers=300_000, spikes=spikes)


def _key(a: dict[str, Any]) -> tuple[str, str]:
    return str(a["alert_id"]), str(a["status"])


def _comparable(a: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in a.items() if k not in SKIP}


def _read_topic(topic: str) -> list[dict[str, Any]]:
    consumer = KafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, auto_offset_reset="earliest", group_id=None,
                             enable_auto_commit=False, consumer_timeout_ms=2000)
    try:
        return [orjson.loads(m.value) for m in consumer]
    finally:
        consumer.close()


def _read_table(env: RunEnv) -> list[dict[str, Any]]:
    from clickhouse_driver import Client
    from clickhouse_driver.errors import Error as ClickHouseError

    from hangwatch.sinks.tables import HANGUP_ALERTS as TABLE

    client = Client.from_url(env.ch_url)
    try:
        cols = [c for c in TABLE.columns if c not in SKIP]
        rows = client.execute(f"SELECT {', '.join(cols)} FROM {TABLE.name} FINAL")
    except ClickHouseError:  # the sink has not created the table yet
        return []
    finally:
        client.disconnect()
    return [dict(zip(cols, r, strict=True)) for r in rows]


def _table_diff(row: dict[str, Any], ref: dict[str, Any]) -> str | None:
    """The first field of a table row that differs from the record, or None: times as the sink
    stores them (DateTime, whole seconds)."""
    for k, v in ref.items():
        got = row.get(k)
        if k in ("window_start", "window_end") and got is not None:
            got = got.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if got != v:
            return f"{k}: {got!r} != {v!r}"
    return None


def run_e2e(console: Console) -> dict[str, Any]:
    cfg = scenario()
    env = RunEnv("alert-e2e", grace_s=60)
    acfg = alert_config(env.settings())
    records = list(generate(cfg))
    counts = oracle_window_counts([r.event for r in records if r.event is not None], acfg.window_size_s)
    cells: dict[tuple[str, str], dict[int, tuple[int, int]]] = defaultdict(dict)
    for (dim, value, start), cell in counts.items():
        cells[(dim, value)][start] = cell
    expected = [_comparable(dict(a)) for a in replay_records(cells, acfg)]
    console.print(f"e2e: {len(records):,} events, {len(expected)} alert records expected "
                  f"({sum(1 for a in expected if a['status'] == 'firing')} firing); worker + sink on {BOOTSTRAP}")
    worker = sink = None
    t0 = time.perf_counter()
    got_topic: list[dict[str, Any]] = []
    got_table: list[dict[str, Any]] = []
    try:
        asyncio.run(produce(records, env.kafka, env.topic(CALL_OUTCOMES)))
        worker = Proc("worker", python_module("hangwatch", "worker"), env.env(), env.logs)
        sink = Proc("sink", python_module("hangwatch", "sink"), env.env(), env.logs)
        want = sorted(_key(a) for a in expected)
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            worker.assert_alive()
            sink.assert_alive()
            got_topic = [_comparable(a) for a in _read_topic(env.topic(HANGUP_ALERTS))]
            got_table = _read_table(env)
            if sorted(_key(a) for a in got_topic) == want and sorted(_key(a) for a in got_table) == want:
                break
            time.sleep(3.0)
    finally:
        for p in (worker, sink):
            if p is not None:
                p.stop()
        env.cleanup()
    by_key = {_key(a): a for a in expected}
    topic_equal = sorted(got_topic, key=_key) == sorted(expected, key=_key)
    diffs = [f"{_key(r)} {d}" for r in got_table if _key(r) in by_key
             for d in [_table_diff(r, by_key[_key(r)])] if d is not None]
    table_equal = sorted(_key(r) for r in got_table) == sorted(by_key) and not diffs
    result = {
        "events": len(records), "expected": [list(_key(a)) for a in expected],
        "topic": [list(_key(a)) for a in got_topic], "table": sorted(list(_key(r)) for r in got_table),
        "topic_equal": topic_equal, "table_equal": table_equal, "equal": topic_equal and table_equal,
        "table_differences": diffs,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    verdict = "equal" if result["equal"] else "DIFFERENT"
    console.print(f"e2e: worker topic {len(got_topic)} records (equal: {topic_equal}), table {len(got_table)} rows "
                  f"(equal: {table_equal}) vs {len(expected)} replayed: {verdict} ({result['seconds']} s)")
    for d in diffs[:5]:
        console.print(f"  table differs: {d}", markup=False)
    return result
