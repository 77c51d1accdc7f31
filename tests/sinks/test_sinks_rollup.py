"""The rollups the sink keeps (sinks.rollup) against a plain recount of the distinct events:
after duplicates, a batch flushed twice (a redelivery after a crash), late events hours after
their buckets, and a rebuild from call_events; on the 18.16 server and on chdb."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

import pytest
from typer.testing import CliRunner

from hangwatch.cli import app
from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.sinks import rollup
from hangwatch.sinks.catalogue import Context, FixedFrame, run
from hangwatch.sinks.rollup import COUNTS, KEY
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import BASE_MS, event_records, make_events
from testkit.oracles.rollups import Key, rollup_counts, totals
from testkit.sinks import CH_URL, Store, batch_of, router_for

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


# --- reading a range: days, hours and minutes without overlap ---------------------------------

WIDE = make_events(3000, seed=33, start_ms=BASE_MS, span_s=3 * 86400)
RANGES = [  # (start, end) epoch s: inside an hour, across hours, across local midnights, days
    (T0 + 3 * 3600 + 7 * 60 + 13, T0 + 3 * 3600 + 41 * 60 + 5),
    (T0 + 10 * 3600 + 59 * 60, T0 + 13 * 3600 + 60),
    (T0 + 15 * 3600 + 30 * 60 + 1, T0 + 41 * 3600 + 12 * 60),
    (T0 + 5 * 60, T0 + 3 * 86400 - 1),
    (T0 - 86400, T0 + 4 * 86400),
]


def _ctx(store: Store, start: int, end: int, step: int = 300) -> Context:
    return Context(db=store.db, frame=FixedFrame(datetime.fromtimestamp(start, tz=UTC),
                                                 datetime.fromtimestamp(end, tz=UTC), step), tz=TZ)


def _widened(start: int, end: int) -> tuple[int, int]:
    """The range as rollups read it: from the start's minute to the end of the end's minute."""
    return start // 60 * 60, end // 60 * 60 + 60


def test_range_totals_equal_a_recount_over_the_widened_range(store: Store) -> None:
    _flush(store, WIDE + WIDE[:200])
    for start, end in RANGES:
        lo, hi = _widened(start, end)
        summary = run(store.backend, "live_summary", _ctx(store, start, end)).dicts()[0]
        expected = totals(WIDE, lo, hi).get("all", {"attempts": 0, "connected": 0})
        assert (summary["attempts"], summary["connected"]) == (expected["attempts"], expected["connected"])
        by_branch = {r["branch"]: r["attempts"]
                     for r in run(store.backend, "branch_rates", _ctx(store, start, end)).dicts()}
        assert by_branch == {k: v["attempts"] for k, v in totals(WIDE, lo, hi, "branch").items()}
        notified = {r["pre_notified"]: r["attempts"] for r in
                    run(store.backend, "comparison", _ctx(store, start, end), factor="pre_notified").dicts()}
        assert notified == {("pre-notified" if k == "True" else "not notified"): v["attempts"]
                            for k, v in totals(WIDE, lo, hi, "pre_notified").items()}


def test_series_sum_to_the_range_and_filters_apply(store: Store) -> None:
    _flush(store, WIDE)
    start, end = RANGES[3]
    lo, hi = _widened(start, end)
    branch = WIDE[0].branch
    for step in (60, 900, 3600, 86400):
        ctx = _ctx(store, start, end, step)
        rows = run(store.backend, "events_per_minute" if step == 60 else "hangup_rate_by_branch", ctx).dicts()
        assert rows
    minutes = run(store.backend, "events_per_minute", _ctx(store, start, end)).dicts()
    assert sum(r["events"] for r in minutes) == totals(WIDE, lo, hi)["all"]["attempts"]
    filtered = dataclasses.replace(_ctx(store, start, end), frame=FixedFrame(
        datetime.fromtimestamp(start, tz=UTC), datetime.fromtimestamp(end, tz=UTC), 3600, {"branch": [branch]}))
    summary = run(store.backend, "live_summary", filtered).dicts()[0]
    assert summary["attempts"] == totals(WIDE, lo, hi, where={"branch": {branch}})["all"]["attempts"]
    agents = run(store.backend, "top_agents", filtered, limit=1000).dicts()
    expected = {k: v for k, v in totals(WIDE, lo, hi, "agent_id", where={"branch": {branch}}).items()
                if k != "(none)" and v["connected"] >= filtered.min_connected}
    assert {r["agent_id"]: r["attempts"] for r in agents} == {k: v["attempts"] for k, v in expected.items()}


def test_the_rollups_command_rebuilds_a_range(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _flush(store, EARLY)
    for grain in ("1m", "1h", "1d"):
        store.backend.execute(f"TRUNCATE TABLE {store.db}.rollup_{grain}")
    if store.kind == "native":
        monkeypatch.setenv("HANGWATCH_CLICKHOUSE__URL", CH_URL)
    else:
        monkeypatch.setenv("HANGWATCH_CLICKHOUSE__EMBEDDED_PATH", str(store.ch.embedded_path))
    monkeypatch.setenv("HANGWATCH_CLICKHOUSE__DATABASE", store.db)
    monkeypatch.setenv("HANGWATCH_TIMEZONE", TZ)
    since = datetime.fromtimestamp(T0, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = CliRunner().invoke(app, ["rollups", "--since", since, "--until", "now"])
    assert result.exit_code == 0, result.output
    assert stored_rollups(store) == rollup_counts(EARLY, TZ)


def test_a_long_table_prints_as_plain_aligned_text(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _flush(store, WIDE)
    if store.kind == "native":
        monkeypatch.setenv("HANGWATCH_CLICKHOUSE__URL", CH_URL)
    else:
        monkeypatch.setenv("HANGWATCH_CLICKHOUSE__EMBEDDED_PATH", str(store.ch.embedded_path))
    monkeypatch.setenv("HANGWATCH_CLICKHOUSE__DATABASE", store.db)
    since, until = (datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") for t in (T0, T0 + 3 * 86400))
    result = CliRunner().invoke(app, ["query", "events_per_minute", "--since", since, "--until", until])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    minutes = len({e.occurred_at_ms // 60_000 for e in WIDE})
    assert minutes > 2000 and len(lines) == minutes + 3
    assert set(lines[2]) <= {"-", " "} and len({len(x) for x in lines[3:] if x.count(" ") > 2}) >= 1
