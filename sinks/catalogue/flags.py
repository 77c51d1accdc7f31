"""Borrower flags and spike alerts: always their current state, read one way (argMax over
the version, expr.current_flags / current_alerts), for the CLI, the panels and the report."""

from __future__ import annotations

from collections.abc import Mapping

from hangwatch.sinks.catalogue import params
from hangwatch.sinks.catalogue.expr import (
    EVIDENCE_ARRAYS,
    FLAG_COLUMNS,
    FLAG_VERSION,
    current_alerts,
    current_flags,
)
from hangwatch.sinks.catalogue.registry import Context, query
from hangwatch.sinks.sql import literal


def _evidence_summary(tz: str) -> str:
    """A flag's evidence as one line, "05-03 14:02 hung_up @income_check A017 [v3-income]; ..."
    in local time, from the evidence arrays (migration 0008) with array functions every
    ClickHouse has; rows stored before 0008 have empty arrays and show the JSON as stored."""
    def opt(x: str, prefix: str, suffix: str = "") -> str:
        return f"if({x} = '', '', concat({literal(prefix)}, {x}, {literal(suffix)}))"

    line = (f"concat(substring(toString(at, {literal(tz)}), 6, 11), ' ', o, {opt('st', ' @')}, {opt('ag', ' ')}, "
            f"{opt('sv', ' [', ']')})")
    arrays = ", ".join(f"f_{c}" for c in EVIDENCE_ARRAYS)
    return (f"if(length(f_evidence_outcome) > 0, "
            f"arrayStringConcat(arrayMap((at, o, st, ag, sv) -> {line}, {arrays}), '; '), f_evidence)")


# argMax by (last event, flag_id) as one string: 18.16 takes no tuple as argMax's second
# argument. The epoch plus 10^10 always has 11 digits, so the text sorts as the time does.
_LATEST_FLAG = "concat(toString(toUInt64(f_last_event_at) + 10000000000), flag_id)"


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
       argMax(f_explanation, {_LATEST_FLAG}) AS explanation,
       argMax(f_evidence, {_LATEST_FLAG}) AS evidence,
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
  {_evidence_summary(ctx.tz)} AS evidence
FROM {current_flags(ctx.db, f.lower("last_event_at"), (*FLAG_COLUMNS, *EVIDENCE_ARRAYS))}
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
  a_window_size_s AS window_size_s,
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


# Alert history: hangup_alerts keeps one row per (alert_id, status) (migration 0009), so the
# firing record's numbers stay after the alert resolves. Grouped by alert_id, each value taken
# from the highest version of its status (exact before merges, no FINAL); the firing numbers
# are NULL for an alert whose firing row was merged away before 0009. Inner aliases are
# prefixed: an alias named like a column used inside an aggregate breaks 18.16.
_FIRING = ("connected", "hung_up", "hangup_rate", "wilson_low", "wilson_high", "baseline_rate", "baseline_connected",
           "emitted_at")


@query("alert_history", "Spike alerts whose window lies in the range, with the numbers they fired with (rate, "
       "counts, Wilson bounds, baseline) and when they resolved, newest first.", params.limit(100), time="range",
       since="7d")
def alert_history(ctx: Context, limit: int) -> str:
    firing = ",\n           ".join(
        f"if(countIf(status = 'firing') > 0, argMaxIf({c}, version, status = 'firing'), NULL) AS h_{c}"
        for c in _FIRING)
    return f"""SELECT alert_id, h_dimension AS dimension, h_value AS value, h_window_start AS window_start,
       h_status AS status, h_emitted_at AS fired_at, h_resolved_at AS resolved_at, h_connected AS connected,
       h_hung_up AS hung_up, round(h_hangup_rate, 4) AS hangup_rate, round(h_wilson_low, 4) AS wilson_low,
       round(h_wilson_high, 4) AS wilson_high, round(h_baseline_rate, 4) AS baseline_rate,
       h_baseline_connected AS baseline_connected, h_explanation AS explanation
FROM
(
    SELECT alert_id,
           argMax(dimension, version) AS h_dimension,
           argMax(value, version) AS h_value,
           argMax(window_start, version) AS h_window_start,
           argMax(status, version) AS h_status,
           if(countIf(status = 'firing') > 0, argMaxIf(explanation, version, status = 'firing'),
              argMax(explanation, version)) AS h_explanation,
           if(countIf(status = 'resolved') > 0, argMaxIf(emitted_at, version, status = 'resolved'), NULL)
               AS h_resolved_at,
           {firing}
    FROM {ctx.db}.hangup_alerts
    WHERE {ctx.frame.time_filter("window_start")}
    GROUP BY alert_id
)
ORDER BY window_start DESC, alert_id
LIMIT {int(limit)}"""


