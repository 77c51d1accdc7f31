"""Retention drops whole partitions older than the configured days (works on 18.16, which has
no TTL) and keeps the TTL of current servers in line with the settings."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.sinks import retention
from hangwatch.sinks.tables import CALL_EVENTS
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import event_records, json_records, make_events
from testkit.sinks import Store, batch_of, router_for
from tests.sinks.sinkhelpers import dlq_record

TODAY = datetime.now(tz=UTC).date()


def _day_ms(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, 12, tzinfo=UTC).timestamp() * 1000)


def _events_on(days_ago: list[int]) -> list[CallOutcome]:
    out: list[CallOutcome] = []
    for i, ago in enumerate(days_ago):
        out += make_events(20, seed=100 + i, start_ms=_day_ms(TODAY - timedelta(days=ago)), span_s=3600)
    return out


def test_old_partitions_are_dropped_new_ones_kept(store: Store) -> None:
    days_ago = [500, 31, 30, 29, 1]
    records = {"call_events": event_records(_events_on(days_ago)),
               "dead_letters": json_records([dlq_record(i, base_ms=_day_ms(TODAY - timedelta(days=ago)))
                                             for i, ago in enumerate([400, 70, 1])], "source_topic")}
    Flusher(store.backend, store.db, "sink@test", "Asia/Shanghai").flush(
        batch_of(router_for(store), records, int(time.time())))
    keep = {"call_events": 30, "dead_letters": 60}

    # The same day as the events above, even when the run crosses midnight.
    drops, _ = retention.apply(store.backend, store.db, keep, today=TODAY, dry_run=True)
    planned = {(d.table, d.partition_id) for d in drops}
    old = {(TODAY - timedelta(days=a)).strftime("%Y%m%d") for a in (500, 31)}
    # (Current servers may already have expired the 500-day-old rows by TTL on their own.)
    assert {p for t, p in planned if t == "call_events"} <= old
    assert (TODAY - timedelta(days=31)).strftime("%Y%m%d") in {p for t, p in planned if t == "call_events"}

    retention.apply(store.backend, store.db, keep, today=TODAY)
    days = {r[0] for r in store.backend.query(f"SELECT DISTINCT toDate(occurred_at) FROM {store.db}.call_events").rows}
    # The 30-day-old partition is not dropped (its day is still inside the 30 days), but a
    # current server's TTL expires its rows once the wall clock passes their time of day plus
    # 30 days, so whether they are still there depends on when the test runs.
    kept = {TODAY - timedelta(days=a) for a in (29, 1)}
    assert kept <= days <= kept | {TODAY - timedelta(days=30)}
    on_day_30 = store.backend.query(
        f"SELECT count() FROM {store.db}.call_events WHERE toDate(occurred_at) = toDate('{TODAY - timedelta(days=30)}')"
    ).rows[0][0]
    assert 0 <= on_day_30 <= 20
    assert store.count("call_events") == 40 + on_day_30
    dl_months = {r[0] for r in store.backend.query(
        f"SELECT DISTINCT toYYYYMM(received_at) FROM {store.db}.dead_letters").rows}
    # A month partition stays while its last day is within the 60 days; the 400-day-old one went.
    assert all(retention.newest_day(str(m), "month") >= TODAY - timedelta(days=60) for m in dl_months)  # type: ignore[operator]
    assert (TODAY - timedelta(days=1)).year * 100 + (TODAY - timedelta(days=1)).month in dl_months
    assert retention.plan_drops(store.backend, store.db, keep, TODAY) == []  # nothing left to do


def test_ttl_follows_the_settings_where_supported(store: Store) -> None:
    changes = retention.plan_ttl(store.backend, store.db, {"call_events": 100})
    if not store.backend.server_version().at_least(20, 3):
        assert changes == []  # 18.16: no TTL, partition drops only
        return
    assert [c.table for c in changes] == ["call_events"]
    retention.apply(store.backend, store.db, {"call_events": 100})
    ddl = store.backend.query(
        f"SELECT create_table_query FROM system.tables WHERE database = '{store.db}' AND name = 'call_events'").scalar()
    assert "toIntervalDay(100)" in ddl or "INTERVAL 100 DAY" in ddl
    assert retention.plan_ttl(store.backend, store.db, {"call_events": 100}) == []


def test_partition_ids() -> None:
    assert retention.newest_day("20261127", "day") == date(2026, 11, 27)
    assert retention.newest_day("202602", "month") == date(2026, 2, 28)
    assert retention.newest_day("tuple()", "day") is None
    assert CALL_EVENTS.partition == "day"
