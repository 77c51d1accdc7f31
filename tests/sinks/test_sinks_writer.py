"""The sink end to end with the real Kafka broker: every topic to its table, duplicates and
invalid messages, offsets committed only for what is stored."""

from __future__ import annotations

import pytest

from testkit.events import BASE_MS, make_events
from testkit.sinks import SinkThread, Store, Topics
from testkit.waits import wait_for
from tests.sinks.sinkhelpers import alert_record, dlq_record, flag_record, rate_record

pytestmark = pytest.mark.kafka


def test_all_topics_stored_exactly_once(store: Store, topics: Topics) -> None:
    events = make_events(1500, seed=1, start_ms=BASE_MS, span_s=3 * 3600)
    topics.send_events(events)
    topics.send_events(events[:200])  # re-sent duplicates (new offsets, same event_id)
    topics.send("call_events", [(b"b-1", b"not json"), (None, events[0].to_json()), (b"x", b'{"schema_version": 1}')])
    rates = [rate_record(60, BASE_MS // 1000, "branch", "sh-pudong", {"hung_up": 1}, 1),
             rate_record(60, BASE_MS // 1000, "branch", "sh-pudong", {"hung_up": 2, "completed": 3}, 2),
             rate_record(300, BASE_MS // 1000, "all", "all", {"declined": 4}, 1)]
    topics.send_json("hangup_rates", rates + rates[:1], key="key")  # a stale redelivery of version 1 too
    flags = [flag_record(1), flag_record(1, "escalated", "high"), flag_record(2), flag_record(2)]
    topics.send_json("borrower_flags", flags, key="borrower_id")
    topics.send_json("hangup_alerts", [alert_record(1), alert_record(1, "resolved"), alert_record(2)], key="alert_id")
    topics.send_json("dead_letters", [dlq_record(i) for i in range(5)] + [dlq_record(0)], key="source_topic")

    settings = store.settings(topics=topics.names, group_id=topics.group, flush_interval_s=0.3, log_interval_s=0)
    with SinkThread(settings) as sink:
        wait_for(lambda: store.count("call_events") == 1500 and store.count("dead_letters") == 5
                 # one row per alert and status (migration 0009): alert 1 firing and resolved, alert 2
                 and store.count("hangup_alerts") == 3 and store.count("borrower_flags") == 3
                 and store.count("hangup_rates") == 2, what="all rows stored", describe=store.counts)
        wait_for(lambda: _all_committed(topics), what="offsets committed")
    stats = sink.stats
    assert stats is not None and stats.rejected.total() == 0

    got = store.backend.query(
        f"SELECT event_id, occurred_at_ms, branch, outcome, agent_id, first_time_borrower, extra "
        f"FROM {store.db}.call_events FINAL").rows
    want = {(e.event_id, e.occurred_at_ms, e.branch, e.outcome, e.agent_id,
             None if e.first_time_borrower is None else int(e.first_time_borrower),
             '{"queue":"q1"}' if e.extra else "{}") for e in events}
    assert len(got) == 1500 and set(got) == want
    top = store.backend.query(
        f"SELECT hung_up, completed, version FROM {store.db}.hangup_rates FINAL WHERE window_size_s = 60").rows
    assert top == [(2, 3, 2)]  # the highest version wins, whatever the arrival order
    status = dict(store.backend.query(
        f"SELECT alert_id, argMax(status, version) FROM {store.db}.hangup_alerts GROUP BY alert_id").rows)
    assert status == {alert_record(1)["alert_id"]: "resolved", alert_record(2)["alert_id"]: "firing"}
    # Invalid call events are skipped (the worker dead-letters them), not stored twice.
    assert store.backend.query(
        f"SELECT count() FROM {store.db}.dead_letters WHERE source_topic = '{topics.names['call_events']}'"
    ).scalar() == 0


def _all_committed(topics: Topics) -> bool:
    committed, end = topics.committed_vs_end()
    return committed == end


def test_refused_rows_are_dead_lettered_and_committed(store: Store, topics: Topics) -> None:
    good = [flag_record(i) for i in range(30)]
    bad = flag_record(99, severity="critical")  # ClickHouse refuses the Enum8 value
    negative = rate_record(60, BASE_MS // 1000, "all", "all", {}, 1) | {"attempts": -1}
    topics.send_json("borrower_flags", [*good[:10], bad, *good[10:]], key="borrower_id")
    topics.send_json("hangup_rates", [negative], key="key")
    settings = store.settings(topics=topics.names, group_id=topics.group, flush_interval_s=0.3, log_interval_s=0)
    with SinkThread(settings):
        wait_for(lambda: store.count("borrower_flags") == 30 and store.count("dead_letters") == 2,
                 what="good rows stored, bad ones dead-lettered", describe=store.counts)
        wait_for(lambda: _all_committed(topics), what="offsets committed past the bad rows")
    kinds = dict(store.backend.query(
        f"SELECT source_topic, error_kind FROM {store.db}.dead_letters FINAL").rows)
    assert kinds == {topics.names["borrower_flags"]: "sink_rejected",
                     topics.names["hangup_rates"]: "sink_invalid_record"}


def test_two_sinks_share_the_work_as_a_group(store: Store, topics: Topics) -> None:
    events = make_events(3000, seed=5, start_ms=BASE_MS, span_s=3600)
    topics.send_events(events[:1500])
    settings = store.settings(topics=topics.names, group_id=topics.group, flush_interval_s=0.2, log_interval_s=0,
                              session_timeout_s=10)
    with SinkThread(settings) as first:
        wait_for(lambda: store.count("call_events") > 0, what="the first sink storing")
        with SinkThread(settings) as second:  # joining triggers a rebalance (revoke -> flush -> commit)
            wait_for(lambda: topics.group_members() == 2, what="both sinks in the group")
            topics.send_events(events[1500:])
            wait_for(lambda: store.count("call_events") == 3000, what="all events stored", describe=store.counts)
            wait_for(lambda: _all_committed(topics), what="offsets committed")
    assert first.stats is not None and second.stats is not None
    assert first.stats.rows["call_events"] > 0 and second.stats.rows["call_events"] > 0  # both did work
    assert store.backend.query(f"SELECT uniqExact(event_id) FROM {store.db}.call_events").scalar() == 3000


def test_unmigrated_database_is_refused_without_migrate(store: Store) -> None:
    import asyncio

    from hangwatch.platform.settings import ClickHouseSettings
    from hangwatch.sinks.backends import BackendError
    from hangwatch.sinks.writer import run_sink

    ch = store.ch.model_copy(update={"database": store.db + "_empty"})
    assert isinstance(ch, ClickHouseSettings)
    settings = store.settings().model_copy(update={"clickhouse": ch})
    with pytest.raises(BackendError, match="run `hangwatch migrate`"):
        asyncio.run(run_sink(settings, asyncio.Event(), apply_migrations=False))
