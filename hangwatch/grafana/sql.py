"""Every SQL statement of the dashboards, the alert rules and the risk report: one home each.

Statements use the ClickHouse plugin's macros (docs/dashboards.md, "Macros"): $__timeFilter,
$__timeInterval, $__interval_s, $__fromTime/$__toTime, and in dashboards only the frontend
$__conditionalAll with ${var:singlequote}. Alert rules use backend macros only. Every table
is named with its database so the datasource's default database never matters.

Counts are the source of truth and every ratio is derived from counts (domain.md), so each
rate comes with the count it was computed from: nobody should read a rate from 3 calls.
Tables are ReplacingMergeTree: FINAL gives the deduplicated truth (one row per event_id, the
highest version of a rate cell).
"""

from __future__ import annotations

from typing import Final

from hangwatch.grafana.constants import DATABASE, LATE_AFTER_S, LOCAL_TZ, SPIKE_MIN_CONNECTED

DB: Final = DATABASE
VARIABLES: Final = ("branch", "campaign", "channel", "script_version")

# --- building blocks --------------------------------------------------------------------
CONNECTED_OUTCOMES: Final = "('completed', 'hung_up', 'refused', 'wrong_party')"
_CONNECTED: Final = f"countIf(outcome IN {CONNECTED_OUTCOMES})"
# ifNull keeps a rate NULL (a gap, not 0) when there is nothing to divide by.
HANGUP_RATE: Final = f"countIf(outcome = 'hung_up') / nullIf({_CONNECTED}, 0)"
DECLINE_RATE: Final = "countIf(outcome = 'declined') / nullIf(count(), 0)"
REFUSAL_RATE: Final = f"countIf(outcome = 'refused') / nullIf({_CONNECTED}, 0)"
CONTACT_RATE: Final = f"{_CONNECTED} / nullIf(count(), 0)"
CONNECTED: Final = _CONNECTED


def filters(*, skip: tuple[str, ...] = ()) -> str:
    """The template-variable filter: one $__conditionalAll per variable (1=1 when All)."""
    parts = [f"$__conditionalAll({v} IN (${{{v}:singlequote}}), ${v})" for v in VARIABLES if v not in skip]
    return " AND ".join(parts)


def _events_where(extra: str = "") -> str:
    where = f"$__timeFilter(occurred_at) AND {filters()}"
    return f"{where} AND {extra}" if extra else where


# --- template variables -----------------------------------------------------------------
def variable_sql(column: str) -> str:
    """Distinct values seen in the selected time range (refreshed when the range changes).
    toString: channel is an Enum8 and script_version is Nullable; the value is what the
    panels' `column IN (...)` filters compare with."""
    return (f"SELECT DISTINCT toString({column}) AS value FROM {DB}.call_events "
            f"WHERE $__timeFilter(occurred_at) AND {column} IS NOT NULL ORDER BY value")


# --- Hang-up risk — live ----------------------------------------------------------------
LIVE_SUMMARY: Final = f"""
SELECT
  count() AS attempts,
  {CONNECTED} AS connected,
  {HANGUP_RATE} AS hangup_rate,
  {DECLINE_RATE} AS decline_rate
FROM {DB}.call_events FINAL
WHERE {_events_where()}
""".strip()

RATES_OVER_TIME: Final = f"""
SELECT
  $__timeInterval(occurred_at) AS time,
  {HANGUP_RATE} AS `hang-up rate`,
  {DECLINE_RATE} AS `decline rate`,
  {REFUSAL_RATE} AS `refusal rate`,
  {CONTACT_RATE} AS `contact rate`
FROM {DB}.call_events FINAL
WHERE {_events_where()}
GROUP BY time
ORDER BY time
""".strip()

# Long format (time, branch, value): the plugin turns it into one series per branch.
HANGUP_RATE_BY_BRANCH: Final = f"""
SELECT
  $__timeInterval(occurred_at) AS time,
  branch,
  {HANGUP_RATE} AS hangup_rate
FROM {DB}.call_events FINAL
WHERE {_events_where()}
GROUP BY time, branch
ORDER BY time, branch
""".strip()

