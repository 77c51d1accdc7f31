"""Queries over the stored calls (call_events FINAL: one row per event_id): the live
dashboard's rates and breakdowns, the report's tables and the hang-up spike alert rule.
Every rate comes with the counts it was derived from: nobody should read a rate from 3 calls."""

from __future__ import annotations

from typing import Final

from hangwatch.schemas.call_outcome import CONNECTED_OUTCOMES
from hangwatch.sinks.catalogue import params
from hangwatch.sinks.catalogue.expr import (
    CONNECTED,
    CONTACT_RATE,
    DECLINE_RATE,
    HANGUP_RATE,
    REFUSAL_RATE,
    STAGE_ARRAY,
    outcome_list,
)
from hangwatch.sinks.catalogue.registry import Context, Param, query
from hangwatch.sinks.sql import literal

# The dashboards' template variables: call_events columns a panel can be filtered on.
VARIABLES: Final = ("branch", "campaign", "channel", "script_version")

# Comparison dimensions: name -> SQL expression giving a readable value. Nullable columns
# show the records' "(none)" (schemas.records.NONE_VALUE) instead of NULL.
COMPARISONS: Final = {
    "script_version": "ifNull(script_version, '(none)')",
    "channel": "toString(channel)",
    "credit_grade": "ifNull(credit_grade, '(none)')",
    "pre_notified": "if(pre_notified = 1, 'pre-notified', 'not notified')",
    "first_time_borrower": ("multiIf(first_time_borrower IS NULL, '(none)', first_time_borrower = 1, "
                            "'first-time', 'repeat')"),
}


# Sample sizes and the two headline rates, as every summary shows them.
_HEADLINE: Final = f"""count() AS attempts,
  {CONNECTED} AS connected,
  {HANGUP_RATE} AS hangup_rate,
  {DECLINE_RATE} AS decline_rate"""


def _filters(ctx: Context) -> str:
    """One filter per dashboard variable (all values when none is selected)."""
    return " AND ".join(ctx.frame.any_of(v, v) for v in VARIABLES)


def _where(ctx: Context, extra: str = "") -> str:
    where = f"{ctx.frame.time_filter('occurred_at')} AND {_filters(ctx)}"
    return f"{where} AND {extra}" if extra else where


@query("variable_values", "Distinct values of a dashboard variable seen in the time range.",
       Param("variable", "branch", "a dashboard variable", str, lambda ctx: VARIABLES), time="range", since="6h")
def variable_values(ctx: Context, variable: str) -> str:
    # toString: channel is an Enum8 and script_version is Nullable; the value is what the
    # panels' `column IN (...)` filters compare with.
    return (f"SELECT DISTINCT toString({variable}) AS value FROM {ctx.db}.call_events "
            f"WHERE {ctx.frame.time_filter('occurred_at')} AND {variable} IS NOT NULL ORDER BY value")


@query("live_summary", "Attempts, connected calls, hang-up and decline rate over the range.", time="range",
       since="24h")
def live_summary(ctx: Context) -> str:
    return f"""
SELECT
  {_HEADLINE}
FROM {ctx.db}.call_events FINAL
WHERE {_where(ctx)}
""".strip()


@query("rates_over_time", "Hang-up, decline, refusal and contact rate per interval.", time="range", since="6h")
def rates_over_time(ctx: Context) -> str:
    return f"""
SELECT
  {ctx.frame.bucket("occurred_at")} AS time,
  {HANGUP_RATE} AS `hang-up rate`,
  {DECLINE_RATE} AS `decline rate`,
  {REFUSAL_RATE} AS `refusal rate`,
  {CONTACT_RATE} AS `contact rate`
FROM {ctx.db}.call_events FINAL
WHERE {_where(ctx)}
GROUP BY time
ORDER BY time
""".strip()


# Long format (time, branch, value): Grafana turns it into one series per branch.
@query("hangup_rate_by_branch", "Hang-up rate per branch and interval.", time="range", since="6h")
def hangup_rate_by_branch(ctx: Context) -> str:
    return f"""
SELECT
  {ctx.frame.bucket("occurred_at")} AS time,
  branch,
  {HANGUP_RATE} AS hangup_rate
FROM {ctx.db}.call_events FINAL
WHERE {_where(ctx)}
GROUP BY time, branch
ORDER BY time, branch
""".strip()


