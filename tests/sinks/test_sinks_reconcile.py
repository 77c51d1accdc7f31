"""Reconciliation against a plain-Python batch recomputation: events arriving hours late
(after the stream closed their windows) end up in the rates."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.sinks import reconcile as rec
from hangwatch.sinks.reconcile import COUNT_COLUMNS, reconcile
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import BASE_MS, event_records, json_records, make_events
from testkit.oracles.rates import window_counts
from testkit.sinks import Store, batch_of, router_for
from tests.sinks.sinkhelpers import rate_record

SIZES = [60, 300, 3600]
T0 = BASE_MS // 1000  # midnight UTC two days ago
ON_TIME = make_events(1500, seed=11, start_ms=BASE_MS, span_s=2 * 3600)
# Events of the same two hours that reached the pipeline hours late: the stream had closed
# their windows and dropped them, the sink stored them.
LATE = make_events(300, seed=12, start_ms=BASE_MS, span_s=2 * 3600)


def _dt(s: int) -> datetime:
    return datetime.fromtimestamp(s, tz=UTC)


def store_stream_output(store: Store, stream_events: list[CallOutcome], all_events: list[CallOutcome],
                        extra_rates: list[dict[str, object]] | None = None) -> None:
    rates = [rate_record(size, start, dim, val, counts, version=7)
             for (size, start, dim, val), counts in window_counts(stream_events, SIZES).items()]
    records = {"call_events": event_records(all_events) + event_records(all_events[:50]),
               "hangup_rates": json_records(rates + (extra_rates or []), "key")}
    Flusher(store.backend, store.db, "sink@test", "Asia/Shanghai").flush(
        batch_of(router_for(store), records, int(time.time())))


def stored_rates(store: Store, until_s: int | None = None) -> dict[tuple[int, int, str, str], dict[str, int]]:
    cols = ", ".join(COUNT_COLUMNS)
    where = f" AND window_start < toDateTime({until_s}, 'UTC')" if until_s else ""
    rows = store.backend.query(
        f"SELECT window_size_s, toUInt32(window_start), toString(dimension), toString(value), {cols} "
        f"FROM {store.db}.hangup_rates FINAL WHERE window_start >= toDateTime({T0}, 'UTC'){where}").rows
    return {(r[0], r[1], r[2], r[3]): dict(zip(COUNT_COLUMNS, r[4:], strict=True)) for r in rows
            if any(r[4:])}  # a zeroed cell is the same as no cell


def test_late_events_reach_the_rates_after_reconciliation(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rec, "CHUNK_S", 1800)  # several chunks, to cover the chunk boundaries
    ghost = rate_record(60, T0 + 600, "branch", "ghost-branch", {"hung_up": 4}, 2)  # counted, never stored
    store_stream_output(store, ON_TIME, ON_TIME + LATE, [ghost])
    oracle = window_counts(ON_TIME + LATE, SIZES)
    assert stored_rates(store) != oracle  # the stream missed the late events

    report = reconcile(store.backend, store.db, _dt(T0), _dt(T0 + 2 * 3600), SIZES,
                       closed_before=datetime.now(tz=UTC))
    assert report.corrected > 0
    assert stored_rates(store) == oracle
    versions = set(store.backend.query(
        f"SELECT DISTINCT version FROM {store.db}.hangup_rates FINAL WHERE source = 'reconcile'").scalar_column())
    assert versions == {8, 1, 3}  # stream version 7 + 1; 1 for cells the stream never emitted; ghost 2 + 1
    ghost_now = store.backend.query(
        f"SELECT attempts, hung_up, version FROM {store.db}.hangup_rates FINAL WHERE value = 'ghost-branch'").rows
    assert ghost_now == [(0, 0, 3)]  # counted by the stream, no such event stored: corrected to zero

    again = reconcile(store.backend, store.db, _dt(T0), _dt(T0 + 2 * 3600), SIZES, closed_before=datetime.now(tz=UTC))
    assert again.corrected == 0  # idempotent


def test_open_windows_are_left_to_the_stream(store: Store) -> None:
    store_stream_output(store, ON_TIME, ON_TIME + LATE)
    before = stored_rates(store)
    cutoff = T0 + 3600
    dry = reconcile(store.backend, store.db, _dt(T0), _dt(T0 + 2 * 3600), SIZES, closed_before=_dt(cutoff),
                    dry_run=True)
    assert dry.corrected > 0 and stored_rates(store) == before  # a dry run writes nothing
    reconcile(store.backend, store.db, _dt(T0), _dt(T0 + 2 * 3600), SIZES, closed_before=_dt(cutoff))
    after = stored_rates(store)
    oracle = window_counts(ON_TIME + LATE, SIZES)
    stream = window_counts(ON_TIME, SIZES)
    for key in set(after) | set(oracle):
        size, start = key[0], key[1]
        expected = oracle if start + size <= cutoff else stream
        assert after.get(key) == expected.get(key), key
