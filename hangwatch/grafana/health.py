"""The "Pipeline health" dashboard: is data flowing, fresh and complete?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from hangwatch.grafana import sql
from hangwatch.grafana.constants import HEALTH_UID, LATE_AFTER_S, STALLED_AFTER_S
from hangwatch.grafana.panels import barchart_panel, stat_panel, table_panel, timeseries_panel

TITLE = "Pipeline health"


def build() -> dm.Dashboard:
    d = (dashboard.Dashboard(TITLE).uid(HEALTH_UID).tags(["hangwatch", "pipeline"]).refresh("30s")
         .time("now-3h", "now").timezone("browser")
         .description("Throughput, dead letters, freshness, late events and sink batches of the hangwatch pipeline."))
    panels: list[Any] = [
        stat_panel("Event freshness", "Seconds since the newest stored call happened (now minus latest event "
                   "time). Grows when calls stop arriving or the pipeline stalls.",
                   (0, 0, 6, 4), sql.FRESHNESS, "event freshness", "s", (60, STALLED_AFTER_S)),
        stat_panel("Ingest freshness", "Seconds since the sink last stored a call (now minus latest ingested_at).",
                   (6, 0, 6, 4), sql.FRESHNESS, "ingest freshness", "s", (60, STALLED_AFTER_S)),
        stat_panel("Dead letters", "Messages sent to the DLQ (call-outcomes.dlq) in the selected range.",
                   (12, 0, 6, 4), sql.DLQ_COUNT, "dead_letters", "short", (1, 100)),
        barchart_panel("Dead letters by error kind", "Which validation fails most.",
                       (18, 0, 6, 8), sql.DLQ_BY_KIND, "error_kind"),
        timeseries_panel("Events per second: in, stored, dead-lettered",
                         "In: events counted by the stream (its 60-second windows, event time). Stored: rows "
                         "reaching call_events (by storage time). Dead-lettered: invalid messages.",
                         (0, 4, 18, 8), [sql.EVENTS_IN_PER_S, sql.EVENTS_STORED_PER_S, sql.DLQ_PER_S],
                         unit="reqps"),
        timeseries_panel("Late events", f"Calls stored more than {LATE_AFTER_S} s after they happened (the "
                         "worker's grace), and window counts rewritten by reconcile, per interval.",
                         (0, 12, 12, 8), [sql.LATE_EVENTS, sql.RECONCILED_WINDOWS], unit="short"),
        timeseries_panel("Sink batch size", "Average rows per INSERT by table.",
                         (12, 12, 12, 8), [sql.SINK_BATCH_SIZES], unit="short"),
        timeseries_panel("Sink flush time", "Slowest INSERT by table.",
                         (0, 20, 8, 9), [sql.SINK_FLUSH_SECONDS], unit="s"),
        table_panel("Latest dead letters", "The newest DLQ records with the error and where they came from.",
                    (8, 20, 16, 9), sql.DLQ_LATEST)
        .override_by_name("error", [dm.DynamicConfigValue(id_val="custom.width", value=360)]),
    ]
    for i, p in enumerate(panels, start=1):
        d.with_panel(p.id(i))
    return d.build()