# The stream's own 60-second windows (hangup_rates), summed over the 15 minutes before the
# end of the selected range ($__toTime is "now" on a live dashboard): the rolling view the
# risk team watches, and a cross-check of the stream against call_events. The table alias
# keeps sum(r.connected) on the column, not on the output alias `connected`.
ROLLING_15M_BY_BRANCH: Final = f"""
SELECT
  r.value AS branch,
  sum(r.attempts) AS attempts,
  sum(r.connected) AS connected,
  sum(r.hung_up) / nullIf(sum(r.connected), 0) AS hangup_rate,
  sum(r.declined) / nullIf(sum(r.attempts), 0) AS decline_rate
FROM {DB}.hangup_rates AS r FINAL
WHERE r.window_size_s = 60 AND r.dimension = 'branch'
  AND r.window_start >= $__toTime - INTERVAL 15 MINUTE AND r.window_start < $__toTime
  AND $__conditionalAll(r.value IN (${{branch:singlequote}}), $branch)
GROUP BY branch
ORDER BY hangup_rate DESC, branch
""".strip()


def _hour_columns() -> str:
    cols = []
    for h in range(24):
        hour = f"toHour(occurred_at, '{LOCAL_TZ}') = {h}"
        cols.append(f"  countIf(outcome = 'hung_up' AND {hour}) / "
                    f"nullIf(countIf(outcome IN {CONNECTED_OUTCOMES} AND {hour}), 0) AS `{h:02d}`")
    return ",\n".join(cols)


# Branch x hour-of-day (local time) as a pivot: one row per branch, one column per hour.
# Rendered as a colour-coded table, the heatmap Grafana's heatmap panel cannot draw for a
# categorical y axis and a non-time x axis.
BRANCH_HOUR_HEATMAP: Final = f"""
SELECT
  branch,
  {CONNECTED} AS connected,
{_hour_columns()}
FROM {DB}.call_events FINAL
WHERE {_events_where()}
GROUP BY branch
ORDER BY branch
""".strip()

# Comparison dimensions: label -> SQL expression giving a readable value.
# Nullable columns show the records' "(none)" (schemas.records.NONE_VALUE) instead of NULL.
COMPARISONS: Final = {
    "script_version": "ifNull(script_version, '(none)')",
    "channel": "toString(channel)",
    "credit_grade": "ifNull(credit_grade, '(none)')",
    "pre_notified": "if(pre_notified = 1, 'pre-notified', 'not notified')",
    "first_time_borrower": ("multiIf(first_time_borrower IS NULL, '(none)', first_time_borrower = 1, "
                            "'first-time', 'repeat')"),
}


def comparison_sql(dimension: str) -> str:
    """Rates by one factor, each with the attempts and connected calls behind it."""
    expr = COMPARISONS[dimension]
    return f"""
SELECT
  {expr} AS {dimension},
  count() AS attempts,
  {CONNECTED} AS connected,
  {HANGUP_RATE} AS hangup_rate,
  {DECLINE_RATE} AS decline_rate,
  {REFUSAL_RATE} AS refusal_rate,
  {CONTACT_RATE} AS contact_rate
FROM {DB}.call_events FINAL
WHERE {_events_where()}
GROUP BY {dimension}
ORDER BY {dimension}
""".strip()


HANGUP_STAGES: Final = ("greeting", "identity_check", "income_check", "collateral_check", "closing")
_STAGE_ARRAY: Final = "[" + ", ".join(f"'{s}'" for s in HANGUP_STAGES) + "]"

# Where in the script borrowers drop out, in script order.
HANGUP_STAGE_BREAKDOWN: Final = f"""
SELECT
  hangup_stage AS stage,
  countIf(outcome = 'hung_up') AS hung_up,
  countIf(outcome = 'refused') AS refused
FROM {DB}.call_events FINAL
WHERE {_events_where("outcome IN ('hung_up', 'refused') AND hangup_stage IS NOT NULL")}
GROUP BY stage
ORDER BY indexOf({_STAGE_ARRAY}, stage), stage
""".strip()

def _evidence_field(name: str) -> str:
    return f"JSONExtractString(e, '{name}')"


def _optional_part(name: str, prefix: str, suffix: str = "") -> str:
    f = _evidence_field(name)
    return f"if({f} = '', '', concat('{prefix}', {f}, '{suffix}'))"


