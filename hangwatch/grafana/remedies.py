"""The "Remedies" dashboard (issue 16, docs/analytics.md): is a difference between groups real
(each script version, pre-notification, channel and credit grade against the rest, with the
interval and p-value), and when to call (contact and hang-up rate per local weekday x hour, the
best slots per segment with the minimum sample). From the rollups; the statistics in SQL, the
same as `hangwatch query compare` / `best-times` compute (tests hold them equal)."""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from hangwatch.grafana.constants import REMEDIES_UID
from hangwatch.grafana.panels import PERCENT, localize_columns, query_variable, rate_columns_regex, table_panel
from hangwatch.grafana.sql import panel
from hangwatch.grafana.texts import Texts, language, texts
from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import local_zone
from hangwatch.sinks.catalogue.remedies import FILTERS

_PERCENT_COLUMNS = ("rate_value", "rate_rest", "difference", "ci_low", "ci_high", "contact_rate", "hangup_rate",
                    "reach_rate", "reach_low")


def _percent(p: Any, names: tuple[str, ...] = _PERCENT_COLUMNS) -> Any:
    for name in names:
        p.override_by_name(name, [dm.DynamicConfigValue(id_val="unit", value=PERCENT),
                                  dm.DynamicConfigValue(id_val="decimals", value=1)])
    return p


def _weekdays(p: Any, t: Texts) -> Any:
    """Weekday numbers (1 = Monday) shown as names."""
    names = {str(i + 1): {"text": t(f"rem.weekday.{i}"), "index": i} for i in range(7)}
    return p.override_by_name("weekday", [dm.DynamicConfigValue(id_val="mappings", value=[
        {"type": "value", "options": names}])])


def _compare(s: Settings, t: Texts, factor: str, pos: tuple[int, int, int, int]) -> Any:
    a = s.analytics
    sql = panel(s, "compare_one_vs_rest", factor=factor, rate="hangup_rate", confidence=str(a.confidence),
                design_effect=str(a.design_effect or 1))
    p = table_panel(t(f"rem.cmp.{factor}"), t("rem.cmp.d", level=f"{a.confidence:.0%}",
                                              deff=f"{a.design_effect or 1:g}"), pos, sql)
    _percent(p).override_by_name("p_value", [
        dm.DynamicConfigValue(id_val="decimals", value=3),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
        dm.DynamicConfigValue(id_val="thresholds", value=dashboard.ThresholdsConfig().mode(
            dm.ThresholdsMode.ABSOLUTE).steps([dm.Threshold(value=None, color="green"),
                                               dm.Threshold(value=1 - a.confidence, color="text")]).build())])
    return p


def _best(s: Settings, t: Texts, segment: str, pos: tuple[int, int, int, int]) -> Any:
    a = s.analytics
    sql = panel(s, "best_slots", segment=segment, min_attempts=a.best_time_min_attempts,
                min_connected=a.best_time_min_connected, top=a.best_time_top, confidence=str(a.confidence))
    p = table_panel(t(f"rem.best.{segment}"), t("rem.best.d", attempts=a.best_time_min_attempts,
                                               connected=a.best_time_min_connected, top=a.best_time_top,
                                               zone=str(local_zone(s))), pos, sql)
    return _weekdays(_percent(p), t)


def _grid(s: Settings, t: Texts, rate: str, pos: tuple[int, int, int, int]) -> Any:
    a = s.analytics
    sql = panel(s, "best_time_grid", rate=rate, min_attempts=a.best_time_min_attempts)
    p = table_panel(t(f"rem.grid.{rate}", zone=str(local_zone(s))),
                    t("rem.grid.d", attempts=a.best_time_min_attempts), pos, sql)
    if rate == "hangup_rate":
        return _weekdays(rate_columns_regex(p, "^\\d\\d$"), t)
    # contact: higher is better, so red when low
    steps = [dm.Threshold(value=None, color="red"), dm.Threshold(value=0.3, color="orange"),
             dm.Threshold(value=0.5, color="green")]
    p.override_by_regexp("^\\d\\d$", [
        dm.DynamicConfigValue(id_val="unit", value=PERCENT), dm.DynamicConfigValue(id_val="decimals", value=0),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background", "mode": "basic"}),
        dm.DynamicConfigValue(id_val="thresholds", value=dashboard.ThresholdsConfig().mode(
            dm.ThresholdsMode.ABSOLUTE).steps(steps).build())])
    return _weekdays(p, t)


def build(s: Settings) -> dm.Dashboard:
    t = texts(language(s), s.glossary_file)
    d = (dashboard.Dashboard(t("rem.title")).uid(REMEDIES_UID).tags(["hangwatch", "risk", "remedies"])
         .refresh("5m").time("now-14d", "now").timezone(str(local_zone(s)))
         .description(t("rem.description")))
    for name in FILTERS:
        d.with_variable(query_variable(name, t(f"var.{name}"), panel(s, "variable_values", variable=name)))
    panels: list[Any] = [
        _compare(s, t, "script_version", (0, 0, 12, 8)),
        _compare(s, t, "pre_notified", (12, 0, 12, 8)),
        _compare(s, t, "channel", (0, 8, 12, 8)),
        _compare(s, t, "credit_grade", (12, 8, 12, 8)),
        _grid(s, t, "contact_rate", (0, 16, 24, 9)),
        _grid(s, t, "hangup_rate", (0, 25, 24, 9)),
        _best(s, t, "credit_grade", (0, 34, 12, 10)),
        _best(s, t, "first_time_borrower", (12, 34, 12, 10)),
        _best(s, t, "campaign", (0, 44, 12, 8)),
        _best(s, t, "all", (12, 44, 12, 8)),
    ]
    for i, p in enumerate(panels, start=1):
        d.with_panel(localize_columns(p, t).id(i))
    return d.build()
