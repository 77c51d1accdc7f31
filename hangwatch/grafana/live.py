"""The "Hang-up risk — live" dashboard: what the risk team watches during the day."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from hangwatch.grafana.constants import LIVE_UID
from hangwatch.grafana.panels import (
    PERCENT,
    barchart_panel,
    localize_columns,
    query_variable,
    rate_columns,
    rate_columns_regex,
    stat_panel,
    table_panel,
    timeseries_panel,
)
from hangwatch.grafana.sql import panel
from hangwatch.grafana.texts import Texts, language, texts
from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import local_zone
from hangwatch.sinks.catalogue.events import VARIABLES

_RATES = ["hangup_rate", "decline_rate", "refusal_rate", "contact_rate"]


def _comparison(s: Settings, t: Texts, dimension: str, pos: tuple[int, int, int, int]) -> Any:
    p = table_panel(t(f"cmp.{dimension}"), t("cmp.description", dimension=t(f"dim.{dimension}")), pos,
                    panel(s, "comparison", factor=dimension))
    return rate_columns(p, _RATES[:3]).override_by_name(
        "contact_rate", [dm.DynamicConfigValue(id_val="unit", value=PERCENT),
                         dm.DynamicConfigValue(id_val="decimals", value=1)])


def build(s: Settings) -> dm.Dashboard:
    t = texts(language(s), s.glossary_file)
    d = (dashboard.Dashboard(t("live.title")).uid(LIVE_UID).tags(["hangwatch", "risk"]).refresh("10s")
         .time("now-6h", "now").timezone(str(local_zone(s)))
         .description(t("live.description")))
    for name in VARIABLES:
        d.with_variable(query_variable(name, t(f"var.{name}"), panel(s, "variable_values", variable=name)))
    summary = panel(s, "live_summary")

    panels: list[Any] = [
        stat_panel(t("p.hangup_rate"), t("p.hangup_rate.d"),
                   (0, 0, 6, 4), summary, "hangup_rate", PERCENT, (0.2, 0.35)),
        stat_panel(t("p.decline_rate"), t("p.decline_rate.d"),
                   (6, 0, 6, 4), summary, "decline_rate", PERCENT, (0.15, 0.3)),
        stat_panel(t("p.connected"), t("p.connected.d"),
                   (12, 0, 4, 4), summary, "connected", "short"),
        stat_panel(t("p.open_flags"), t("p.open_flags.d"),
                   (16, 0, 4, 4), panel(s, "open_flag_count"), "open_flags", "short", (1, 20)),
        stat_panel(t("p.alerts_firing"), t("p.alerts_firing.d"),
                   (20, 0, 4, 4), panel(s, "firing_alert_count"), "active_alerts", "short", (1, 1)),
        timeseries_panel(t("p.rates_over_time"), t("p.rates_over_time.d"),
                         (0, 4, 12, 9), [panel(s, "rates_over_time")]),
        timeseries_panel(t("p.hangup_by_branch"), t("p.hangup_by_branch.d"),
                         (12, 4, 12, 9), [panel(s, "hangup_rate_by_branch")]),
        rate_columns(table_panel(t("p.last15"), t("p.last15.d"),
                                 (0, 13, 10, 9), panel(s, "rolling_by_branch", minutes=15)),
                     ["hangup_rate", "decline_rate"]),
        rate_columns_regex(table_panel(t("p.heatmap", zone=str(local_zone(s))), t("p.heatmap.d"),
                                       (10, 13, 14, 9), panel(s, "branch_hour_heatmap")), "^\\d\\d$"),
        _comparison(s, t, "script_version", (0, 22, 12, 8)),
        _comparison(s, t, "channel", (12, 22, 12, 8)),
        _comparison(s, t, "credit_grade", (0, 30, 8, 8)),
        _comparison(s, t, "pre_notified", (8, 30, 8, 8)),
        _comparison(s, t, "first_time_borrower", (16, 30, 8, 8)),
        barchart_panel(t("p.stages"), t("p.stages.d"),
                       (0, 38, 8, 9), panel(s, "hangup_stage_breakdown"), "stage"),
        rate_columns(table_panel(t("p.active_alerts"), t("p.active_alerts.d"),
                                 (8, 38, 16, 9), panel(s, "firing_alerts_in_range", limit=50)),
                     ["hangup_rate", "wilson_low", "baseline_rate"]),
        table_panel(t("p.top_flagged"), t("p.top_flagged.d"),
                    (0, 47, 24, 10), panel(s, "open_flag_list", limit=50))
        .override_by_name("explanation", [dm.DynamicConfigValue(id_val="custom.width", value=420)])
        .override_by_name("severity", [dm.DynamicConfigValue(
            id_val="custom.cellOptions", value={"type": "color-text"}), dm.DynamicConfigValue(
            id_val="mappings", value=[{"type": "value", "options": {
                "high": {"color": "red", "index": 0}, "medium": {"color": "orange", "index": 1},
                "low": {"color": "yellow", "index": 2}}}])]),
    ]
    for i, p in enumerate(panels, start=1):
        d.with_panel(localize_columns(p, t).id(i))
    return d.build()