# evidence is the flag's JSON list of calls (schemas.records.EvidenceItem); shown as one line
# per flag: "05-03 14:02 hung_up @income_check A017 [v3-income]; ..." in local time.
_EVIDENCE_SUMMARY: Final = (
    "arrayStringConcat(arrayMap(e -> concat("
    f"formatDateTime(parseDateTimeBestEffort({_evidence_field('occurred_at')}), '%m-%d %H:%i', '{LOCAL_TZ}'), ' ', "
    f"{_evidence_field('outcome')}, {_optional_part('hangup_stage', ' @')}, {_optional_part('agent_id', ' ')}, "
    f"{_optional_part('script_version', ' [', ']')}), JSONExtractArrayRaw(evidence)), '; ')"
)

# A flag's current state is its row with the furthest status (raised < escalated < resolved;
# Enum8 order): one row per flag, then only the open ones. The time range selects flags by
# their latest call; the lower bound goes inside so a later "resolved" row is always seen.
_CURRENT_FLAGS: Final = f"""
  SELECT *
  FROM {DB}.borrower_flags FINAL
  WHERE last_event_at >= $__fromTime
  ORDER BY flag_id, status DESC
  LIMIT 1 BY flag_id
""".rstrip()

TOP_FLAGGED_BORROWERS: Final = f"""
SELECT
  borrower_id,
  rule_id,
  severity,
  status,
  evidence_count AS calls,
  last_event_at,
  explanation,
  {_EVIDENCE_SUMMARY} AS evidence
FROM ({_CURRENT_FLAGS}
)
WHERE status != 'resolved' AND last_event_at <= $__toTime
ORDER BY severity DESC, last_event_at DESC, borrower_id, rule_id
LIMIT 50
""".strip()

OPEN_FLAGS: Final = f"""
SELECT count() AS open_flags
FROM ({_CURRENT_FLAGS}
)
WHERE status != 'resolved' AND last_event_at <= $__toTime
""".strip()

# An alert's latest record decides: firing and not (yet) resolved.
ACTIVE_ALERTS: Final = f"""
SELECT
  dimension,
  value,
  window_start,
  hangup_rate,
  wilson_low,
  baseline_rate,
  connected,
  explanation
FROM {DB}.hangup_alerts FINAL
WHERE $__timeFilter(window_start) AND status = 'firing'
ORDER BY window_start DESC, dimension, value
LIMIT 50
""".strip()

ACTIVE_ALERT_COUNT: Final = f"""
SELECT count() AS active_alerts
FROM {DB}.hangup_alerts FINAL
WHERE $__timeFilter(window_start) AND status = 'firing'
""".strip()

# --- Risk report only (no dashboard variable filters) -----------------------------------
TOP_AGENTS: Final = f"""
SELECT
  agent_id,
  branch,
  count() AS attempts,
  {CONNECTED} AS connected,
  {HANGUP_RATE} AS hangup_rate
FROM {DB}.call_events FINAL
WHERE {_events_where("agent_id IS NOT NULL")}
GROUP BY agent_id, branch
HAVING connected >= {SPIKE_MIN_CONNECTED}
ORDER BY hangup_rate DESC, connected DESC
LIMIT 15
""".strip()

BRANCH_RATES: Final = f"""
SELECT
  branch,
  count() AS attempts,
  {CONNECTED} AS connected,
  {HANGUP_RATE} AS hangup_rate,
  {DECLINE_RATE} AS decline_rate
FROM {DB}.call_events FINAL
WHERE {_events_where()}
GROUP BY branch
ORDER BY hangup_rate DESC, branch
""".strip()

# --- Pipeline health --------------------------------------------------------------------
# Events in: what the stream counted (its 60-second "all" windows, event time). Stored: rows
# that reached call_events, by the time they were stored (no FINAL: redelivered copies are
# rows the sink wrote too; the stored-vs-in gap shows them).
EVENTS_IN_PER_S: Final = f"""
SELECT
  $__timeInterval(window_start) AS time,
  sum(attempts) / $__interval_s AS `events in /s`
FROM {DB}.hangup_rates FINAL
WHERE window_size_s = 60 AND dimension = 'all' AND $__timeFilter(window_start)
GROUP BY time
ORDER BY time
""".strip()

EVENTS_STORED_PER_S: Final = f"""
SELECT
  $__timeInterval(ingested_at) AS time,
  count() / $__interval_s AS `rows stored /s`
FROM {DB}.call_events
WHERE $__timeFilter(ingested_at)
GROUP BY time
ORDER BY time
""".strip()

