"""The "Pipeline health" dashboard: is data flowing, fresh and complete?"""

from __future__ import annotations

from typing import Any

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models import dashboard as dm

from hangwatch.grafana.constants import HEALTH_UID, STALLED_AFTER_S
from hangwatch.grafana.panels import barchart_panel, stat_panel, table_panel, timeseries_panel
from hangwatch.grafana.sql import panel
from hangwatch.platform.settings import Settings

TITLE = "Pipeline health"


def build(s: Settings) -> dm.Dashboard:
    d = (dashboard.Dashboard(TITLE).uid(HEALTH_UID).tags(["hangwatch", "pipeline"]).refresh("30s")
         .time("now-3h", "now").timezone("browser")
         .description("Throughput, dead letters, freshness, late events and sink batches of the hangwatch pipeline."))
    freshness = panel(s, "freshness_age")
    panels: list[Any] = [
        stat_panel("Event freshness", "Seconds since the newest stored call happened (now minus latest event "
                   "time). Grows when calls stop arriving or the pipeline stalls.",
                   (0, 0, 6, 4), freshness, "event freshness", "s", (60, STALLED_AFTER_S)),
        stat_panel("Ingest freshness", "Seconds since the sink last stored a call (now minus latest ingested_at).",
                   (6, 0, 6, 4), freshness, "ingest freshness", "s", (60, STALLED_AFTER_S)),
        stat_panel("Dead letters", "Messages sent to the DLQ (call-outcomes.dlq) in the selected range.",
                   (12, 0, 6, 4), panel(s, "dlq_count"), "dead_letters", "short", (1, 100)),
        barchart_panel("Dead letters by error kind", "Which validation fails most.",
                       (18, 0, 6, 8), panel(s, "dlq_by_kind"), "error_kind"),
        timeseries_panel("Events per second: in, stored, dead-lettered",
                         "In: events counted by the stream (its 60-second windows, event time). Stored: rows "
                         "reaching call_events (by storage time). Dead-lettered: invalid messages.",
                         (0, 4, 18, 8), [panel(s, "events_in_per_s"), panel(s, "events_stored_per_s"),
                                          panel(s, "dlq_per_s")],
                         unit="reqps"),
        timeseries_panel("Late events", f"Calls stored more than {s.worker.grace_s} s after they happened (the "
                         "worker's grace), and window counts rewritten by reconcile, per interval.",
                         (0, 12, 12, 8), [panel(s, "late_events"), panel(s, "reconciled_windows")], unit="short"),
        timeseries_panel("Sink batch size", "Average rows per INSERT by table.",
                         (12, 12, 12, 8), [panel(s, "sink_batch_sizes")], unit="short"),
        timeseries_panel("Sink flush time", "Slowest INSERT by table.",
                         (0, 20, 8, 9), [panel(s, "sink_flush_seconds")], unit="s"),
        table_panel("Latest dead letters", "The newest DLQ records with the error and where they came from.",
                    (8, 20, 16, 9), panel(s, "dlq_in_range", limit=50))
        .override_by_name("error", [dm.DynamicConfigValue(id_val="custom.width", value=360)]),
    ]
    for i, p in enumerate(panels, start=1):
        d.with_panel(p.id(i))
    return d.build()
