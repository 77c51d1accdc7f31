"""The "Hang-up risk — live" dashboard: what the risk team watches during the day."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from hangwatch.grafana.constants import LIVE_UID
from hangwatch.grafana.panels import (
    PERCENT,
    barchart_panel,
    query_variable,
    rate_columns,
    rate_columns_regex,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from hangwatch.grafana.sql import panel
from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import local_zone_name
from hangwatch.sinks.catalogue.events import VARIABLES

TITLE = "Hang-up risk — live"
_RATES = ["hangup_rate", "decline_rate", "refusal_rate", "contact_rate"]
_COMPARISON_TITLES = {
    "script_version": "By script version (话术)",
    "channel": "Human vs robot",
    "credit_grade": "By credit grade",
    "pre_notified": "Pre-notified vs not",
    "first_time_borrower": "First-time vs repeat borrowers",
}


_VARIABLE_LABELS = {"branch": "Branch", "campaign": "Campaign", "channel": "Channel",
                    "script_version": "Script version"}


def _comparison(s: Settings, dimension: str, pos: tuple[int, int, int, int]) -> Any:
    p = table_panel(_COMPARISON_TITLES[dimension],
                    f"Rates by {dimension.replace('_', ' ')} with their sample sizes: attempts (all calls) and "
                    "connected (the denominator of hang-up and refusal rates). Do not compare rates "
                    "backed by a handful of calls.", pos, panel(s, "comparison", factor=dimension))
    return rate_columns(p, _RATES[:3]).override_by_name(
        "contact_rate", [dm.DynamicConfigValue(id_val="unit", value=PERCENT),
                         dm.DynamicConfigValue(id_val="decimals", value=1)])


def build(s: Settings) -> dm.Dashboard:
    d = (dashboard.Dashboard(TITLE).uid(LIVE_UID).tags(["hangwatch", "risk"]).refresh("10s")
         .time("now-6h", "now").timezone("browser")
         .description("Live hang-up, decline, refusal and contact rates of mortgage follow-up calls (房贷回访), "
                      "borrower flags and spike alerts. Data: hangwatch ClickHouse tables."))
    for name in VARIABLES:
        d.with_variable(query_variable(name, _VARIABLE_LABELS[name], panel(s, "variable_values", variable=name)))
    summary = panel(s, "live_summary")

    panels: list[Any] = [
        stat_panel("Hang-up rate", "hung_up / connected over the selected range and filters.",
                   (0, 0, 6, 4), summary, "hangup_rate", PERCENT, (0.2, 0.35)),
        stat_panel("Decline rate", "declined (拒接) / attempts over the selected range and filters.",
                   (6, 0, 6, 4), summary, "decline_rate", PERCENT, (0.15, 0.3)),
        stat_panel("Connected calls", "Sample size behind the hang-up rate.",
                   (12, 0, 4, 4), summary, "connected", "short"),
        stat_panel("Open borrower flags", "Flags raised or escalated and not resolved, last event in range.",
                   (16, 0, 4, 4), panel(s, "open_flag_count"), "open_flags", "short", (1, 20)),
        stat_panel("Spike alerts firing", "Spike alerts whose latest state is firing.",
                   (20, 0, 4, 4), panel(s, "firing_alert_count"), "active_alerts", "short", (1, 1)),
        timeseries_panel("Rates over time", "Hang-up = hung_up/connected, decline = declined/attempts, "
                         "refusal = refused/connected, contact = connected/attempts, per interval.",
                         (0, 4, 12, 9), [panel(s, "rates_over_time")]),
        timeseries_panel("Hang-up rate by branch", "hung_up/connected per branch and interval.",
                         (12, 4, 12, 9), [panel(s, "hangup_rate_by_branch")]),
        rate_columns(table_panel("Last 15 minutes by branch",
                                 "The stream's 60-second windows (hangup_rates) summed over the 15 minutes "
                                 "before the end of the range, with attempts and connected calls.",
                                 (0, 13, 10, 9), panel(s, "rolling_by_branch", minutes=15)),
                     ["hangup_rate", "decline_rate"]),
        rate_columns_regex(table_panel(f"Hang-up rate: branch × hour of day ({local_zone_name(s)})",
                                       "Heatmap of hung_up/connected by branch (rows) and local hour (columns); "
                                       "empty = no connected call. Shows when to call whom.",
                                       (10, 13, 14, 9), panel(s, "branch_hour_heatmap")), "^\\d\\d$"),
        _comparison(s, "script_version", (0, 22, 12, 8)),
        _comparison(s, "channel", (12, 22, 12, 8)),
        _comparison(s, "credit_grade", (0, 30, 8, 8)),
        _comparison(s, "pre_notified", (8, 30, 8, 8)),
        _comparison(s, "first_time_borrower", (16, 30, 8, 8)),
        barchart_panel("Hang-up stage breakdown", "Where in the script borrowers hang up or refuse.",
                       (0, 38, 8, 9), panel(s, "hangup_stage_breakdown"), "stage"),
        rate_columns(table_panel("Active spike alerts",
                                 "5-minute hang-up rate of a branch, campaign or script version whose Wilson "
                                 "lower bound is above its 24-hour baseline; resolved alerts disappear.",
                                 (8, 38, 16, 9), panel(s, "firing_alerts_in_range", limit=50)),
                     ["hangup_rate", "wilson_low", "baseline_rate"]),
        table_panel("Top flagged borrowers",
                    "Open borrower flags (repeated refusal, compliance), most severe first, with the rule, "
                    "the calls that triggered it (evidence, local time) and the explanation.",
                    (0, 47, 24, 10), panel(s, "open_flag_list", limit=50))
        .override_by_name("explanation", [dm.DynamicConfigValue(id_val="custom.width", value=420)])
        .override_by_name("severity", [dm.DynamicConfigValue(
            id_val="custom.cellOptions", value={"type": "color-text"}), dm.DynamicConfigValue(
            id_val="mappings", value=[{"type": "value", "options": {
                "high": {"color": "red", "index": 0}, "medium": {"color": "orange", "index": 1},
                "low": {"color": "yellow", "index": 2}}}])]),
    ]
    for i, p in enumerate(panels, start=1):
        d.with_panel(p.id(i))
    return d.build()