def _hour_columns(tz: str) -> str:
    connected = outcome_list(CONNECTED_OUTCOMES)
    cols = []
    for h in range(24):
        hour = f"toHour(occurred_at, {literal(tz)}) = {h}"
        cols.append(f"  countIf(outcome = 'hung_up' AND {hour}) / "
                    f"nullIf(countIf(outcome IN {connected} AND {hour}), 0) AS `{h:02d}`")
    return ",\n".join(cols)


# Branch x hour of day (local time) as a pivot: one row per branch, one column per hour; a
# colour-coded table is the heatmap Grafana's heatmap panel cannot draw for a categorical y
# axis and a non-time x axis.
@query("branch_hour_heatmap", "Hang-up rate by branch (rows) and local hour of day (columns).", time="range",
       since="7d")
def branch_hour_heatmap(ctx: Context) -> str:
    return f"""
SELECT
  branch,
  {CONNECTED} AS connected,
{_hour_columns(ctx.tz)}
FROM {ctx.db}.call_events FINAL
WHERE {_where(ctx)}
GROUP BY branch
ORDER BY branch
""".strip()


@query("comparison", "Rates by one factor (script version, channel, ...), each with its sample sizes.",
       Param("factor", "script_version", "the factor to compare", str, lambda ctx: tuple(COMPARISONS)),
       time="range", since="24h")
def comparison(ctx: Context, factor: str) -> str:
    return f"""
SELECT
  {COMPARISONS[factor]} AS {factor},
  {_HEADLINE},
  {REFUSAL_RATE} AS refusal_rate,
  {CONTACT_RATE} AS contact_rate
FROM {ctx.db}.call_events FINAL
WHERE {_where(ctx)}
GROUP BY {factor}
ORDER BY {factor}
""".strip()


# Where in the script borrowers drop out, in script order.
@query("hangup_stage_breakdown", "Hang-ups and refusals by script stage, in script order.", time="range",
       since="24h")
def hangup_stage_breakdown(ctx: Context) -> str:
    return f"""
SELECT
  hangup_stage AS stage,
  countIf(outcome = 'hung_up') AS hung_up,
  countIf(outcome = 'refused') AS refused
FROM {ctx.db}.call_events FINAL
WHERE {_where(ctx, "outcome IN ('hung_up', 'refused') AND hangup_stage IS NOT NULL")}
GROUP BY stage
ORDER BY indexOf({STAGE_ARRAY}, stage), stage
""".strip()


@query("top_agents", "Agents with the highest hang-up rate (at least alerts.min_connected connected calls).",
       params.limit(15), time="range", since="24h")
def top_agents(ctx: Context, limit: int) -> str:
    return f"""
SELECT
  agent_id,
  branch,
  count() AS attempts,
  {CONNECTED} AS connected,
  {HANGUP_RATE} AS hangup_rate
FROM {ctx.db}.call_events FINAL
WHERE {_where(ctx, "agent_id IS NOT NULL")}
GROUP BY agent_id, branch
HAVING connected >= {int(ctx.min_connected)}
ORDER BY hangup_rate DESC, connected DESC
LIMIT {int(limit)}
""".strip()


@query("branch_rates", "Attempts, connected calls, hang-up and decline rate per branch.", time="range",
       since="24h")
def branch_rates(ctx: Context) -> str:
    return f"""
SELECT
  branch,
  {_HEADLINE}
FROM {ctx.db}.call_events FINAL
WHERE {_where(ctx)}
GROUP BY branch
ORDER BY hangup_rate DESC, branch
""".strip()


@query("events_per_minute", "Distinct events per minute of event time.", time="range", since="1h")
def events_per_minute(ctx: Context) -> str:
    return f"""SELECT toStartOfMinute(occurred_at) AS minute, count() AS events,
       countIf(outcome = 'hung_up') AS hung_up, countIf(outcome = 'declined') AS declined
FROM {ctx.db}.call_events FINAL
WHERE {ctx.frame.time_filter("occurred_at")}
GROUP BY minute
ORDER BY minute"""


# Alert rule: one row per branch with enough connected calls. Grafana alerts on each row
# separately (labels from the string column), so each branch is its own alert instance.
@query("hangup_spike_by_branch", "Hang-up rate per branch with at least alerts.min_connected connected calls "
       "(the spike alert rule).", time="range", since="5m")
def hangup_spike_by_branch(ctx: Context) -> str:
    return f"""
SELECT
  branch,
  {HANGUP_RATE} AS hangup_rate
FROM {ctx.db}.call_events FINAL
WHERE {ctx.frame.time_filter("occurred_at")}
GROUP BY branch
HAVING {CONNECTED} >= {int(ctx.min_connected)}
ORDER BY branch
""".strip()
