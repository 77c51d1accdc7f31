"""Borrower flags and spike alerts: always their current state, read one way (argMax over
the version, expr.current_flags / current_alerts), for the CLI, the panels and the report."""

from __future__ import annotations

from hangwatch.sinks.catalogue import params
from hangwatch.sinks.catalogue.expr import current_alerts, current_flags
from hangwatch.sinks.catalogue.registry import Context, query
from hangwatch.sinks.sql import literal


def _evidence_field(name: str) -> str:
    return f"JSONExtractString(e, {literal(name)})"


def _optional_part(name: str, prefix: str, suffix: str = "") -> str:
    f = _evidence_field(name)
    return f"if({f} = '', '', concat({literal(prefix)}, {f}, {literal(suffix)}))"


def _evidence_summary(column: str, tz: str) -> str:
    """A flag's evidence (JSON list of calls, schemas.records.EvidenceItem) as one line:
    "05-03 14:02 hung_up @income_check A017 [v3-income]; ..." in local time."""
    return ("arrayStringConcat(arrayMap(e -> concat("
            f"formatDateTime(parseDateTimeBestEffort({_evidence_field('occurred_at')}), '%m-%d %H:%i', "
            f"{literal(tz)}), ' ', {_evidence_field('outcome')}, {_optional_part('hangup_stage', ' @')}, "
            f"{_optional_part('agent_id', ' ')}, {_optional_part('script_version', ' [', ']')}), "
            f"JSONExtractArrayRaw({column})), '; ')")


@query("top_flagged_borrowers", "Borrowers with open flags (raised or escalated), the most severe first, with "
       "the latest explanation and evidence (last call in the range, if one is given).", params.limit(20),
       time="range")
def top_flagged_borrowers(ctx: Context, limit: int) -> str:
    # Where two flags of a borrower share a last event time, flag_id picks one, so the answer
    # does not depend on part order.
    f = ctx.frame
    return f"""SELECT f_borrower_id AS borrower, count() AS open_flags,
       arrayElement(['low', 'medium', 'high'], max(toInt8(f_severity))) AS max_severity,
       arraySort(groupUniqArray(toString(f_rule_id))) AS rules,
       max(f_last_event_at) AS last_event,
       argMax(f_explanation, (f_last_event_at, flag_id)) AS explanation,
       argMax(f_evidence, (f_last_event_at, flag_id)) AS evidence,
       sum(f_evidence_count) AS evidence_calls
FROM {current_flags(ctx.db, f.lower("last_event_at"))}
WHERE f_status != 'resolved' AND {f.upper("f_last_event_at")}
GROUP BY f_borrower_id
ORDER BY max(toInt8(f_severity)) DESC, open_flags DESC, last_event DESC, borrower
LIMIT {int(limit)}"""


@query("open_flag_list", "Open borrower flags, one row per flag, most severe first, with readable evidence "
       "(last call in the range).", params.limit(50), time="range", since="24h")
def open_flag_list(ctx: Context, limit: int) -> str:
    f = ctx.frame
    return f"""
SELECT
  f_borrower_id AS borrower_id,
  f_rule_id AS rule_id,
  f_severity AS severity,
  f_status AS status,
  f_evidence_count AS calls,
  f_last_event_at AS last_event_at,
  f_explanation AS explanation,
  {_evidence_summary("f_evidence", ctx.tz)} AS evidence
FROM {current_flags(ctx.db, f.lower("last_event_at"))}
WHERE f_status != 'resolved' AND {f.upper("f_last_event_at")}
ORDER BY severity DESC, last_event_at DESC, borrower_id, rule_id
LIMIT {int(limit)}
""".strip()


@query("open_flag_count", "Number of open borrower flags (last call in the range).", time="range", since="24h")
def open_flag_count(ctx: Context) -> str:
    f = ctx.frame
    return f"""
SELECT count() AS open_flags
FROM {current_flags(ctx.db, f.lower("last_event_at"), ("status", "last_event_at"))}
WHERE f_status != 'resolved' AND {f.upper("f_last_event_at")}
""".strip()


@query("active_alerts", "Spike alerts currently firing (latest version per alert_id).", params.limit(100))
def active_alerts(ctx: Context, limit: int) -> str:
    return f"""SELECT alert_id, a_dimension AS dimension, a_value AS value, a_window_start AS window_start,
       a_window_end AS window_end, a_connected AS connected, a_hung_up AS hung_up,
       round(a_hangup_rate, 4) AS hangup_rate, round(a_wilson_low, 4) AS wilson_low,
       round(a_baseline_rate, 4) AS baseline_rate, a_explanation AS explanation, a_emitted_at AS fired_at
FROM {current_alerts(ctx.db)}
WHERE a_status = 'firing'
ORDER BY hangup_rate - baseline_rate DESC, alert_id
LIMIT {int(limit)}"""


@query("firing_alerts_in_range", "Spike alerts firing now whose window lies in the range, newest first.",
       params.limit(50), time="range", since="24h")
def firing_alerts_in_range(ctx: Context, limit: int) -> str:
    return f"""
SELECT
  a_dimension AS dimension,
  a_value AS value,
  a_window_start AS window_start,
  a_hangup_rate AS hangup_rate,
  a_wilson_low AS wilson_low,
  a_baseline_rate AS baseline_rate,
  a_connected AS connected,
  a_explanation AS explanation
FROM {current_alerts(ctx.db)}
WHERE {ctx.frame.time_filter("a_window_start")} AND a_status = 'firing'
ORDER BY window_start DESC, dimension, value
LIMIT {int(limit)}
""".strip()


@query("firing_alert_count", "Number of spike alerts firing now whose window lies in the range.", time="range",
       since="24h")
def firing_alert_count(ctx: Context) -> str:
    return f"""
SELECT count() AS active_alerts
FROM {current_alerts(ctx.db, ("status", "window_start"))}
WHERE {ctx.frame.time_filter("a_window_start")} AND a_status = 'firing'
""".strip()