DLQ_PER_S: Final = f"""
SELECT
  $__timeInterval(received_at) AS time,
  count() / $__interval_s AS `dead letters /s`
FROM {DB}.dead_letters FINAL
WHERE $__timeFilter(received_at)
GROUP BY time
ORDER BY time
""".strip()

DLQ_COUNT: Final = f"""
SELECT count() AS dead_letters
FROM {DB}.dead_letters FINAL
WHERE $__timeFilter(received_at)
""".strip()

DLQ_BY_KIND: Final = f"""
SELECT error_kind, count() AS dead_letters
FROM {DB}.dead_letters FINAL
WHERE $__timeFilter(received_at)
GROUP BY error_kind
ORDER BY dead_letters DESC, error_kind
""".strip()

DLQ_LATEST: Final = f"""
SELECT received_at, error_kind, error_field, error, source_topic, source_partition, source_offset, worker
FROM {DB}.dead_letters FINAL
WHERE $__timeFilter(received_at)
ORDER BY received_at DESC, source_partition, source_offset DESC
LIMIT 50
""".strip()

# Freshness is about now, not about the selected range: how long ago the newest call
# happened (event time) and how long ago the newest row was stored (the sink).
FRESHNESS: Final = f"""
SELECT
  dateDiff('second', max(occurred_at), now()) AS `event freshness`,
  dateDiff('second', max(ingested_at), now()) AS `ingest freshness`
FROM {DB}.call_events
WHERE occurred_at >= now() - INTERVAL 1 DAY
""".strip()

# Late: calls stored long after they happened (beyond the worker's grace), by storage time.
LATE_EVENTS: Final = f"""
SELECT
  $__timeInterval(ingested_at) AS time,
  countIf(dateDiff('second', occurred_at, ingested_at) > {LATE_AFTER_S}) AS `late calls (> {LATE_AFTER_S} s)`
FROM {DB}.call_events
WHERE $__timeFilter(ingested_at)
GROUP BY time
ORDER BY time
""".strip()

# Window cells that reconcile rewrote from call_events (the stream missed or miscounted
# events, e.g. ones later than the grace), by storage time.
RECONCILED_WINDOWS: Final = f"""
SELECT
  $__timeInterval(ingested_at) AS time,
  count() AS `windows corrected by reconcile`
FROM {DB}.hangup_rates
WHERE $__timeFilter(ingested_at) AND source = 'reconcile'
GROUP BY time
ORDER BY time
""".strip()

SINK_BATCH_SIZES: Final = f"""
SELECT
  $__timeInterval(flushed_at) AS time,
  `table`,
  avg(rows) AS rows_per_batch
FROM {DB}.sink_batches
WHERE $__timeFilter(flushed_at)
GROUP BY time, `table`
ORDER BY time, `table`
""".strip()

SINK_FLUSH_SECONDS: Final = f"""
SELECT
  $__timeInterval(flushed_at) AS time,
  `table`,
  max(seconds) AS max_flush_seconds
FROM {DB}.sink_batches
WHERE $__timeFilter(flushed_at)
GROUP BY time, `table`
ORDER BY time, `table`
""".strip()

# --- Alert rules (backend macros only; the range is the rule's relativeTimeRange) --------
# One row per branch with enough connected calls: Grafana alerts on each row separately
# (labels from the string column), so each branch is its own alert instance.
ALERT_HANGUP_SPIKE: Final = f"""
SELECT
  branch,
  {HANGUP_RATE} AS hangup_rate
FROM {DB}.call_events FINAL
WHERE $__timeFilter(occurred_at)
GROUP BY branch
HAVING {CONNECTED} >= {SPIKE_MIN_CONNECTED}
ORDER BY branch
""".strip()

ALERT_DLQ_GROWTH: Final = f"""
SELECT count() AS dead_letters
FROM {DB}.dead_letters FINAL
WHERE $__timeFilter(received_at)
""".strip()

# max() over no rows is the epoch, so "nothing stored in the range" is a huge age: it fires.
ALERT_PIPELINE_STALLED: Final = f"""
SELECT dateDiff('second', max(ingested_at), now()) AS seconds_since_last_stored
FROM {DB}.call_events
WHERE $__timeFilter(ingested_at)
""".strip()
