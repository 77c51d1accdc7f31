"""Queries for the review list (`hangwatch export flags`) and the report's comparison and flag
trend: flags with their evidence arrays, flags raised per interval, and one period's counts
with all four rates."""

from __future__ import annotations

from hangwatch.sinks.catalogue import params
from hangwatch.sinks.catalogue.expr import EVIDENCE_ARRAYS, FLAG_COLUMNS, current_flags
from hangwatch.sinks.catalogue.registry import Context, Param, query
from hangwatch.sinks.catalogue.rollup import (
    CONNECTED,
    CONTACT_RATE,
    DECLINE_RATE,
    HANGUP_RATE,
    REFUSAL_RATE,
    rollup_rows,
)

_EVIDENCE = (*EVIDENCE_ARRAYS, "evidence_channel")
_STATUSES = {"open": "f_status != 'resolved'", "all": "1=1"}


# BorrowerFlag v2's suggestion (migration 0011; '' and empty arrays on older rows).
_NEXT_ACTION = ("next_action", "next_action_param_names", "next_action_param_values")


@query("flag_review_list", "Borrower flags with the facts of their evidence (one array per field), for the "
       "review / re-dial list: open ones (status=open) or all, last call in the range, most severe first.",
       params.limit(10_000), Param("status", "open", "open or all flags", str, lambda ctx: tuple(_STATUSES)),
       time="range", since="24h")
def flag_review_list(ctx: Context, limit: int, status: str) -> str:
    f = ctx.frame
    columns = (*FLAG_COLUMNS, "rule_version", "first_event_at", *_EVIDENCE, *_NEXT_ACTION)
    arrays = ",\n  ".join(f"f_{c} AS ev_{c.removeprefix('evidence_')}" for c in _EVIDENCE)
    return f"""
SELECT
  flag_id,
  f_borrower_id AS borrower_id,
  f_loan_id AS loan_id,
  f_rule_id AS rule_id,
  f_rule_version AS rule_version,
  f_severity AS severity,
  f_status AS status,
  f_evidence_count AS calls,
  f_first_event_at AS first_event_at,
  f_last_event_at AS last_event_at,
  f_explanation AS explanation,
  f_evidence AS evidence,
  f_next_action AS next_action,
  f_next_action_param_names AS next_action_param_names,
  f_next_action_param_values AS next_action_param_values,
  {arrays}
FROM {current_flags(ctx.db, f.lower("last_event_at"), columns)}
WHERE {_STATUSES[status]} AND {f.upper("f_last_event_at")}
ORDER BY severity DESC, last_event_at DESC, borrower_id, rule_id
LIMIT {int(limit)}
""".strip()


@query("flag_trend", "Borrower flags raised and escalated per interval and rule (by the time of the call that "
       "raised or escalated them).", time="range", since="7d")
def flag_trend(ctx: Context) -> str:
    return f"""
SELECT
  {ctx.frame.bucket("last_event_at")} AS time,
  rule_id,
  uniqExactIf(flag_id, status = 'raised') AS raised,
  uniqExactIf(flag_id, status = 'escalated') AS escalated
FROM {ctx.db}.borrower_flags
WHERE {ctx.frame.time_filter("last_event_at")} AND status IN ('raised', 'escalated')
GROUP BY time, rule_id
ORDER BY time, rule_id
""".strip()


@query("period_summary", "Attempts, connected, hung up, declined and refused calls over the range, with the four "
       "rates (the report's comparison of two periods).", time="range", since="24h")
def period_summary(ctx: Context) -> str:
    return f"""
SELECT
  sum(c_attempts) AS attempts,
  {CONNECTED} AS connected,
  sum(c_hung_up) AS hung_up,
  sum(c_declined) AS declined,
  sum(c_refused) AS refused,
  {HANGUP_RATE} AS hangup_rate,
  {DECLINE_RATE} AS decline_rate,
  {REFUSAL_RATE} AS refusal_rate,
  {CONTACT_RATE} AS contact_rate
FROM {rollup_rows(ctx)}
""".strip()
