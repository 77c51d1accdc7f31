"""The project's schema in cluster mode (clickhouse.cluster) on 2 shards x 2 replicas: the
migrations create Replicated tables on every host and Distributed tables over them; the
sink's flushes (call events, borrower_calls, the rollups' recomputes) go through the
Distributed tables with insert_distributed_sync and insert_quorum = 2; two sinks on two hosts
store the same events (a redelivery); a replica is killed while the sink writes and comes
back. Everything read through any host equals the oracle."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from pydantic import SecretStr

from hangwatch.platform.settings import ClickHouseSettings
from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.sinks import migrate
from hangwatch.sinks.backends import Backend, Unavailable, open_backend
from hangwatch.sinks.catalogue import Context, FixedFrame, run
from hangwatch.sinks.rollup import COUNTS, KEY
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import BASE_MS, event_records, make_events
from testkit.oracles.rates import dedupe
from testkit.oracles.rollups import compact_counts, rollup_counts, totals
from testkit.sinks import Store, batch_of, compact_rows_stored, router_for
from tests.cluster.conftest import Cluster

pytestmark = pytest.mark.cluster
TZ = "Asia/Shanghai"
SERVERS = ("ch-s1r1", "ch-s1r2", "ch-s2r1", "ch-s2r2")
EVENTS = make_events(3000, seed=41, start_ms=BASE_MS, span_s=2 * 86400)


def _settings(cluster: Cluster, host: str, db: str) -> ClickHouseSettings:
    return ClickHouseSettings(url=SecretStr(cluster.ch_url(host)), database=db, cluster=cluster.ch_cluster,
                              insert_quorum=2, send_receive_timeout_s=30)


@pytest.fixture
def stores(cluster: Cluster) -> Iterator[dict[str, Store]]:
    db = f"hwcl_{uuid.uuid4().hex[:8]}"
    out = {}
    for h in SERVERS:
        ch = _settings(cluster, h, db)
        out[h] = Store("native", open_backend(ch), db, ch)
    migrate.apply(out["ch-s1r1"].backend, db, {}, cluster=cluster.ch_cluster)
    yield out
    migrate.drop(out["ch-s1r1"].backend, db, cluster=cluster.ch_cluster)
    for s in out.values():
        s.backend.close()


def _flush_until_stored(store: Store, events: list[CallOutcome], deadline_s: float = 180) -> int:
    """What the sink does: retry the whole batch while ClickHouse is unavailable. Returns the
    number of failed attempts."""
    batch = batch_of(router_for(store), {"call_events": event_records(events)}, int(time.time()))
    failures = 0
    end = time.monotonic() + deadline_s
    while True:
        try:
            Flusher(store.backend, store.db, "sink@cluster", TZ).flush(batch)
            return failures
        except Unavailable:
            failures += 1
            if time.monotonic() > end:
                raise
            time.sleep(2)


def _rollups(b: Backend, db: str) -> dict[tuple[object, ...], dict[str, int]]:
    keys = ", ".join(KEY)
    latest = ", ".join(f"argMax({c}, version)" for c in COUNTS)
    out: dict[tuple[object, ...], dict[str, int]] = {}
    for grain in ("1m", "1h", "1d"):
        for r in b.query(f"SELECT toUInt32(bucket_start), {keys}, {latest} FROM {db}.rollup_{grain} "
                         f"GROUP BY bucket_start, {keys}").rows:
            out[(grain, int(r[0]), *(str(x) for x in r[1:1 + len(KEY)]))] = dict(
                zip(COUNTS, (int(x) for x in r[1 + len(KEY):]), strict=True))
    return out


def test_schema_on_the_cluster_stays_exact_through_redelivery_and_a_replica_outage(
        cluster: Cluster, stores: dict[str, Store]) -> None:
    s1r1, s2r2 = stores["ch-s1r1"], stores["ch-s2r2"]
    db = s1r1.db
    engines = dict(s1r1.backend.query(f"SELECT name, engine FROM system.tables WHERE database = '{db}'").rows)
    assert engines["call_events"] == "Distributed" and engines["call_events_local"] == "ReplicatedReplacingMergeTree"
    assert engines["sink_batches_local"] == "ReplicatedMergeTree"
    assert engines["rollup_1d_local"] == "ReplicatedReplacingMergeTree"
    for h in SERVERS:  # every host has the whole schema (ON CLUSTER)
        tables = stores[h].backend.query(f"SELECT name FROM system.tables WHERE database = '{db}'").rows
        names = {r[0] for r in tables}
        assert {"call_events", "call_events_local", "rollup_1m", "borrower_calls_local",
                "borrower_calls_0013_local", "rollup_compact_1d_local"} <= names, h
        ddl = stores[h].backend.query(f"SELECT create_table_query FROM system.tables WHERE database = '{db}' "
                                      "AND name = 'borrower_calls_local'").scalar()
        assert "ORDER BY (cityHash64(borrower_id), borrower_id" in ddl, h
    assert not any(s.changed_since_applied for s in migrate.status(s1r1.backend, db))

    first, second = EVENTS[:1500], EVENTS[1500:]
    _flush_until_stored(s1r1, first)
    _flush_until_stored(s2r2, first[500:1000])  # a redelivery, stored by a sink on another host

    # A replica of shard 1 dies while the sink writes: inserts cannot reach the quorum of 2, so
    # the batch is held and retried (the sink pauses, nothing is committed), then it is stored.
    cluster.kill("ch-s1r2")
    try:
        with pytest.raises(Unavailable):
            Flusher(s2r2.backend, db, "sink@cluster", TZ).flush(
                batch_of(router_for(s2r2), {"call_events": event_records(second)}, int(time.time())))
    finally:
        cluster.restart("ch-s1r2")
    _flush_until_stored(s2r2, second)

    expected = rollup_counts(EVENTS, TZ)
    expected_compact = compact_counts(EVENTS, TZ)
    someone = EVENTS[0].borrower_id
    start, end = BASE_MS // 1000 - 3600, BASE_MS // 1000 + 3 * 86400
    ctx_range = (datetime.fromtimestamp(start, tz=UTC), datetime.fromtimestamp(end, tz=UTC))
    for h in SERVERS:  # every host answers the same, the restarted replica included
        b = stores[h].backend
        assert b.query(f"SELECT uniqExact(event_id), count() FROM {db}.call_events FINAL").rows[0] == (
            len(EVENTS), len(EVENTS)), h
        assert _rollups(b, db) == expected, h
        assert compact_rows_stored(b, db) == expected_compact, h
        # borrower_calls after 0018's swap ON CLUSTER: one borrower's calls, and every borrower
        # in the design-effect sums (no sample: one_in 1).
        calls = run(b, "borrower_calls", Context(db=db, frame=FixedFrame(*ctx_range, 3600), tz=TZ),
                    borrower=someone, limit=1000).dicts()
        assert sorted(r["event_id"] for r in calls) == sorted(e.event_id for e in dedupe(EVENTS)
                                                               if e.borrower_id == someone), h
        sums = run(b, "borrower_clustering", Context(db=db, frame=FixedFrame(*ctx_range, 3600), tz=TZ),
                   one_in=1).dicts()[0]
        assert (sums["contact_borrowers"], sums["contact_units"]) == (
            len({e.borrower_id for e in EVENTS}), len(dedupe(EVENTS))), h
        summary = run(b, "live_summary", Context(db=db, frame=FixedFrame(*ctx_range, 3600), tz=TZ)).dicts()[0]
        assert summary["attempts"] == totals(EVENTS, start, end)["all"]["attempts"], h
    # each shard holds its own events, and both replicas of a shard the same ones
    local = {h: stores[h].backend.query(f"SELECT count() FROM {db}.call_events_local FINAL").scalar() for h in SERVERS}
    assert local["ch-s1r1"] == local["ch-s1r2"] and local["ch-s2r1"] == local["ch-s2r2"]
    assert local["ch-s1r1"] + local["ch-s2r1"] == len(EVENTS) and min(local.values()) > 0