# --- Grafana alert rules that notify people (docs/alerting.md) ---------------------------
# One row per spike alert / escalated flag, its identity and the numbers of the record that
# raised it as text (Grafana turns every string column into a label, and labels taken from
# that one record never change, so a firing instance and its resolution are the same alert),
# and one number: 1 while the stream says firing / escalated, 0 once it resolved it (Grafana
# then sends the resolved notice). Times are local (ctx.tz), rates in percent.

def _pct(x: str) -> str:
    return f"concat(toString(round({x} * 100, 1)), '%')"


def _named(value: str, mapping: Mapping[str, str]) -> str:
    """`value` replaced by its shown name in `mapping` (the code itself when it has none)."""
    if not mapping:
        return value
    codes = ", ".join(literal(c) for c in mapping)
    shown = ", ".join(literal(n) for n in mapping.values())
    return f"transform({value}, [{codes}], [{shown}], {value})"


def _display(dimension: str, value: str, names: Mapping[str, Mapping[str, str]]) -> str:
    """The shown name of `value` for its `dimension` (ctx.display_names), else the code itself.
    transform() and multiIf() run on every supported server."""
    cases = [f"{dimension} = {literal(dim)}, {_named(value, mapping)}" for dim, mapping in sorted(names.items())
             if mapping and dim != "dimension"]
    return f"multiIf({', '.join(cases)}, {value})" if cases else value


def _local_minute(x: str, tz: str) -> str:
    return f"substring(toString({x}, {literal(tz)}), 1, 16)"


@query("spike_alert_states", "Spike alerts whose window lies in the range, one row per alert_id with the numbers "
       "it fired with as text and `firing` (1 firing, 0 resolved): the spike-alert notification rule.",
       time="range", since="7d")
def spike_alert_states(ctx: Context) -> str:
    tz = ctx.tz
    fired = ",\n           ".join(f"argMaxIf({c}, version, status = 'firing') AS s_{c}" for c in (
        "dimension", "value", "window_start", "window_end", "connected", "hung_up", "hangup_rate", "wilson_low",
        "baseline_rate", "baseline_connected"))
    return f"""
SELECT
  alert_id,
  s_dimension AS dimension,
  s_value AS value,
  {_display("s_dimension", "s_value", ctx.display_names)} AS value_name,
  {_named("s_dimension", ctx.display_names.get("dimension", {}))} AS dimension_name,
  concat({_local_minute("s_window_start", tz)}, '-', substring(toString(s_window_end, {literal(tz)}), 12, 5))
      AS window_local,
  toString(toUInt64(s_window_start) * 1000 - 3600000) AS from_ms,
  toString(toUInt64(s_window_end) * 1000 + 3600000) AS to_ms,
  {_pct("s_hangup_rate")} AS hangup_rate,
  {_pct("s_wilson_low")} AS wilson_low,
  {_pct("s_baseline_rate")} AS baseline_rate,
  toString(s_connected) AS connected,
  toString(s_hung_up) AS hung_up,
  toString(s_baseline_connected) AS baseline_connected,
  toUInt8(s_status = 'firing') AS firing
FROM
(
    SELECT alert_id,
           argMax(status, version) AS s_status,
           {fired}
    FROM {ctx.db}.hangup_alerts
    WHERE {ctx.frame.time_filter("window_start")}
    GROUP BY alert_id
    HAVING countIf(status = 'firing') > 0
)
ORDER BY alert_id
""".strip()


@query("escalated_flag_states", "Borrower flags escalated in the range, one row per flag with the escalation's "
       "facts as text and `escalated` (1 still escalated, 0 resolved since): the escalated-flag notification rule.",
       time="range", since="24h")
def escalated_flag_states(ctx: Context) -> str:
    tz = ctx.tz
    esc = ",\n           ".join(f"argMaxIf({c}, emitted_at_ms, status = 'escalated') AS e_{c}" for c in (
        "borrower_id", "rule_id", "severity", "evidence_count", "last_event_at", "emitted_at"))
    return f"""
SELECT
  flag_id,
  e_borrower_id AS borrower_id,
  toString(e_rule_id) AS rule_id,
  toString(e_severity) AS flag_severity,
  toString(e_evidence_count) AS calls,
  {_local_minute("e_last_event_at", tz)} AS last_call,
  {_local_minute("e_emitted_at", tz)} AS escalated_at,
  toUInt8(e_status = 'escalated') AS escalated
FROM
(
    SELECT flag_id,
           argMax(status, {FLAG_VERSION}) AS e_status,
           {esc}
    FROM {ctx.db}.borrower_flags
    WHERE flag_id IN (SELECT flag_id FROM {ctx.db}.borrower_flags
                      WHERE status = 'escalated' AND {ctx.frame.time_filter("emitted_at")})
    GROUP BY flag_id
)
ORDER BY flag_id
""".strip()
