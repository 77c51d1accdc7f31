"""Intervention impact and the best time to call (issue 16, docs/analytics.md): the catalogue's
counts (hangwatch.sinks.catalogue.remedies, from the rollups) judged by hangwatch.analytics.stats.
Used by `hangwatch query compare`, `hangwatch query best-times` and the report.

Two modes of comparison:
- groups: two sets of values of one factor (script versions, pre-notified or not, robot or
  human, credit-grade tiers...) over one range;
- rollout: the same calls before and after a rollout date (`days` on either side).
Each gives, per rate (hang-up, decline, contact), the counts, the difference b - a with its
interval and the two-proportion test's p-value, the units per group needed to detect the
change of `analytics.detect_relative_change`, and a Cochran-Mantel-Haenszel estimate
stratified by credit grade x campaign; the rollout mode also tests whether that mix shifted.

Calls of one borrower are not independent: every count is divided by the rate's design
effect (Kish: 1 + (m - 1) x ICC, m the size-weighted mean calls per borrower, ICC estimated
from the borrowers' calls in the range, borrower_calls), or by analytics.design_effect when set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Any, Final

from hangwatch.analytics import stats
from hangwatch.i18n import Words
from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import format_local
from hangwatch.sinks.backends.base import Backend
from hangwatch.sinks.catalogue import Context, FixedFrame, run
from hangwatch.sinks.catalogue.remedies import FACTORS, FILTERS, RATES, SEGMENTS

# A factor's two groups when the command names none: (reference a, judged b).
NATURAL_GROUPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pre_notified": (("false",), ("true",)),
    "channel": (("robot",), ("human",)),
    "first_time_borrower": (("false",), ("true",)),
}
_SECOND = timedelta(seconds=1)


class RemedyError(ValueError):
    """A comparison that cannot be made as asked (unknown factor, a group with no calls...)."""


@dataclasses.dataclass(frozen=True, slots=True)
class RateComparison:
    rate: str  # hangup_rate, decline_rate, contact_rate
    unit: str  # what n counts: connected or attempts
    result: stats.ProportionComparison
    needed_per_group: int | None  # units per group to detect analytics.detect_relative_change
    stratified: stats.StratifiedComparison


@dataclasses.dataclass(frozen=True, slots=True)
class Comparison:
    mode: str  # "groups" or "rollout"
    factor: str  # the factor of the groups; "period" for a rollout
    a: tuple[str, ...]  # the reference group's values (rollout: "before")
    b: tuple[str, ...]
    a_range: tuple[datetime, datetime]  # [start, end) of each group's calls
    b_range: tuple[datetime, datetime]
    filters: dict[str, tuple[str, ...]]
    rates: list[RateComparison]
    design_effects: dict[str, float]  # per rate
    design_effect_source: str  # "estimated" (borrower_calls) or "setting"
    strata: tuple[str, ...]  # what the stratified estimate is stratified by
    mix: stats.MixShift | None  # rollout: did the credit grade x campaign mix shift
    detect_relative_change: float
    confidence: float
    power: float

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _frame(start: datetime, end: datetime, filters: Mapping[str, Sequence[str]]) -> FixedFrame:
    # The rollups read whole minutes up to and including the end's minute: an end one second
    # before a boundary keeps the boundary's minute out (the next range starts there).
    return FixedFrame(start, end - _SECOND, 3600, {k: list(v) for k, v in filters.items()})


def _check_filters(filters: Mapping[str, Sequence[str]]) -> None:
    unknown = sorted(set(filters) - set(FILTERS))
    if unknown:
        raise RemedyError(f"cannot filter on {', '.join(unknown)}; filters: {', '.join(FILTERS)}")


def design_effects(backend: Backend, settings: Settings, db: str, start: datetime, end: datetime,
                   filters: Mapping[str, Sequence[str]], factor: str = "all",
                   groups: Iterable[str] = ()) -> tuple[dict[str, float], str]:
    """The design effect of each rate over [start, end): the setting, or estimated from the
    borrowers' calls (borrower_calls) of the filtered groups."""
    fixed = settings.analytics.design_effect
    if fixed is not None:
        return dict.fromkeys(RATES, float(fixed)), "setting"
    ctx = Context.of(settings, _frame(start, end, filters), db)
    chosen = ",".join(groups)
    # Above analytics.design_effect_sample_calls calls, a hash sample of the borrowers with
    # about as many (docs/analytics.md): counted here, so that the estimate's query holds k as
    # a constant its primary key can prune on.
    sample = settings.analytics.design_effect_sample_calls
    calls = int(run(backend, "borrower_calls_in_scope", ctx, factor=factor, groups=chosen).scalar() or 0)
    one_in = max(1, calls // sample) if sample > 0 else 1
    row = run(backend, "borrower_clustering", ctx, factor=factor, groups=chosen, one_in=one_in).dicts()
    out = {}
    for rate in RATES:
        p = rate.removesuffix("_rate")
        r = row[0] if row else {}
        sums = stats.ClusterSums(int(r.get(f"{p}_borrowers") or 0), int(r.get(f"{p}_units") or 0),
                                 int(r.get(f"{p}_successes") or 0), float(r.get(f"{p}_between") or 0.0),
                                 int(r.get(f"{p}_m2") or 0))
        out[rate] = stats.estimated_design_effect(sums)
    return out, "estimated"


Counts = dict[str, int]
# (stratum) -> counts
StrataCounts = dict[tuple[str, ...], Counts]


def _add(into: Counts, row: Mapping[str, Any]) -> None:
    for c in ("attempts", "connected", "hung_up", "declined"):
        into[c] = into.get(c, 0) + int(row[c] or 0)


def _rates(a: StrataCounts, b: StrataCounts, deffs: Mapping[str, float], settings: Settings) -> list[RateComparison]:
    an = settings.analytics
    out = []
    for rate, (k, n) in RATES.items():
        ka, na = (sum(c.get(x, 0) for c in a.values()) for x in (k, n))
        kb, nb = (sum(c.get(x, 0) for c in b.values()) for x in (k, n))
        deff = deffs[rate]
        result = stats.compare_proportions(ka, na, kb, nb, confidence=an.confidence, design_effect=deff)
        needed = None
        if result.rate_a is not None and 0.0 < result.rate_a < 1.0:
            try:
                needed = stats.sample_size_per_group(result.rate_a, relative_change=-an.detect_relative_change,
                                                     alpha=1.0 - an.confidence, power=an.power, design_effect=deff)
            except ValueError:
                needed = None
        strata = [stats.Stratum(" × ".join(key), a.get(key, {}).get(k, 0), a.get(key, {}).get(n, 0),
                                b.get(key, {}).get(k, 0), b.get(key, {}).get(n, 0)) for key in sorted(set(a) | set(b))]
        out.append(RateComparison(rate, n, result, needed,
                                  stats.cmh(strata, confidence=an.confidence, design_effect=deff)))
    return out


def compare_groups(backend: Backend, settings: Settings, db: str, factor: str, a: Sequence[str], b: Sequence[str],
                   start: datetime, end: datetime, filters: Mapping[str, Sequence[str]] | None = None) -> Comparison:
    """Group a (values `a` of `factor`) against group b over [start, end)."""
    filters = dict(filters or {})
    _check_filters(filters)
    if factor not in FACTORS:
        raise RemedyError(f"cannot compare by {factor!r}; factors: {', '.join(FACTORS)}")
    if not a or not b or set(a) & set(b):
        raise RemedyError("give two groups of values with none in both")
    ctx = Context.of(settings, _frame(start, end, filters), db)
    rows = run(backend, "compare_counts", ctx, factor=factor).dicts()
    strata = tuple(s for s in ("credit_grade", "campaign") if s != factor)
    seen = sorted({str(r["grp"]) for r in rows})
    groups: tuple[StrataCounts, StrataCounts] = ({}, {})
    for r in rows:
        side = 0 if r["grp"] in a else 1 if r["grp"] in b else None
        if side is not None:
            _add(groups[side].setdefault(tuple(str(r[s]) for s in strata), {}), r)
    for values, counts in ((a, groups[0]), (b, groups[1])):
        if not counts:
            raise RemedyError(f"no calls with {factor} in {', '.join(values)} in the range; values with calls: "
                              f"{', '.join(seen) or 'none'}")
    deffs, source = design_effects(backend, settings, db, start, end, filters, factor, (*a, *b))
    an = settings.analytics
    return Comparison("groups", factor, tuple(a), tuple(b), (start, end), (start, end),
                      {k: tuple(v) for k, v in filters.items()}, _rates(groups[0], groups[1], deffs, settings),
                      deffs, source, strata, None, an.detect_relative_change, an.confidence, an.power)


def compare_rollout(backend: Backend, settings: Settings, db: str, rollout: datetime, days: int, now: datetime,
                    filters: Mapping[str, Sequence[str]] | None = None) -> Comparison:
    """The calls of the `days` before `rollout` against those of the `days` after (up to now)."""
    filters = dict(filters or {})
    _check_filters(filters)
    before = (rollout - timedelta(days=days), rollout)
    after = (rollout, min(rollout + timedelta(days=days), now))
    if after[1] <= after[0]:
        raise RemedyError("the rollout is in the future: there are no calls after it yet")
    periods: list[StrataCounts] = []
    for start, end in (before, after):
        ctx = Context.of(settings, _frame(start, end, filters), db)
        counts: StrataCounts = {}
        for r in run(backend, "compare_counts", ctx, factor="credit_grade").dicts():
            _add(counts.setdefault((str(r["grp"]), str(r["campaign"])), {}), r)
        periods.append(counts)
    for name, counts in zip(("before", "after"), periods, strict=True):
        if not counts:
            raise RemedyError(f"no calls {name} the rollout in the range")
    deffs, source = design_effects(backend, settings, db, before[0], after[1], filters)
    an = settings.analytics
    mix = stats.mix_shift({" × ".join(k): c["attempts"] for k, c in periods[0].items()},
                          {" × ".join(k): c["attempts"] for k, c in periods[1].items()},
                          alpha=an.mix_shift_alpha, min_share_change=an.mix_shift_min_share_change)
    return Comparison("rollout", "period", ("before",), ("after",), before, after,
                      {k: tuple(v) for k, v in filters.items()}, _rates(periods[0], periods[1], deffs, settings),
                      deffs, source, ("credit_grade", "campaign"), mix, an.detect_relative_change, an.confidence,
                      an.power)


@dataclasses.dataclass(frozen=True, slots=True)
class SegmentBestTimes:
    segment: str  # the segment's dimension (all, credit_grade, ...)
    value: str  # its value
    best: stats.BestTimes


def best_times(backend: Backend, settings: Settings, db: str, segment: str, start: datetime, end: datetime,
               filters: Mapping[str, Sequence[str]] | None = None) -> list[SegmentBestTimes]:
    """Contact and hang-up rate per local weekday x hour for each value of the segment, with
    the recommended slots (analytics.best_time_*: the minimum sample and how many)."""
    filters = dict(filters or {})
    _check_filters(filters)
    if segment not in SEGMENTS:
        raise RemedyError(f"no segment {segment!r}; segments: {', '.join(SEGMENTS)}")
    ctx = Context.of(settings, _frame(start, end, filters), db)
    cells: dict[str, list[stats.SlotCounts]] = {}
    for r in run(backend, "best_time_slots", ctx, segment=segment).dicts():
        cells.setdefault(str(r["segment"]), []).append(stats.SlotCounts(
            int(r["weekday"]) - 1, int(r["hour"]), int(r["attempts"]), int(r["connected"]), int(r["hung_up"])))
    an = settings.analytics
    return [SegmentBestTimes(segment, value, stats.best_times(
        c, min_attempts=an.best_time_min_attempts, min_connected=an.best_time_min_connected, top=an.best_time_top,
        confidence=an.confidence)) for value, c in sorted(cells.items())]


def p_text(v: float) -> str:
    return "<0.001" if v < 0.001 else f"{v:.3f}"


def slot_label(w: Words, weekday: int, hour: int) -> str:
    """A slot in the reader's language: 周二 10:00–11:00 / Tue 10:00–11:00 (weekday 0 = Monday)."""
    return w.text("remedies.slot", weekday=w.text(f"remedies.weekday.{weekday}"), start=f"{hour:02d}:00",
                  end=f"{(hour + 1) % 24:02d}:00")


def pct(v: float | None, signed: bool = False) -> str:
    """A rate as a percentage, or a difference in signed percentage points; – for none."""
    if v is None:
        return "–"
    return f"{v * 100:+.1f}" if signed else f"{v:.1%}"


MAIN_COLUMNS: Final = ("rate", "a", "b", "difference", "ci", "p", "needed", "deff")
STRATIFIED_COLUMNS: Final = ("rate", "strata_used", "pooled_difference", "pooled_ci", "odds_ratio", "pooled_p")


@dataclasses.dataclass(frozen=True, slots=True)
class ComparisonView:
    """A comparison in words and formatted numbers (the CLI's tables and the report's section)."""

    title: str
    a: str
    b: str
    headers: dict[str, str]
    rows: list[dict[str, str]]  # per rate, every column of MAIN_COLUMNS and STRATIFIED_COLUMNS
    stratified_title: str
    notes: list[str]


def view(w: Words, c: Comparison, tz: tzinfo) -> ComparisonView:
    a, b = ", ".join(c.a), ", ".join(c.b)
    if c.mode == "rollout":
        a = w.text("remedies.before", start=format_local(c.a_range[0], tz), end=format_local(c.a_range[1], tz))
        b = w.text("remedies.after", start=format_local(c.b_range[0], tz), end=format_local(c.b_range[1], tz))
        title = w.text("remedies.title.rollout", at=format_local(c.b_range[0], tz))
    else:
        title = w.text("remedies.title.groups", factor=w.name("dimension", c.factor),
                       start=format_local(c.a_range[0], tz), end=format_local(c.a_range[1], tz))
    level = f"{c.confidence:.0%}"
    headers = {"rate": w.text("remedies.col.rate"), "a": w.text("remedies.col.group", group="a"),
               "b": w.text("remedies.col.group", group="b"), "difference": w.text("remedies.col.difference"),
               "ci": w.text("remedies.col.ci", level=level), "p": w.text("remedies.col.p"),
               "needed": w.text("remedies.col.needed"), "deff": w.text("remedies.col.deff"),
               "strata_used": w.text("remedies.col.strata"),
               "pooled_difference": w.text("remedies.col.risk_difference"),
               "pooled_ci": w.text("remedies.col.ci", level=level), "odds_ratio": w.text("remedies.col.odds_ratio"),
               "pooled_p": w.text("remedies.col.p")}
    rows = []
    for r in c.rates:
        x, s = r.result, r.stratified
        rows.append({
            "rate": w.term(r.rate), "a": f"{pct(x.rate_a)} ({x.successes_a:,}/{x.n_a:,})",
            "b": f"{pct(x.rate_b)} ({x.successes_b:,}/{x.n_b:,})", "difference": pct(x.difference, signed=True),
            "ci": f"{pct(x.ci_low, True)} … {pct(x.ci_high, True)}", "p": p_text(x.p_value),
            "needed": "–" if r.needed_per_group is None else f"{r.needed_per_group:,} {w.term(r.unit)}",
            "deff": f"{c.design_effects[r.rate]:.2f}", "strata_used": str(s.strata_used),
            "pooled_difference": pct(s.risk_difference, signed=True),
            "pooled_ci": f"{pct(s.rd_ci_low, True)} … {pct(s.rd_ci_high, True)}",
            "odds_ratio": "–" if s.odds_ratio is None else
            f"{s.odds_ratio:.2f} ({s.or_ci_low or 0:.2f} … {s.or_ci_high or 0:.2f})",
            "pooled_p": p_text(s.p_value)})
    notes = [w.text("remedies.note.units", change=f"{c.detect_relative_change:.0%}", alpha=f"{1 - c.confidence:.2g}",
                    power=f"{c.power:.0%}"),
             w.text(f"remedies.note.deff.{c.design_effect_source}",
                    values=", ".join(f"{w.term(k)} {v:.2f}" for k, v in c.design_effects.items()))]
    if c.mix is not None:
        key = "remedies.mix.shifted" if c.mix.shifted else "remedies.mix.stable"
        stratum, moved = c.mix.largest_change
        notes.append(w.text(key, p=p_text(c.mix.p_value), stratum=stratum or "–", change=f"{moved * 100:+.1f}"))
    return ComparisonView(title, a, b, headers, rows, w.text(
        "remedies.title.cmh", strata=" × ".join(w.name("dimension", s) for s in c.strata)), notes)


def best_slots_text(w: Words, best: stats.BestTimes) -> str:
    """The recommended slots in a line, or why there are none."""
    if not best.recommended:
        return w.text("remedies.no_slot", attempts=best.min_attempts, connected=best.min_connected)
    return w.text("list.separator").join(slot_label(w, s.weekday, s.hour) for s in best.recommended)


def borrower_segments(backend: Backend, settings: Settings, db: str,
                      borrowers: Iterable[str]) -> dict[str, dict[str, str]]:
    """Borrower -> their segment values (credit_grade, first_time_borrower, campaign, channel) as
    of their latest call (borrower_segments, from borrower_calls)."""
    chosen = sorted(set(borrowers))
    if not chosen:
        return {}
    ctx = Context.of(settings, FixedFrame(), db)
    rows = run(backend, "borrower_segments", ctx, borrowers=",".join(chosen), limit=len(chosen)).dicts()
    return {str(r["borrower_id"]): {k.removeprefix("last_"): str(v) for k, v in r.items() if k.startswith("last_")}
            for r in rows}


def best_slot_by_borrower(w: Words, segments: Mapping[str, Mapping[str, str]], best: Sequence[SegmentBestTimes],
                          flags: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Flagged borrower -> the best slots of their credit grade (best_times per credit_grade), in
    w's language, for open flags: what to put beside the flag's suggested next action."""
    by_grade = {b.value: b.best for b in best if b.segment == "credit_grade"}
    out = {}
    for f in flags:
        borrower = str(f.get("borrower_id"))
        grade = segments.get(borrower, {}).get("credit_grade")
        if f.get("status") == "resolved" or grade is None or grade not in by_grade:
            continue
        out[borrower] = w.text("report.flag_best_slot", grade=w.name("credit_grade", grade),
                               slots=best_slots_text(w, by_grade[grade]))
    return out
