"""The tables the sink writes: the columns each row carries (in order) and how each table is
partitioned. The column types live in the migrations only; the writer reads them back from
system.columns at start-up to validate rows (sinks.validate)."""

from __future__ import annotations

import dataclasses
from typing import Final, Literal


@dataclasses.dataclass(frozen=True, slots=True)
class TableSpec:
    name: str
    columns: tuple[str, ...]
    # Granularity of the partition key (toYYYYMMDD -> day, toYYYYMM -> month); retention uses
    # it to tell from a partition id when the newest row in it can be.
    partition: Literal["day", "month"] | None
    # The time column retention (TTL, partition drops) measures age by.
    time_column: str | None = None


CALL_EVENTS: Final = TableSpec("call_events", (
    "event_id", "call_id", "borrower_id", "loan_id", "occurred_at", "occurred_at_ms", "campaign", "channel",
    "agent_id", "branch", "outcome", "hangup_stage", "duration_s", "attempt_no", "pre_notified", "credit_grade",
    "first_time_borrower", "script_version", "schema_version", "extra", "kafka_partition", "kafka_offset",
    "ingested_at"), "day", "occurred_at")

HANGUP_RATES: Final = TableSpec("hangup_rates", (
    "window_size_s", "window_start", "window_end", "dimension", "value", "attempts", "connected", "completed",
    "hung_up", "refused", "wrong_party", "declined", "no_answer", "busy", "voicemail", "invalid_number", "version",
    "final", "source", "emitted_at", "ingested_at"), "day", "window_start")

BORROWER_FLAGS: Final = TableSpec("borrower_flags", (
    "flag_id", "borrower_id", "loan_id", "rule_id", "rule_version", "severity", "status", "evidence",
    "evidence_count", "first_event_at", "last_event_at", "explanation", "emitted_at", "emitted_at_ms",
    "ingested_at", "evidence_event_id", "evidence_call_id", "evidence_occurred_at", "evidence_outcome",
    "evidence_hangup_stage", "evidence_agent_id", "evidence_channel", "evidence_script_version",
    # BorrowerFlag v2 (migration 0011)
    "schema_version", "fact_outcomes", "fact_outcome_counts", "fact_hangup_stages", "fact_channels",
    "fact_channel_counts", "fact_pre_notified_calls", "fact_bad_hour_calls", "threshold_metric", "threshold_op",
    "threshold_count", "threshold_limit", "threshold_window_ms", "next_action", "next_action_param_names",
    "next_action_param_values", "next_action_also"), "month",
    "first_event_at")

HANGUP_ALERTS: Final = TableSpec("hangup_alerts", (
    "alert_id", "status", "dimension", "value", "window_size_s", "window_start", "window_end", "connected", "hung_up",
    "hangup_rate", "wilson_low", "wilson_high", "baseline_rate", "baseline_connected", "explanation", "version",
    "emitted_at", "ingested_at"), "month", "window_start")

DEAD_LETTERS: Final = TableSpec("dead_letters", (
    "source_topic", "source_partition", "source_offset", "source_timestamp_ms", "key_b64", "value_b64",
    "error_kind", "error_field", "error", "received_at", "worker", "ingested_at", "personal_data_types",
    "personal_data_fields", "personal_data_hmacs"), "month", "received_at")

SINK_BATCHES: Final = TableSpec("sink_batches", (
    "table", "rows", "rejected", "seconds", "flushed_at", "worker", "newest_event_ms", "late_rows"), "day",
    "flushed_at")

# The same events as call_events, ordered by borrower (migration 0013): written with them.
BORROWER_CALLS: Final = TableSpec("borrower_calls", (
    "borrower_id", "occurred_at", "event_id", "call_id", "loan_id", "occurred_at_ms", "campaign", "channel",
    "agent_id", "branch", "outcome", "hangup_stage", "duration_s", "attempt_no", "pre_notified", "credit_grade",
    "first_time_borrower", "script_version", "ingested_at"), "month", "occurred_at")

# Rollups of call_events per grain (migration 0012), recomputed by the sink (sinks/rollup.py)
# and read by the catalogue (sinks/catalogue/rollup.py). Every row has the segment, and the
# facet names which further columns split it; the others are ''.
ROLLUP_SEGMENT: Final = ("branch", "campaign", "channel", "script_version")
ROLLUP_FACETS: Final[dict[str, tuple[str, ...]]] = {
    "all": (),
    "profile": ("credit_grade", "pre_notified", "first_time_borrower"),
    "stage": ("hangup_stage",),
    "agent": ("agent_id",),
}
ROLLUP_COLUMNS: Final = (
    "bucket_start", "facet", "branch", "campaign", "channel", "script_version", "credit_grade", "pre_notified",
    "first_time_borrower", "hangup_stage", "agent_id", "attempts", "connected", "completed", "hung_up", "refused",
    "wrong_party", "declined", "no_answer", "busy", "voicemail", "invalid_number", "version", "computed_at")
ROLLUP_1M: Final = TableSpec("rollup_1m", ROLLUP_COLUMNS, "day", "bucket_start")
ROLLUP_1H: Final = TableSpec("rollup_1h", ROLLUP_COLUMNS, "month", "bucket_start")
ROLLUP_1D: Final = TableSpec("rollup_1d", ROLLUP_COLUMNS, "month", "bucket_start")
ROLLUPS: Final = (ROLLUP_1M, ROLLUP_1H, ROLLUP_1D)
# Compact rollups (migration 0016), derived by the sink from rollup_1h: one value of one
# column per row, summed over the segments, for reads without a segment filter. A facet names
# the column (COMPACT_FACETS: the rollup facet its rows come from and the column); 'agent' rows
# also carry the agent's branch.
COMPACT_FACETS: Final[dict[str, tuple[str, str]]] = {
    "all": ("all", ""),
    **{c: ("all", c) for c in ROLLUP_SEGMENT},
    **{c: ("profile", c) for c in ROLLUP_FACETS["profile"]},
    "agent": ("agent", "agent_id"),
}
COMPACT_COLUMNS: Final = (
    "bucket_start", "facet", "value", "branch", "attempts", "connected", "completed", "hung_up", "refused",
    "wrong_party", "declined", "no_answer", "busy", "voicemail", "invalid_number", "version", "computed_at")
ROLLUP_COMPACT_1M: Final = TableSpec("rollup_compact_1m", COMPACT_COLUMNS, "day", "bucket_start")
ROLLUP_COMPACT_1H: Final = TableSpec("rollup_compact_1h", COMPACT_COLUMNS, "month", "bucket_start")
ROLLUP_COMPACT_1D: Final = TableSpec("rollup_compact_1d", COMPACT_COLUMNS, "month", "bucket_start")

SCHEMA_MIGRATIONS: Final = TableSpec("schema_migrations", (
    "version", "name", "checksum", "applied_at", "server_version", "applied_by"), None)

# Tables filled from a topic, in the order the sink flushes them.
DATA_TABLES: Final = (CALL_EVENTS, HANGUP_RATES, BORROWER_FLAGS, HANGUP_ALERTS, DEAD_LETTERS)
ALL_TABLES: Final = {t.name: t for t in (*DATA_TABLES, BORROWER_CALLS, *ROLLUPS, ROLLUP_COMPACT_1M, ROLLUP_COMPACT_1H,
                                         ROLLUP_COMPACT_1D, SINK_BATCHES, SCHEMA_MIGRATIONS)}
