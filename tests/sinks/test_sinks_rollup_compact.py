"""The compact rollups (rollup_compact_1m/1h/1d, migration 0016: one value of one column per row,
summed over the segments) against a plain recount of the distinct events, after duplicates, a
redelivered batch, late events and a rebuild; and the reads that use them (best times, the
branch x hour heatmap, the comparisons, one value against the rest, top agents, the series)
against a recount, equal to
the same reads through the full rollups (a filter set) and through Grafana's macros with and
without a variable selected. On the 18.16 server and on chdb."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.sinks import rollup
from hangwatch.sinks.catalogue import Context, FixedFrame, MacroFrame, render, run
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import BASE_MS, event_records, make_events
from testkit.oracles.rates import CONNECTED, NONE, dedupe
from testkit.oracles.rollups import CompactKey, compact_counts, totals
from testkit.sinks import Store, batch_of, compact_rows_stored, router_for
from tests.grafana import macro_helper

TZ = "Asia/Shanghai"
T0 = BASE_MS // 1000
START_MS = BASE_MS + 15 * 3600 * 1000  # two hours across the local midnight (16:00 UTC)
EARLY = make_events(900, seed=41, start_ms=START_MS, span_s=2 * 3600)
LATE = make_events(200, seed=42, start_ms=START_MS, span_s=2 * 3600)
WIDE = make_events(3000, seed=43, start_ms=BASE_MS, span_s=3 * 86400)
RANGES = [  # inside an hour, across hours, across a local midnight, days with edges, beyond the data
    (T0 + 3 * 3600 + 7 * 60 + 13, T0 + 3 * 3600 + 41 * 60 + 5),
    (T0 + 10 * 3600 + 59 * 60, T0 + 13 * 3600 + 60),
    (T0 + 15 * 3600 + 30 * 60 + 1, T0 + 41 * 3600 + 12 * 60),
    (T0 + 5 * 60, T0 + 3 * 86400 - 1),
    (T0 - 86400, T0 + 4 * 86400),
]


def _flush(store: Store, events: list[CallOutcome]) -> None:
    batch = batch_of(router_for(store), {"call_events": event_records(events)}, int(time.time()))
    Flusher(store.backend, store.db, "sink@test", TZ).flush(batch)


def stored_compact(store: Store) -> dict[CompactKey, dict[str, int]]:
    return compact_rows_stored(store.backend, store.db)


def test_compact_rollups_equal_a_recount_after_duplicates_redelivery_and_late_events(store: Store) -> None:
    _flush(store, EARLY + EARLY[:100])  # duplicates inside one batch
    _flush(store, EARLY[300:600])  # a redelivered batch
    assert stored_compact(store) == compact_counts(EARLY, TZ)
    _flush(store, LATE)  # hours late: their buckets are recomputed at once
    expected = compact_counts(EARLY + LATE, TZ)
    assert stored_compact(store) == expected
    assert len({k[1] for k in expected if k[0] == "1d"}) == 2
    assert {k[2] for k in expected} == {"all", "branch", "campaign", "channel", "script_version", "credit_grade",
                                        "pre_notified", "first_time_borrower", "agent"}


def test_compact_versions_are_the_distinct_events_of_the_bucket(store: Store) -> None:
    _flush(store, EARLY[:400])
    _flush(store, EARLY[:400])
    _flush(store, EARLY[400:])
    expected = compact_counts(EARLY, TZ)
    for grain in ("1m", "1h", "1d"):
        versions = store.backend.query(f"SELECT toUInt32(bucket_start), max(version) FROM "
                                       f"{store.db}.rollup_compact_{grain} GROUP BY bucket_start").rows
        assert versions
        for start, version in versions:
            assert version == expected[(grain, int(start), "all", "", "")]["attempts"]


def test_rebuild_recomputes_the_compact_rollups(store: Store) -> None:
    _flush(store, EARLY + LATE)
    for grain in ("1m", "1h", "1d"):
        store.backend.execute(f"TRUNCATE TABLE {store.db}.rollup_compact_{grain}")
    since, until = datetime.fromtimestamp(T0, tz=UTC), datetime.fromtimestamp(T0 + 2 * 86400, tz=UTC)
    assert rollup.rebuild(store.backend, store.db, TZ, since, until, compact_only=True) >= 2
    assert stored_compact(store) == compact_counts(EARLY + LATE, TZ)
    for grain in ("1m", "1h", "1d"):
        store.backend.execute(f"TRUNCATE TABLE {store.db}.rollup_compact_{grain}")
    rollup.rebuild(store.backend, store.db, TZ, since, until)
    assert stored_compact(store) == compact_counts(EARLY + LATE, TZ)


# --- reads ------------------------------------------------------------------------------------

def _frame(start: int, end: int, step: int = 300, selected: Mapping[str, Sequence[str]] | None = None) -> FixedFrame:
    return FixedFrame(datetime.fromtimestamp(start, tz=UTC), datetime.fromtimestamp(end, tz=UTC), step,
                      dict(selected or {}))


def _ctx(store: Store, frame: Any) -> Context:
    return Context(db=store.db, frame=frame, tz=TZ)


def _widened(start: int, end: int) -> tuple[int, int]:
    return start // 60 * 60, end // 60 * 60 + 60


def _in(events: list[CallOutcome], lo: int, hi: int) -> list[CallOutcome]:
    return [e for e in dedupe(events) if lo <= e.occurred_at_ms // 1000 < hi]


def _local(e: CallOutcome) -> datetime:
    return datetime.fromtimestamp(e.occurred_at_ms // 1000, tz=ZoneInfo(TZ))


def _slots(events: list[CallOutcome], segment: str) -> dict[tuple[str, int, int], tuple[int, int, int]]:
    out: dict[tuple[str, int, int], list[int]] = {}
    for e in events:
        v = getattr(e, segment) if segment != "all" else "all"
        value = NONE if v is None else str(v).lower() if isinstance(v, bool) else str(v)
        c = out.setdefault((value, _local(e).isoweekday(), _local(e).hour), [0, 0, 0])
        c[0] += 1
        c[1] += e.outcome in CONNECTED
        c[2] += e.outcome == "hung_up"
    return {k: (a, b, h) for k, (a, b, h) in out.items()}


def _answers(store: Store, frame: Any) -> dict[str, Any]:
    """What the reads that use the compact rollups answer over `frame`."""
    ctx = _ctx(store, frame)

    def rows(name: str, **params: Any) -> list[tuple[Any, ...]]:
        return sorted(tuple(r) for r in run(store.backend, name, ctx, **params).rows)

    return {
        "slots_all": rows("best_time_slots", segment="all"),
        "slots_grade": rows("best_time_slots", segment="credit_grade"),
        "slots_first": rows("best_time_slots", segment="first_time_borrower"),
        "slots_campaign": rows("best_time_slots", segment="campaign"),
        "heatmap": rows("branch_hour_heatmap"),
        "grid": rows("best_time_grid"),
        "comparison_grade": rows("comparison", factor="credit_grade"),
        "comparison_notified": rows("comparison", factor="pre_notified"),
        "comparison_script": rows("comparison", factor="script_version"),
        "agents": rows("top_agents", limit=1000),
        "one_vs_rest": rows("compare_one_vs_rest", factor="first_time_borrower", rate="contact_rate"),
        "series": rows("rates_over_time"),
        "by_branch": rows("hangup_rate_by_branch"),
    }


def test_compact_reads_equal_a_recount_and_the_full_rollups(store: Store) -> None:
    _flush(store, WIDE + WIDE[:200])
    branches = sorted({e.branch for e in WIDE})
    for start, end in RANGES:
        lo, hi = _widened(start, end)
        events = _in(WIDE, lo, hi)
        for step in (300, 3600, 86400):
            compact = _answers(store, _frame(start, end, step))
            # every branch selected: the same answer through the full rollups (the filtered path)
            assert compact == _answers(store, _frame(start, end, step, {"branch": branches})), (start, end, step)
        ctx = _ctx(store, _frame(start, end))
        for segment in ("all", "credit_grade", "first_time_borrower", "campaign"):
            got = {(r["segment"], r["weekday"], r["hour"]): (r["attempts"], r["connected"], r["hung_up"])
                   for r in run(store.backend, "best_time_slots", ctx, segment=segment).dicts()}
            assert got == _slots(events, segment), (segment, start, end)
        agents = {(r["agent_id"], r["branch"]): r["attempts"]
                  for r in run(store.backend, "top_agents", ctx, limit=1000).dicts()}
        expected_agents: dict[tuple[str, str], dict[str, int]] = {}
        for e in events:
            if e.agent_id is not None:
                c = expected_agents.setdefault((e.agent_id, e.branch), {"attempts": 0, "connected": 0})
                c["attempts"] += 1
                c["connected"] += e.outcome in CONNECTED
        assert agents == {k: v["attempts"] for k, v in expected_agents.items() if v["connected"] >= ctx.min_connected}
        grades = {r["credit_grade"]: r["attempts"]
                  for r in run(store.backend, "comparison", ctx, factor="credit_grade").dicts()}
        assert grades == {k: v["attempts"] for k, v in totals(WIDE, lo, hi, "credit_grade").items()}
        heat = {r["branch"]: r["connected"] for r in run(store.backend, "branch_hour_heatmap", ctx).dicts()}
        assert heat == {k: v["connected"] for k, v in totals(WIDE, lo, hi, "branch").items()}


def test_a_filter_reads_the_full_rollups(store: Store) -> None:
    _flush(store, WIDE)
    start, end = RANGES[3]
    lo, hi = _widened(start, end)
    branch = WIDE[0].branch
    ctx = _ctx(store, _frame(start, end, 300, {"branch": [branch]}))
    got = {(r["segment"], r["weekday"], r["hour"]): (r["attempts"], r["connected"], r["hung_up"])
           for r in run(store.backend, "best_time_slots", ctx, segment="credit_grade").dicts()}
    assert got == _slots([e for e in _in(WIDE, lo, hi) if e.branch == branch], "credit_grade")
    grades = {r["credit_grade"]: r["attempts"]
              for r in run(store.backend, "comparison", ctx, factor="credit_grade").dicts()}
    assert grades == {k: v["attempts"] for k, v in totals(WIDE, lo, hi, "credit_grade",
                                                          where={"branch": {branch}}).items()}


@pytest.mark.parametrize("name,params", [("best_slots", {"segment": "credit_grade", "min_attempts": 1,
                                                          "min_connected": 1}),
                                         ("branch_hour_heatmap", {}), ("comparison", {"factor": "pre_notified"}),
                                         ("top_agents", {}), ("rates_over_time", {}),
                                         ("hangup_rate_by_branch", {})])
def test_panels_answer_as_the_fixed_frame_with_and_without_a_variable(store: Store, name: str,
                                                                      params: dict[str, Any]) -> None:
    _flush(store, WIDE)
    start, end = RANGES[3]
    branches = sorted({e.branch for e in WIDE})
    for interval, variables in ((3600, {}), (3600, {"branch": branches}), (300, {}), (86400, {"branch": branches})):
        sql = macro_helper.expand(render(name, _ctx(store, MacroFrame()), **params), start, end, interval,
                                  variables)
        assert not macro_helper.unexpanded(sql)
        fixed = render(name, _ctx(store, _frame(start, end, interval, variables)), **params)
        assert sorted(store.backend.query(sql).rows) == sorted(store.backend.query(fixed).rows), (interval, variables)
