"""The real ClickHouse server is stopped while the sink runs and restarted later: the sink
pauses, retries, resumes, and the stored rows equal what was produced (none lost, none
doubled); offsets never run ahead of what ClickHouse accepted."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from testkit.events import BASE_MS, make_events
from testkit.sinks import SinkThread, Store, Topics
from testkit.waits import wait_for
from tests.sinks.sinkhelpers import flag_record

pytestmark = [pytest.mark.clickhouse, pytest.mark.kafka]
SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "local" / "clickhouse.sh"


def clickhouse(action: str) -> None:
    subprocess.run([str(SCRIPT), action], check=True, capture_output=True, timeout=120)


@pytest.fixture
def restart_guard() -> Iterator[None]:
    """Whatever happens in the test, the server is running afterwards."""
    yield
    clickhouse("start")


def _retries() -> float:
    return REGISTRY.get_sample_value("hangwatch_sink_retries_total") or 0.0


def test_clickhouse_stopped_mid_stream(native_store: Store, topics: Topics, restart_guard: None) -> None:
    store = native_store
    before_outage = make_events(1000, seed=21, start_ms=BASE_MS, span_s=3600)
    during_outage = make_events(1500, seed=22, start_ms=BASE_MS + 3_600_000, span_s=3600)
    flags = [flag_record(i) for i in range(40)]
    settings = store.settings(topics=topics.names, group_id=topics.group, flush_interval_s=0.3, log_interval_s=0,
                              initial_retry_backoff_s=0.2, max_retry_backoff_s=2.0)
    settings.clickhouse.connect_timeout_s = 2.0

    topics.send_events(before_outage)
    with SinkThread(settings) as sink:
        wait_for(lambda: store.count("call_events") == 1000, what="first events stored")
        wait_for(lambda: topics.committed_vs_end()[0].get(topics.names["call_events"]) == 1000,
                 what="first offsets committed")

        retries = _retries()
        clickhouse("stop")
        try:
            topics.send_events(during_outage[:700])
            wait_for(lambda: _retries() >= retries + 2, timeout=60, what="the sink retrying")
            # More arrives while the sink is paused: it must wait in Kafka, not be lost.
            topics.send_events(during_outage[700:])
            topics.send_events(before_outage[:100])  # re-sent duplicates arrive during the outage too
            topics.send_json("borrower_flags", flags, key="borrower_id")
            wait_for(lambda: _retries() >= retries + 5, timeout=60, what="the sink retrying with backoff")
            committed, _ = topics.committed_vs_end()
            # Nothing was committed for rows ClickHouse never accepted.
            assert committed.get(topics.names["call_events"]) == 1000
            assert committed.get(topics.names["borrower_flags"], 0) == 0
        finally:
            clickhouse("start")

        wait_for(lambda: store.count("call_events") == 2500 and store.count("borrower_flags") == 40, timeout=90,
                 what="rows held during the outage stored", describe=store.counts)
        wait_for(lambda: topics.committed_vs_end()[0] == topics.committed_vs_end()[1], what="all offsets committed")
        time.sleep(1)  # a moment for anything that would (wrongly) arrive twice
    assert sink.stats is not None and sink.stats.retries >= 3

    produced = {(e.event_id, e.occurred_at_ms, e.outcome, e.branch) for e in before_outage + during_outage}
    stored = store.backend.query(
        f"SELECT event_id, occurred_at_ms, toString(outcome), branch FROM {store.db}.call_events FINAL").rows
    assert len(stored) == len(produced) == 2500
    assert set(stored) == produced
    assert store.backend.query(f"SELECT uniqExact(event_id) FROM {store.db}.call_events").scalar() == 2500
    assert {r[0] for r in store.backend.query(f"SELECT flag_id FROM {store.db}.borrower_flags FINAL").rows} == {
        f["flag_id"] for f in flags}
    assert store.count("dead_letters") == 0


def test_rebalance_during_outage_loses_nothing(native_store: Store, topics: Topics, restart_guard: None) -> None:
    """Two sinks hold batches while ClickHouse is down; one leaves the group. Its partitions
    move to the other sink, the held rows are re-read from the committed offsets, and after
    the restart everything is stored once."""
    store = native_store
    events = make_events(2000, seed=31, start_ms=BASE_MS, span_s=3600)
    settings = store.settings(topics=topics.names, group_id=topics.group, flush_interval_s=0.3, log_interval_s=0,
                              initial_retry_backoff_s=0.2, max_retry_backoff_s=1.0, session_timeout_s=10,
                              revoke_flush_timeout_s=2)
    settings.clickhouse.connect_timeout_s = 2.0
    topics.send_events(events[:500])
    with SinkThread(settings) as first:
        second = SinkThread(settings).__enter__()
        wait_for(lambda: topics.group_members() == 2, what="both sinks in the group")
        wait_for(lambda: store.count("call_events") == 500, what="first events stored")
        retries = _retries()
        clickhouse("stop")
        try:
            topics.send_events(events[500:])
            wait_for(lambda: _retries() >= retries + 4, timeout=60, what="both sinks retrying")
            second.stop()  # leaves the group while holding rows it could not store
            wait_for(lambda: topics.group_members() == 1, timeout=60, what="the group rebalanced to one sink")
            time.sleep(1)
        finally:
            clickhouse("start")
        wait_for(lambda: store.count("call_events") == 2000, timeout=90, what="every event stored",
                 describe=store.counts)
        wait_for(lambda: topics.committed_vs_end()[0] == topics.committed_vs_end()[1], what="all offsets committed")
    assert first.stats is not None
    stored = {r[0] for r in store.backend.query(f"SELECT event_id FROM {store.db}.call_events FINAL").rows}
    assert stored == {e.event_id for e in events}
