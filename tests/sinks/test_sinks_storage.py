"""Storage semantics on both backends: a batch delivered twice leaves identical query results,
the queries return the expected numbers, refused rows go to dead_letters with the error."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import parse_time
from hangwatch.sinks import catalogue
from hangwatch.sinks.backends import DataRejected, Result
from hangwatch.sinks.tables import CALL_EVENTS
from hangwatch.sinks.writer.flush import Flusher
from hangwatch.sinks.writer.isolate import insert_isolating
from testkit.events import BASE_MS, event_records, json_records, make_events
from testkit.oracles.rates import window_counts
from testkit.sinks import Store, batch_of, router_for
from tests.sinks.sinkhelpers import alert_record, dlq_record, flag_record, rate_record

EVENTS = make_events(2000, seed=7, start_ms=BASE_MS, span_s=3 * 3600)
ORACLE = window_counts(EVENTS, [60, 300])
SINCE = {"since": "30d"}
# The queries `hangwatch query` offered before the catalogue also held the panels' queries.
CLI_QUERIES = ("current_rates", "rolling_rates", "rates_timeseries", "top_flagged_borrowers", "active_alerts",
               "dlq_summary", "dlq_latest", "events_per_minute", "alert_history", "open_flag_list")


def run(backend: Any, db: str, name: str, since: str | None = None, **params: Any) -> Result:
    """A catalogue query as `hangwatch query NAME --since ...` runs it (no end: open range)."""
    start = parse_time(since, now=datetime.now(tz=UTC), tz=UTC) if since else None
    return catalogue.run(backend, name, catalogue.Context.of(Settings(), catalogue.FixedFrame(start), db), **params)


def dataset() -> dict[str, list[tuple[bytes | None, bytes | None]]]:
    rates = [rate_record(size, start, dim, val, counts, version=3)
             for (size, start, dim, val), counts in ORACLE.items()]
    flags = [flag_record(1), flag_record(1, "escalated", "high"), flag_record(2),
             flag_record(3), flag_record(3, "resolved"), flag_record(4, borrower="b-0001")]
    resolved = {**alert_record(1, "resolved"), "hangup_rate": 0.21, "explanation": "back to baseline"}
    alerts = [alert_record(1), resolved, alert_record(2), alert_record(3)]
    return {
        "call_events": event_records(EVENTS) + event_records(EVENTS[:100]),  # re-sent duplicates
        "hangup_rates": json_records(rates, "key"),
        "borrower_flags": json_records(flags, "borrower_id"),
        "hangup_alerts": json_records(alerts, "alert_id"),
        "dead_letters": json_records([dlq_record(i) for i in range(5)], "source_topic"),
    }


def snapshot(store: Store) -> dict[str, Any]:
    """Every user-visible query plus the full contents of each table (as queries read them)."""
    params: dict[str, dict[str, Any]] = {
        "rates_timeseries": SINCE, "dlq_summary": SINCE, "events_per_minute": {"since": "4d"}, "alert_history": SINCE,
        "open_flag_list": SINCE}
    out: dict[str, Any] = {}
    for name in CLI_QUERIES:  # not freshness and sink_batches: storage times and the flush log, by design
        out[name] = run(store.backend, store.db, name, **params.get(name, {})).rows
    cols = ", ".join(c for c in CALL_EVENTS.columns if c != "ingested_at")
    out["call_events"] = sorted(store.backend.query(f"SELECT {cols} FROM {store.db}.call_events FINAL").rows)
    out["hangup_rates"] = sorted(store.backend.query(
        f"SELECT * EXCEPT ingested_at FROM {store.db}.hangup_rates FINAL").rows) if _has_except(store) else \
        sorted(store.backend.query(f"SELECT window_size_s, window_start, dimension, value, attempts, hung_up, version "
                                   f"FROM {store.db}.hangup_rates FINAL").rows)
    return out


def _has_except(store: Store) -> bool:
    return store.backend.server_version().at_least(21, 1)


def test_duplicate_delivery_leaves_identical_results(store: Store) -> None:
    router = router_for(store)
    flusher = Flusher(store.backend, store.db, "sink@test", "Asia/Shanghai")
    now = int(time.time())
    flusher.flush(batch_of(router, dataset(), now))
    first = snapshot(store)
    # The same batch again, as after a crash between INSERT and offset commit.
    flusher.flush(batch_of(router, dataset(), now + 5))
    assert snapshot(store) == first
    # Copies may or may not be merged away yet (current servers also collapse them on insert);
    # every read counts each event once either way.
    assert store.count("call_events") == 2000
    for table in ("call_events", "hangup_rates", "borrower_flags", "hangup_alerts", "dead_letters"):
        store.backend.execute(f"OPTIMIZE TABLE {store.db}.{table} FINAL")
    assert snapshot(store) == first  # and merging changes nothing either


def test_queries_return_the_expected_numbers(store: Store) -> None:
    Flusher(store.backend, store.db, "sink@test", "Asia/Shanghai").flush(
        batch_of(router_for(store), dataset(), int(time.time())))
    b, db = store.backend, store.db

    last300 = max(s for (size, s, _, _) in ORACLE if size == 300)
    cur = run(b, db, "current_rates", window_size_s=300, dimension="branch").dicts()
    want = {v: c for (size, s, d, v), c in ORACLE.items() if size == 300 and s == last300 and d == "branch"}
    assert {r["value"]: (r["attempts"], r["hung_up"]) for r in cur} == {
        v: (c["attempts"], c["hung_up"]) for v, c in want.items()}
    for r in cur:
        assert r["hangup_rate"] == (round(r["hung_up"] / r["connected"], 4) if r["connected"] else None)

    last60 = max(s for (size, s, _, _) in ORACLE if size == 60)
    rolling = {r["value"]: r for r in run(b, db, "rolling_rates", minutes=30, dimension="branch").dicts()}
    for value in rolling:
        keys = [k for k in ORACLE if k[0] == 60 and k[2] == "branch" and k[3] == value
                and last60 + 60 - 1800 <= k[1] < last60 + 60]
        assert rolling[value]["attempts"] == sum(ORACLE[k]["attempts"] for k in keys)
        assert rolling[value]["hung_up"] == sum(ORACLE[k]["hung_up"] for k in keys)

    top = run(b, db, "top_flagged_borrowers").dicts()
    assert [(r["borrower"], r["open_flags"], r["max_severity"]) for r in top] == [
        ("b-0001", 2, "high"), ("b-0002", 1, "medium")]  # flag 3 is resolved
    assert len(orjson.loads(top[0]["evidence"])) == 3

    alerts = run(b, db, "active_alerts").dicts()
    assert sorted(a["alert_id"] for a in alerts) == sorted(alert_record(i)["alert_id"] for i in (2, 3))
    # The resolved alert keeps the numbers it fired with (one row per alert_id and status).
    history = {r["alert_id"]: r for r in run(b, db, "alert_history", **SINCE).dicts()}
    first = history[alert_record(1)["alert_id"]]
    assert (first["status"], first["hangup_rate"], first["wilson_low"], first["baseline_rate"],
            first["connected"], first["explanation"]) == (
        "resolved", 0.5, 0.35, 0.2, 40, alert_record(1)["explanation"])
    assert first["resolved_at"] is not None and history[alert_record(2)["alert_id"]]["resolved_at"] is None

    # Open flags with readable evidence from the evidence arrays (no JSON functions).
    listed = run(b, db, "open_flag_list", **SINCE).dicts()
    assert {r["borrower_id"] for r in listed} == {"b-0001", "b-0002"}
    assert all(r["evidence"].count(" refused @income_check agent-1 [v2]") == 3 for r in listed), listed

    dlq = run(b, db, "dlq_summary", **SINCE).dicts()
    assert [(r["source_topic"], r["error_kind"], r["messages"]) for r in dlq] == [("call-outcomes", "not_json", 5)]
    assert len(run(b, db, "dlq_latest", limit=3).rows) == 3

    fresh = run(b, db, "freshness").dicts()[0]
    assert int(fresh["latest_event_at"].timestamp()) == max(e.occurred_at_ms for e in EVENTS) // 1000
    assert fresh["event_lag_s"] >= 0
    assert fresh["events_stored_at"] is not None and fresh["rates_stored_at"] is not None

    # The events start two days before the day this module was imported; "4d" keeps a day of
    # slack for a run that crosses midnight between import and this query.
    per_minute = run(b, db, "events_per_minute", since="4d").rows
    assert sum(r[1] for r in per_minute) == 2000
    batches = run(b, db, "sink_batches").dicts()
    assert {r["table"] for r in batches} == {"call_events", "hangup_rates", "borrower_flags", "hangup_alerts",
                                             "dead_letters", "borrower_calls", "rollups"}

    # Freshness and the "pipeline stalled" rule read the flush log, not call_events: without
    # call_events they give the same answers.
    b.execute(f"DROP TABLE {db}.call_events")
    again = run(b, db, "freshness").dicts()[0]
    assert {k: v for k, v in again.items() if k not in ("event_lag_s", "now")} == {
        k: v for k, v in fresh.items() if k not in ("event_lag_s", "now")}
    assert 0 <= run(b, db, "seconds_since_stored", since="1h").scalar() < 600


def test_refused_and_unreadable_rows_go_to_dead_letters(store: Store) -> None:
    good = [flag_record(i) for i in range(10, 60)]
    bad_enum = flag_record(7, severity="critical")  # ClickHouse refuses the Enum8 value
    bad_range = rate_record(60, BASE_MS // 1000, "all", "all", {"busy": 1}, 1) | {"attempts": -1}
    huge = rate_record(60, BASE_MS // 1000, "all", "all", {"busy": 1}, 1) | {"busy": 2**40}
    missing = {k: v for k, v in alert_record(5).items() if k != "wilson_low"}
    records = {
        "borrower_flags": json_records([*good[:25], bad_enum, *good[25:]], "borrower_id"),
        "hangup_rates": json_records([bad_range, huge, rate_record(60, BASE_MS // 1000, "all", "all", {}, 1)], "key"),
        "hangup_alerts": json_records([missing, alert_record(6)], "alert_id"),
        "call_events": event_records(EVENTS[:300]),
    }
    report = Flusher(store.backend, store.db, "sink@test", "Asia/Shanghai").flush(
        batch_of(router_for(store), records, int(time.time())))
    assert store.count("borrower_flags") == 50 and store.count("call_events") == 300
    assert store.count("hangup_rates") == 1 and store.count("hangup_alerts") == 1
    dead = {(r[0], r[1]): r[2:] for r in store.backend.query(
        f"SELECT source_topic, source_offset, error_kind, error_field, error, value_b64 "
        f"FROM {store.db}.dead_letters FINAL").rows}
    assert set(dead) == {("borrower_flags", 25), ("hangup_rates", 0), ("hangup_rates", 1), ("hangup_alerts", 0)}
    kind, _field, error, value_b64 = dead[("borrower_flags", 25)]
    assert kind == "sink_rejected" and "critical" in error and value_b64
    assert dead[("hangup_rates", 0)][:2] == ("sink_invalid_record", "attempts")
    assert dead[("hangup_rates", 1)][:2] == ("sink_invalid_record", "busy")
    assert dead[("hangup_alerts", 0)][:2] == ("sink_invalid_record", "wilson_low")
    assert {t.table: t.rejected for t in report.tables}["borrower_flags"] == 1


class _CountingBackend:
    """Refuses any INSERT that contains a row whose first value is 'bad'."""

    name = "counting"

    def __init__(self) -> None:
        self.inserts = 0
        self.stored: list[tuple[Any, ...]] = []

    def insert(self, table: str, columns: Any, rows: Any) -> None:
        self.inserts += 1
        if any(r[0] == "bad" for r in rows):
            raise DataRejected("Code: 53. Type mismatch: Column a: bad value", 53)
        self.stored.extend(rows)

    def execute(self, sql: str) -> None:  # pragma: no cover - unused
        raise NotImplementedError

    def query(self, sql: str) -> Result:  # pragma: no cover - unused
        raise NotImplementedError


@pytest.mark.parametrize("bad_at", [[0], [49_999], [17, 18, 30_000]])
def test_bisection_finds_refused_rows_with_few_inserts(bad_at: list[int]) -> None:
    rows = [("bad" if i in bad_at else f"ok{i}",) for i in range(50_000)]
    backend = _CountingBackend()
    refused = insert_isolating(backend, "t", ["a"], rows)  # type: ignore[arg-type]
    assert [i for i, _ in refused] == bad_at
    assert len(backend.stored) == 50_000 - len(bad_at)
    assert backend.inserts <= 1 + len(bad_at) * 2 * 17  # ~2 log2(n) per bad row


def test_a_personal_data_dead_letter_is_found_by_the_keyed_hash_of_its_number(store: Store) -> None:
    """The worker masks the number in a personal_data dead letter and keeps its keyed hash
    (docs/privacy.md); the table keeps the hashes too, so a producer finds the record by the
    hash of the number it sent, and redelivery still finds it once."""
    hmac_a, hmac_b = "a" * 64, "b" * 64
    found = {**dlq_record(7), "error_kind": "personal_data", "error_field": "extra.phone",
             "value_b64": "eyJwaG9uZSI6ICIqKioqKioqKioqKiJ9",
             "personal_data": [{"field": "extra.phone", "type": "mobile", "hmac_sha256": hmac_a},
                               {"field": None, "type": "resident_id", "hmac_sha256": hmac_b}]}
    no_key = {**dlq_record(8), "error_kind": "personal_data",
              "personal_data": [{"field": "note", "type": "mobile", "hmac_sha256": None}]}
    records = {"dead_letters": json_records([found, no_key, dlq_record(9), found], "source_topic")}
    Flusher(store.backend, store.db, "sink@test", "Asia/Shanghai").flush(
        batch_of(router_for(store), records, int(time.time())))
    rows = {r[0]: r[1:] for r in store.backend.query(
        f"SELECT source_offset, personal_data_types, personal_data_fields, personal_data_hmacs "
        f"FROM {store.db}.dead_letters FINAL").rows}
    assert rows == {7: (["mobile", "resident_id"], ["extra.phone", ""], [hmac_a, hmac_b]),
                    8: (["mobile"], ["note"], [""]), 9: ([], [], [])}
    hit = run(store.backend, store.db, "dlq_personal_data", since="3650d", hmac=hmac_b.upper()).dicts()
    assert [(r["source_offset"], r["error_field"], r["personal_data_types"]) for r in hit] == \
        [(7, "extra.phone", ["mobile", "resident_id"])]
    assert run(store.backend, store.db, "dlq_personal_data", since="3650d", hmac="c" * 64).rows == []
