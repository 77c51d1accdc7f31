"""The rollups the sink keeps (sinks.rollup) against a plain recount of the distinct events:
after duplicates, a batch flushed twice (a redelivery after a crash), late events hours after
their buckets, and a rebuild from call_events; on the 18.16 server and on chdb."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.sinks import rollup
from hangwatch.sinks.rollup import COUNTS, KEY
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import BASE_MS, event_records, make_events
from testkit.oracles.rollups import Key, rollup_counts
from testkit.sinks import Store, batch_of, router_for

TZ = "Asia/Shanghai"
T0 = BASE_MS // 1000
# Two hours that cross the local midnight (16:00 UTC), so day rows of two local days exist.
START_MS = BASE_MS + 15 * 3600 * 1000
EARLY = make_events(900, seed=31, start_ms=START_MS, span_s=2 * 3600)
LATE = make_events(200, seed=32, start_ms=START_MS, span_s=2 * 3600)


def _flush(store: Store, events: list[CallOutcome]) -> None:
    batch = batch_of(router_for(store), {"call_events": event_records(events)}, int(time.time()))
    Flusher(store.backend, store.db, "sink@test", TZ).flush(batch)


def stored_rollups(store: Store) -> dict[Key, dict[str, int]]:
    out: dict[Key, dict[str, int]] = {}
    keys = ", ".join(KEY)
    latest = ", ".join(f"argMax({c}, version)" for c in COUNTS)
    for grain in ("1m", "1h", "1d"):
        rows = store.backend.query(f"SELECT toUInt32(bucket_start), {keys}, {latest} FROM {store.db}.rollup_{grain} "
                                   f"GROUP BY bucket_start, {keys}").rows
        for r in rows:
            key: Key = (grain, int(r[0]), *(str(x) for x in r[1:1 + len(KEY)]))  # type: ignore[assignment]
            out[key] = dict(zip(COUNTS, (int(x) for x in r[1 + len(KEY):]), strict=True))
    return out


def test_rollups_equal_a_recount_after_duplicates_redelivery_and_late_events(store: Store) -> None:
    _flush(store, EARLY + EARLY[:100])  # duplicates inside one batch
    _flush(store, EARLY[300:600])  # the same events again: a redelivered batch
    assert stored_rollups(store) == rollup_counts(EARLY, TZ)
    _flush(store, LATE)  # hours late: their buckets are recomputed at once
    expected = rollup_counts(EARLY + LATE, TZ)
    assert stored_rollups(store) == expected
    assert {k[0] for k in expected} == {"1m", "1h", "1d"} and len({k[1] for k in expected if k[0] == "1d"}) == 2


def test_versions_grow_with_the_events_a_bucket_holds(store: Store) -> None:
    _flush(store, EARLY[:400])
    _flush(store, EARLY[:400])  # nothing new: the same version again
    first = dict(store.backend.query(f"SELECT toUInt32(bucket_start), max(version) FROM {store.db}.rollup_1h "
                                     "GROUP BY bucket_start").rows)
    _flush(store, EARLY[400:])
    second = dict(store.backend.query(f"SELECT toUInt32(bucket_start), max(version) FROM {store.db}.rollup_1h "
                                      "GROUP BY bucket_start").rows)
    attempts = rollup_counts(EARLY, TZ)
    for hour, version in second.items():
        assert version == sum(c["attempts"] for k, c in attempts.items() if k[0] == "1h" and k[1] == hour
                              and k[2] == "all")
        assert version >= first.get(hour, 0)


def test_rebuild_recomputes_every_bucket_from_call_events(store: Store) -> None:
    _flush(store, EARLY + LATE)
    for grain in ("1m", "1h", "1d"):
        store.backend.execute(f"TRUNCATE TABLE {store.db}.rollup_{grain}")
    days = rollup.rebuild(store.backend, store.db, TZ, datetime.fromtimestamp(T0, tz=UTC),
                          datetime.fromtimestamp(T0 + 2 * 86400, tz=UTC))
    assert days >= 2
    assert stored_rollups(store) == rollup_counts(EARLY + LATE, TZ)


def test_borrower_calls_hold_every_stored_event_once_per_event_id(store: Store) -> None:
    _flush(store, EARLY + EARLY[:50])
    borrower = EARLY[0].borrower_id
    rows = store.backend.query(f"SELECT event_id FROM {store.db}.borrower_calls WHERE borrower_id = "
                               f"'{borrower}' ORDER BY occurred_at LIMIT 1 BY event_id").rows
    assert sorted(r[0] for r in rows) == sorted({e.event_id for e in EARLY if e.borrower_id == borrower})
