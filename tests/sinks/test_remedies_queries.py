"""The remedies' catalogue queries (sinks.catalogue.remedies) and their judgement
(hangwatch.report.remedies) against a plain recount of the distinct events and
hangwatch.analytics.stats, on the 18.16 server and on chdb. The events are stored through the
sink's Flusher, so the rollups and borrower_calls are the sink's own."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from hangwatch.analytics import stats
from hangwatch.platform.settings import load_settings
from hangwatch.report import remedies
from hangwatch.schemas.call_outcome import CallOutcome
from hangwatch.sinks.catalogue import Context, FixedFrame, run
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import BASE_MS, event_records, make_events
from testkit.oracles.rates import CONNECTED, NONE, dedupe
from testkit.sinks import Store, batch_of, router_for

TZ = "Asia/Shanghai"
EVENTS = make_events(1500, seed=41, start_ms=BASE_MS, span_s=2 * 86400)
# A range with minute, hour and day pieces: 05:07 UTC on the first day to 16:33 UTC on the second.
START = datetime.fromtimestamp(BASE_MS // 1000, tz=UTC) + timedelta(hours=5, minutes=7)
END = START + timedelta(hours=35, minutes=26)


def _flush(store: Store, events: list[CallOutcome]) -> None:
    batch = batch_of(router_for(store), {"call_events": event_records(events)}, int(time.time()))
    Flusher(store.backend, store.db, "sink@test", TZ).flush(batch)


def _value(e: CallOutcome, column: str) -> str:
    v = getattr(e, column)
    return NONE if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def _in_range(start: datetime = START, end: datetime = END) -> list[CallOutcome]:
    return [e for e in dedupe(EVENTS) if start.timestamp() <= e.occurred_at_ms / 1000 < end.timestamp()]


def _counts(events: list[CallOutcome]) -> dict[str, int]:
    return {"attempts": len(events), "connected": sum(e.outcome in CONNECTED for e in events),
            "hung_up": sum(e.outcome == "hung_up" for e in events),
            "declined": sum(e.outcome == "declined" for e in events)}


def _group(events: list[CallOutcome], key: Callable[[CallOutcome], Any]) -> dict[Any, list[CallOutcome]]:
    out: dict[Any, list[CallOutcome]] = defaultdict(list)
    for e in events:
        out[key(e)].append(e)
    return out


def _ctx(store: Store, start: datetime = START, end: datetime = END, **selected: list[str]) -> Context:
    # The rollups count whole minutes up to the end's minute: [START, END) is START .. END - 1 s.
    return Context(db=store.db, frame=FixedFrame(start, end - timedelta(seconds=1), 3600, selected), tz=TZ)


@pytest.fixture
def stored(store: Store) -> Store:
    _flush(store, EVENTS + EVENTS[:40])  # duplicates count once
    return store


def test_compare_counts_equal_a_recount(stored: Store) -> None:
    for factor in ("script_version", "credit_grade", "pre_notified"):
        rows = run(stored.backend, "compare_counts", _ctx(stored), factor=factor).dicts()
        strata = [s for s in ("credit_grade", "campaign") if s != factor]
        got = {(r["grp"], *(r[s] for s in strata)): {c: r[c] for c in ("attempts", "connected", "hung_up", "declined")}
               for r in rows}
        expected = {k: _counts(v) for k, v in _group(
            _in_range(), lambda e: (_value(e, factor), *(_value(e, s) for s in strata))).items()}  # noqa: B023
        assert got == expected, factor


def test_compare_counts_take_the_filters(stored: Store) -> None:
    rows = run(stored.backend, "compare_counts", _ctx(stored, branch=["sh-pudong"], channel=["robot"]),
               factor="channel").dicts()
    chosen = [e for e in _in_range() if e.branch == "sh-pudong" and e.channel == "robot"]
    assert sum(r["attempts"] for r in rows) == len(chosen) > 0
    assert {r["grp"] for r in rows} == {"robot"}


def test_best_time_slots_equal_a_recount_in_local_time(stored: Store) -> None:
    zone = ZoneInfo(TZ)
    for segment in ("credit_grade", "campaign", "all"):
        rows = run(stored.backend, "best_time_slots", _ctx(stored), segment=segment).dicts()
        got = {(r["segment"], r["weekday"], r["hour"]): (r["attempts"], r["connected"], r["hung_up"]) for r in rows}

        def slot(e: CallOutcome, seg: str = segment) -> tuple[str, int, int]:
            local = datetime.fromtimestamp(e.occurred_at_ms / 1000, tz=zone)
            return ("all" if seg == "all" else _value(e, seg)), local.isoweekday(), local.hour

        expected = {k: tuple(_counts(v)[c] for c in ("attempts", "connected", "hung_up"))
                    for k, v in _group(_in_range(), slot).items()}
        assert got == expected, segment


def _clusters(events: list[CallOutcome]) -> dict[str, stats.ClusterSums]:
    per: dict[str, dict[str, int]] = {b: _counts(v) for b, v in _group(events, lambda e: e.borrower_id).items()}
    out = {}
    for rate, (k, n) in {"hangup": ("hung_up", "connected"), "decline": ("declined", "attempts"),
                         "contact": ("connected", "attempts")}.items():
        cl = [(c[k], c[n]) for c in per.values() if c[n] > 0]
        out[rate] = stats.ClusterSums(len(cl), sum(m for _, m in cl), sum(x for x, _ in cl),
                                      sum(x * x / m for x, m in cl), sum(m * m for _, m in cl))
    return out


def test_borrower_clustering_equals_per_borrower_sums(stored: Store) -> None:
    row = run(stored.backend, "borrower_clustering", _ctx(stored), factor="script_version", groups="v1,v2").dicts()[0]
    expected = _clusters([e for e in _in_range() if e.script_version in ("v1", "v2")])
    for rate, s in expected.items():
        assert (row[f"{rate}_borrowers"], row[f"{rate}_units"], row[f"{rate}_successes"], row[f"{rate}_m2"]) == (
            s.g, s.n, s.y, s.m2)
        assert row[f"{rate}_between"] == pytest.approx(s.between)
        icc = stats.icc_anova([(c[0], c[1]) for c in _per_borrower(rate)])
        assert stats.icc_from_sums(s) == pytest.approx(icc)


def test_borrower_clustering_samples_a_hash_range_of_borrowers_above_sample_calls(stored: Store) -> None:
    """Above `sample_calls` calls the sums are those of the borrowers in the lowest 1/k of the
    hash range (k = stored calls // sample_calls), which borrower_calls' primary key reads
    alone (0018)."""
    start = END - timedelta(days=90)
    end_s = int(END.timestamp())
    stored_calls = stored.backend.query(
        f"SELECT count() FROM {stored.db}.borrower_calls WHERE occurred_at < toDateTime({end_s})").scalar()
    assert stored_calls >= len(_in_range(start))  # copies of an event count until merged
    row = run(stored.backend, "borrower_clustering", _ctx(stored, start), sample_calls=300).dicts()[0]
    bound = (2**64 - 1) // (stored_calls // 300)
    # The sampled borrowers as call_events names them (another table, same hash function).
    sampled = {r[0] for r in stored.backend.query(
        f"SELECT DISTINCT borrower_id FROM {stored.db}.call_events WHERE cityHash64(borrower_id) <= {bound}").rows}
    everyone = {e.borrower_id for e in _in_range(start)}
    assert 0 < len(sampled & everyone) < len(everyone) / 3
    expected = _clusters([e for e in _in_range(start) if e.borrower_id in sampled])
    for rate, s in expected.items():
        assert (row[f"{rate}_borrowers"], row[f"{rate}_units"], row[f"{rate}_successes"], row[f"{rate}_m2"]) == (
            s.g, s.n, s.y, s.m2)
        assert row[f"{rate}_between"] == pytest.approx(s.between)
    # The report counts first (borrower_calls_in_scope) and passes k: the same sums.
    in_scope = run(stored.backend, "borrower_calls_in_scope", _ctx(stored, start)).scalar()
    assert in_scope == stored_calls
    assert run(stored.backend, "borrower_clustering", _ctx(stored, start), one_in=in_scope // 300).dicts()[0] == row
    # At or below sample_calls (and with 0), every borrower.
    for every in (0, stored_calls):
        whole = run(stored.backend, "borrower_clustering", _ctx(stored, start), sample_calls=every).dicts()[0]
        assert whole["contact_borrowers"] == len(everyone)


def test_borrower_segments_of_chosen_borrowers_are_those_of_their_latest_call(stored: Store) -> None:
    chosen = sorted({e.borrower_id for e in _in_range()})[:5]
    rows = run(stored.backend, "borrower_segments", _ctx(stored), borrowers=",".join(chosen), limit=10).dicts()
    latest = {b: max((e for e in _in_range() if e.borrower_id == b), key=lambda e: e.occurred_at_ms) for b in chosen}
    assert [r["borrower_id"] for r in rows] == chosen
    for r in rows:
        e = latest[r["borrower_id"]]
        assert (r["last_campaign"], r["last_channel"], r["last_credit_grade"]) == (
            _value(e, "campaign"), _value(e, "channel"), _value(e, "credit_grade"))


def _per_borrower(rate: str) -> list[tuple[int, int]]:
    k, n = {"hangup": ("hung_up", "connected"), "decline": ("declined", "attempts"),
            "contact": ("connected", "attempts")}[rate]
    chosen = [e for e in _in_range() if e.script_version in ("v1", "v2")]
    return [(_counts(v)[k], _counts(v)[n]) for v in _group(chosen, lambda e: e.borrower_id).values()]


def test_one_vs_rest_panel_equals_stats(stored: Store) -> None:
    deff = 1.3
    rows = run(stored.backend, "compare_one_vs_rest", _ctx(stored), factor="credit_grade", rate="hangup_rate",
               confidence="0.9", design_effect=str(deff)).dicts()
    by = {g: _counts(v) for g, v in _group(_in_range(), lambda e: _value(e, "credit_grade")).items()}
    total = {c: sum(v[c] for v in by.values()) for c in ("hung_up", "connected")}
    assert [r["grp"] for r in rows] == sorted(by)
    for r in rows:
        mine = by[r["grp"]]
        ref = stats.compare_proportions(total["hung_up"] - mine["hung_up"], total["connected"] - mine["connected"],
                                        mine["hung_up"], mine["connected"], confidence=0.9, design_effect=deff)
        assert (r["n_value"], r["n_rest"]) == (ref.n_b, ref.n_a)
        assert (r["rate_value"], r["rate_rest"], r["difference"]) == pytest.approx((ref.rate_b, ref.rate_a,
                                                                                    ref.difference))
        assert (r["ci_low"], r["ci_high"]) == pytest.approx((ref.ci_low, ref.ci_high), abs=1e-9)
        assert r["p_value"] == pytest.approx(ref.p_value, rel=1e-6, abs=1e-12)


def _slot_cells(segment: str) -> dict[str, list[stats.SlotCounts]]:
    zone = ZoneInfo(TZ)
    out: dict[str, list[stats.SlotCounts]] = defaultdict(list)
    for e in _in_range():
        local = datetime.fromtimestamp(e.occurred_at_ms / 1000, tz=zone)
        out[_value(e, segment)].append(stats.SlotCounts(local.weekday(), local.hour, 1, int(e.outcome in CONNECTED),
                                                        int(e.outcome == "hung_up")))
    return out


def test_best_slots_panel_equals_stats(stored: Store) -> None:
    rows = run(stored.backend, "best_slots", _ctx(stored), segment="campaign", min_attempts=12, min_connected=4,
               top=2, confidence="0.95").dicts()
    expected = []
    for value, cells in sorted(_slot_cells("campaign").items()):
        best = stats.best_times(cells, min_attempts=12, min_connected=4, top=2)
        expected += [(value, s.weekday + 1, s.hour, s.attempts) for s in best.recommended]
        assert [r["reach_low"] for r in rows if r["segment"] == value] == pytest.approx(
            [s.reach_low for s in best.recommended])
    assert [(r["segment"], r["weekday"], r["hour"], r["attempts"]) for r in rows] == expected
    assert expected


def test_best_time_grid_hides_slots_below_the_minimum(stored: Store) -> None:
    zone = ZoneInfo(TZ)
    slots = _group(_in_range(), lambda e: (datetime.fromtimestamp(e.occurred_at_ms / 1000, tz=zone).isoweekday(),
                                           datetime.fromtimestamp(e.occurred_at_ms / 1000, tz=zone).hour))
    minimum = sorted(len(v) for v in slots.values())[len(slots) // 2]  # about half the slots pass
    rows = {r["weekday"]: r for r in run(stored.backend, "best_time_grid", _ctx(stored), rate="contact_rate",
                                         min_attempts=minimum).dicts()}
    shown = hidden = 0
    for (wd, hour), evs in slots.items():
        c = _counts(evs)
        cell = rows[wd][f"{hour:02d}"]
        if c["attempts"] >= minimum:
            assert cell == pytest.approx(c["connected"] / c["attempts"])
            shown += 1
        else:
            assert cell is None
            hidden += 1
    assert shown and hidden


def test_compare_groups_judges_the_recount(stored: Store) -> None:
    s = load_settings().model_copy(update={"timezone": TZ})
    c = remedies.compare_groups(stored.backend, s, stored.db, "credit_grade", ("AAA", "AA"), ("B", "C"), START, END)
    events = _in_range()
    a = [e for e in events if e.credit_grade in ("AAA", "AA")]
    b = [e for e in events if e.credit_grade in ("B", "C")]
    deffs = {f"{k}_rate": stats.estimated_design_effect(v) for k, v in _clusters(a + b).items()}
    assert c.design_effects == pytest.approx(deffs) and c.design_effect_source == "estimated"
    assert c.strata == ("campaign",)
    for r in c.rates:
        k, n = remedies.RATES[r.rate]
        ref = stats.compare_proportions(_counts(a)[k], _counts(a)[n], _counts(b)[k], _counts(b)[n],
                                        design_effect=deffs[r.rate])
        assert r.result == ref
        strata = [stats.Stratum(camp, _counts(x)[k], _counts(x)[n], _counts(y)[k], _counts(y)[n])
                  for camp in sorted({e.campaign for e in a + b})
                  for x, y in [([e for e in a if e.campaign == camp], [e for e in b if e.campaign == camp])]]
        assert r.stratified == stats.cmh(strata, design_effect=deffs[r.rate])
        assert r.needed_per_group == stats.sample_size_per_group(
            ref.rate_a or 0.5, relative_change=-0.2, design_effect=deffs[r.rate])


def test_compare_rollout_with_mix_shift(stored: Store) -> None:
    s = load_settings().model_copy(update={"timezone": TZ})
    s.analytics.design_effect = 1.0
    rollout = START + timedelta(hours=17)
    c = remedies.compare_rollout(stored.backend, s, stored.db, rollout, 1, now=END)
    before, after = _in_range(rollout - timedelta(days=1), rollout), _in_range(rollout, END)
    assert c.a_range == (rollout - timedelta(days=1), rollout) and c.b_range == (rollout, END)
    assert c.design_effects == dict.fromkeys(remedies.RATES, 1.0) and c.design_effect_source == "setting"
    h = c.rates[0].result
    cb, ca = _counts(before), _counts(after)
    assert (h.successes_a, h.n_a, h.successes_b, h.n_b) == (cb["hung_up"], cb["connected"], ca["hung_up"],
                                                            ca["connected"])

    def mix(evs: list[CallOutcome]) -> dict[str, int]:
        return {f"{g[0]} × {g[1]}": len(v) for g, v in _group(
            evs, lambda e: (_value(e, "credit_grade"), e.campaign)).items()}

    assert c.mix == stats.mix_shift(mix(before), mix(after), alpha=0.01, min_share_change=0.02)


def test_best_times_per_segment(stored: Store) -> None:
    s = load_settings().model_copy(update={"timezone": TZ})
    s.analytics.best_time_min_attempts, s.analytics.best_time_min_connected = 10, 3
    got = remedies.best_times(stored.backend, s, stored.db, "first_time_borrower", START, END)
    cells = _slot_cells("first_time_borrower")
    assert [g.value for g in got] == sorted(cells)
    for g in got:
        assert g.best == stats.best_times(cells[g.value], min_attempts=10, min_connected=3, top=3)
        assert g.best.recommended


def test_unknown_groups_say_which_values_exist(stored: Store) -> None:
    s = load_settings()
    with pytest.raises(remedies.RemedyError, match=r"values with calls: .*v1"):
        remedies.compare_groups(stored.backend, s, stored.db, "script_version", ("v9",), ("v1",), START, END)
