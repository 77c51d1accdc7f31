"""The serving benchmark's loader (bench/serving_data.py) on the real 18.16 server: a tiny data
set must be what the pipeline would have stored, so the benchmark times queries over
consistent data: rollups equal a recount of call_events, borrower_calls holds every event once,
the stream's cells count what call_events holds, and the world keeps its shape (one branch per
agent and borrower, no agent on robot calls, a stage exactly on hang-ups and refusals)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bench import serving_data as sd
from hangwatch.sinks import rollup
from testkit.sinks import CH_URL, Store
from tests.sinks.sinkhelpers import RUN_TAG

END = datetime(2026, 11, 20, 13, 37, tzinfo=UTC)  # 21:37 in Shanghai: the last local day is cut
SHAPE = sd.Shape(events=20_000, days=3, end=END, borrowers=2_000)


def test_day_plans_cover_the_events_once() -> None:
    plans = SHAPE.day_plans()
    assert sum(p.events for p in plans) == SHAPE.events
    assert [p.first for p in plans] == [sum(q.events for q in plans[:i]) for i in range(len(plans))]
    assert plans[-1].start_s + plans[-1].limit_s == int(END.timestamp())
    assert all(p.start_s % 86_400 == 0 for p in plans)  # one UTC day partition each


@pytest.mark.clickhouse
def test_loaded_data_is_consistent(native_store: Store) -> None:
    b, db = native_store.backend, native_store.db
    times = sd.load([b], db, SHAPE)

    def one(sql: str) -> tuple[object, ...]:
        return tuple(b.query(sql).rows[0])

    assert set(times.steps) >= {"call_events", "rollups", "borrower_calls", "hangup_rates", "flags_alerts"}
    # every event once, within the period
    lo = int(END.timestamp()) // 86_400 * 86_400 - 2 * 86_400
    assert one(f"SELECT count(), uniqExact(event_id), toUInt32(min(occurred_at)) >= {lo}, "
               f"toUInt32(max(occurred_at)) < {int(END.timestamp())} FROM {db}.call_events") == (20_000, 20_000, 1, 1)
    # borrower_calls: the same events, once each
    events = one(f"SELECT count(), sum(cityHash64(event_id, borrower_id, toUInt32(occurred_at))) FROM {db}.call_events")
    copies = one(f"SELECT count(), sum(cityHash64(event_id, borrower_id, toUInt32(occurred_at))) "
                 f"FROM {db}.borrower_calls")
    assert copies == events
    # rollups of a whole local day equal a recount, per branch and outcome
    start, end = rollup.local_day(int((END - timedelta(days=1)).timestamp()), SHAPE.tz)
    recount = {(r[0], r[1]): int(r[2]) for r in b.query(
        f"SELECT branch, toString(outcome), count() FROM {db}.call_events WHERE occurred_at >= "
        f"toDateTime({start}, 'UTC') AND occurred_at < toDateTime({end}, 'UTC') GROUP BY branch, outcome").rows}
    assert recount
    for table in ("rollup_1m", "rollup_1h", "rollup_1d"):
        rows = b.query(
            f"SELECT branch, {', '.join(f'sum({o})' for o in ('completed', 'hung_up', 'refused', 'declined'))}, "
            f"sum(attempts) FROM {db}.{table} WHERE facet = 'all' AND bucket_start >= toDateTime({start}, 'UTC') "
            f"AND bucket_start < toDateTime({end}, 'UTC') GROUP BY branch").rows
        got = {(r[0], o): int(n) for r in rows for o, n in zip(("completed", "hung_up", "refused", "declined"), r[1:5],
                                                                strict=True) if n}
        assert got == {k: v for k, v in recount.items() if k[1] in ("completed", "hung_up", "refused", "declined")}, \
            table
        assert sum(int(r[5]) for r in rows) == sum(recount.values()), table
    # the stream's cells: every 60 s 'all' cell counts what call_events holds in its window
    cells = {int(r[0]): int(r[1]) for r in b.query(
        f"SELECT toUInt32(window_start), attempts FROM {db}.hangup_rates WHERE window_size_s = 60 "
        "AND dimension = 'all'").rows}
    minutes = {int(r[0]): int(r[1]) for r in b.query(
        f"SELECT intDiv(toUInt32(occurred_at), 60) * 60 AS m, count() FROM {db}.call_events GROUP BY m").rows}
    assert cells == minutes
    branch_cells = one(f"SELECT sum(attempts) FROM {db}.hangup_rates WHERE window_size_s = 3600 "
                       "AND dimension = 'branch'")[0]
    cut = max(lo, (int(END.timestamp()) - 2 * 86_400) // 3600 * 3600)
    assert branch_cells == one(f"SELECT count() FROM {db}.call_events WHERE occurred_at >= toDateTime({cut}, 'UTC')")[0]
    # the world's shape
    assert one(f"SELECT uniqExact(branch) FROM {db}.call_events")[0] == len(sd.BRANCHES)
    assert one(f"SELECT max(n) FROM (SELECT agent_id, uniqExact(branch) AS n FROM {db}.call_events "
               "WHERE channel = 'human' GROUP BY agent_id)")[0] == 1
    assert one(f"SELECT max(n) FROM (SELECT borrower_id, uniqExact(branch) AS n FROM {db}.call_events "
               "GROUP BY borrower_id)")[0] == 1
    assert one(f"SELECT countIf(channel = 'robot' AND agent_id IS NOT NULL), "
               f"countIf(channel = 'human' AND agent_id IS NULL), "
               f"countIf((outcome IN ('hung_up', 'refused')) != (hangup_stage IS NOT NULL)) FROM {db}.call_events") \
        == (0, 0, 0)
    calling_hours = one(f"SELECT countIf(toHour(occurred_at, 'Asia/Shanghai') BETWEEN 9 AND 19) / count() "
                        f"FROM {db}.call_events")[0]
    assert isinstance(calling_hours, float) and calling_hours > 0.85
    hangups = one(f"SELECT countIf(outcome = 'hung_up') / countIf(outcome IN ('completed', 'hung_up', 'refused', "
                  f"'wrong_party')) FROM {db}.call_events")[0]
    assert isinstance(hangups, float) and 0.08 < hangups < 0.35
    # flags for ~1 % of the borrowers, alerts with their firing record
    assert one(f"SELECT uniqExact(flag_id) FROM {db}.borrower_flags")[0] == SHAPE.borrowers // 100
    assert one(f"SELECT countIf(status = 'firing') = uniqExact(alert_id) FROM {db}.hangup_alerts")[0] == 1


@pytest.mark.clickhouse
@pytest.mark.slow
def test_serving_bench_runs_on_a_tiny_data_set(tmp_path: Path) -> None:
    """The whole harness at CI size: every catalogue query, panel target and rule runs on the
    server without an error, and the JSON carries the targets' summary."""
    from bench import serving

    db = f"{RUN_TAG}_serving"
    rc = serving.main(["--events", "20000", "--days", "3", "--runs", "1", "--ranges", "1h,24h,90d",
                       "--refresh-ranges", "24h", "--phases", "after_load", "--skip-cli", "--ch-url", CH_URL,
                       "--db", db, "--out", str(tmp_path)])
    assert rc == 0
    result = json.loads((tmp_path / "serving-latest.json").read_text())
    records = result["phases"]["after_load"]
    failed = [(r["kind"], r["name"], r["range"], r["error"]) for r in records
              if r["kind"] in ("query", "panel", "rule", "borrower") and r.get("error")]
    assert failed == []
    assert {"query", "panel", "rule", "refresh", "borrower"} <= {r["kind"] for r in records}
    assert result["summary"]["phases"]["after_load"]["borrower_s"] is not None
