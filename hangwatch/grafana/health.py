"""The "Pipeline health" dashboard: is data flowing, fresh and complete?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from hangwatch.grafana.constants import HEALTH_UID
from hangwatch.grafana.panels import barchart_panel, localize_columns, stat_panel, table_panel, timeseries_panel
from hangwatch.grafana.sql import panel
from hangwatch.grafana.texts import language, texts
from hangwatch.platform.settings import Settings
from hangwatch.platform.timeparse import local_zone


def build(s: Settings) -> dm.Dashboard:
    t = texts(language(s), s.glossary_file)
    d = (dashboard.Dashboard(t("health.title")).uid(HEALTH_UID).tags(["hangwatch", "pipeline"]).refresh("30s")
         .time("now-3h", "now").timezone(str(local_zone(s)))
         .description(t("health.description")))
    freshness = panel(s, "freshness_age")
    panels: list[Any] = [
        stat_panel(t("h.event_freshness"), t("h.event_freshness.d"),
                   (0, 0, 6, 4), freshness, "event freshness", "s", (60, s.grafana.stalled_after_s)),
        stat_panel(t("h.ingest_freshness"), t("h.ingest_freshness.d"),
                   (6, 0, 6, 4), freshness, "ingest freshness", "s", (60, s.grafana.stalled_after_s)),
        stat_panel(t("h.dead_letters"), t("h.dead_letters.d"),
                   (12, 0, 6, 4), panel(s, "dlq_count"), "dead_letters", "short", (1, 100)),
        barchart_panel(t("h.dlq_by_kind"), t("h.dlq_by_kind.d"),
                       (18, 0, 6, 8), panel(s, "dlq_by_kind"), "error_kind"),
        timeseries_panel(t("h.events_per_s"), t("h.events_per_s.d"),
                         (0, 4, 18, 8), [panel(s, "events_in_per_s"), panel(s, "events_stored_per_s"),
                                          panel(s, "dlq_per_s")],
                         unit=f"suffix:{t('unit.per_s')}" if t("unit.per_s") else "reqps"),
        timeseries_panel(t("h.late_events"), t("h.late_events.d", grace=s.worker.grace_s),
                         (0, 12, 12, 8), [panel(s, "late_events"), panel(s, "reconciled_windows")], unit="short"),
        timeseries_panel(t("h.batch_size"), t("h.batch_size.d"),
                         (12, 12, 12, 8), [panel(s, "sink_batch_sizes")], unit="short"),
        timeseries_panel(t("h.flush_time"), t("h.flush_time.d"),
                         (0, 20, 8, 9), [panel(s, "sink_flush_seconds")], unit="s"),
        table_panel(t("h.latest_dlq"), t("h.latest_dlq.d"),
                    (8, 20, 16, 9), panel(s, "dlq_in_range", limit=50))
        .override_by_name("error", [dm.DynamicConfigValue(id_val="custom.width", value=360)]),
    ]
    for i, p in enumerate(panels, start=1):
        d.with_panel(localize_columns(p, t).id(i))
    return d.build()
