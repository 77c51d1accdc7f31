"""Run the catalogue's queries (the panels' own) for a period and collect what the report shows."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

from hangwatch.platform.settings import Settings
from hangwatch.report import remedies
from hangwatch.sinks.backends.base import Backend, Result
from hangwatch.sinks.catalogue import Context, FixedFrame, run, step_for
from hangwatch.sinks.catalogue.events import COMPARISONS
from hangwatch.streams.core.rules_config import RulesConfigError, RuleSet, load_rules


@dataclasses.dataclass
class Table:
    columns: list[str]
    rows: list[dict[str, Any]]

    @classmethod
    def of(cls, r: Result) -> Table:
        return cls(list(r.columns), r.dicts())


@dataclasses.dataclass
class ReportData:
    start: datetime
    end: datetime
    interval_s: int
    tz: str  # the zone the report speaks (times, hours of day)
    min_connected: int  # the sample an agent needs to be ranked (alerts.min_connected)
    summary: dict[str, Any]
    open_flags: int
    active_alerts: int
    rates_over_time: Table
    branches: Table
    agents: Table
    comparisons: dict[str, Table]
    stages: Table
    heatmap: Table
    flags: Table
    alerts: Table
    # The previous period of the same length, for the comparison.
    previous_start: datetime | None = None
    current: dict[str, Any] = dataclasses.field(default_factory=dict)  # period_summary
    previous: dict[str, Any] = dataclasses.field(default_factory=dict)
    flag_trend: Table = dataclasses.field(default_factory=lambda: Table([], []))
    flags_raised: int = 0
    previous_flags_raised: int = 0
    alert_window_s: int = 300
    rules: RuleSet | None = None  # explanations and the rules' version (fingerprint, with the zone)
    # Intervention impact (docs/analytics.md): pre-notified vs not, robot vs human, the two
    # script versions with most calls; and the best time to call per credit grade over
    # best_times_start .. end (at least analytics.best_time_days: one day holds too few calls).
    impact: list[remedies.Comparison] = dataclasses.field(default_factory=list)
    best_times: list[remedies.SegmentBestTimes] = dataclasses.field(default_factory=list)
    best_times_start: datetime | None = None
    # Flagged borrower -> their segment values as of their latest call (borrower_segments).
    flag_segments: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)


def collect(backend: Backend, settings: Settings, database: str, start: datetime, end: datetime) -> ReportData:
    # No dashboard variable selected: every filter is All, as on a fresh dashboard.
    ctx = Context.of(settings, FixedFrame(start, end, step_for(start, end)), database)

    def table(name: str, **params: Any) -> Table:
        return Table.of(run(backend, name, ctx, **params))

    summary = run(backend, "live_summary", ctx).dicts()
    previous_start = start - (end - start)
    prev = Context.of(settings, FixedFrame(previous_start, start, step_for(previous_start, start)), database)
    current, previous = (run(backend, "period_summary", c).dicts() for c in (ctx, prev))
    trend = table("flag_trend")
    try:
        rules: RuleSet | None = load_rules(settings.worker.rules_file, settings.timezone)
    except RulesConfigError:
        rules = None  # explanations fall back to the stored sentences
    comparisons = {factor: table("comparison", factor=factor) for factor in COMPARISONS}
    flags = table("flag_review_list", limit=50)
    best_start = min(start, end - timedelta(days=settings.analytics.best_time_days))
    return ReportData(
        start=start, end=end, interval_s=step_for(start, end), tz=ctx.tz, min_connected=ctx.min_connected,
        summary=summary[0] if summary else {},
        open_flags=int(run(backend, "open_flag_count", ctx).scalar() or 0),
        active_alerts=int(run(backend, "firing_alert_count", ctx).scalar() or 0),
        rates_over_time=table("rates_over_time"),
        branches=table("branch_rates"),
        agents=table("top_agents"),
        comparisons=comparisons,
        stages=table("hangup_stage_breakdown"),
        heatmap=table("branch_hour_heatmap"),
        flags=flags,
        alerts=table("firing_alerts_in_range"),
        previous_start=previous_start, current=current[0] if current else {},
        previous=previous[0] if previous else {}, flag_trend=trend,
        flags_raised=sum(int(r["raised"]) for r in trend.rows),
        previous_flags_raised=sum(int(r["raised"]) for r in run(backend, "flag_trend", prev).dicts()),
        alert_window_s=settings.alerts.window_size_s, rules=rules,
        impact=impact_comparisons(backend, settings, database, start, end, comparisons["script_version"]),
        best_times=remedies.best_times(backend, settings, database, "credit_grade", best_start, end),
        best_times_start=best_start,
        flag_segments=remedies.borrower_segments(backend, settings, database,
                                                 (str(r["borrower_id"]) for r in flags.rows)),
    )


def impact_comparisons(backend: Backend, settings: Settings, database: str, start: datetime, end: datetime,
           scripts: Table) -> list[remedies.Comparison]:
    """The period's comparisons: the natural pairs, and the two script versions with most calls
    (the lower version as the reference); a pair without calls on one side is left out."""
    pairs = [(factor, *groups) for factor, groups in remedies.NATURAL_GROUPS.items() if factor != "first_time_borrower"]
    versions = sorted((r for r in scripts.rows if r.get("script_version") not in (None, "(none)")),
                      key=lambda r: -int(r.get("attempts") or 0))[:2]
    if len(versions) == 2:
        a, b = sorted(str(r["script_version"]) for r in versions)
        pairs.insert(0, ("script_version", (a,), (b,)))
    out = []
    for factor, a_values, b_values in pairs:
        try:
            out.append(remedies.compare_groups(backend, settings, database, factor, a_values, b_values, start, end))
        except remedies.RemedyError:
            continue  # e.g. no robot calls in the period: nothing to compare
    return out

