"""The live dashboard's rates and breakdowns, the report's tables and the hang-up spike alert
rule, read from the rollups (sinks.catalogue.rollup: whole days, hours and minutes kept by the
sink; never call_events, never FINAL). Every rate comes with the counts it was derived from:
nobody should read a rate from 3 calls. Counts are summed first and rates derived from the
sums; 18.16 resolves a column inside an aggregate to a same-named output alias (code 184), so
the rollup columns are c_<count> and the outputs their plain names."""

from __future__ import annotations

from typing import Final

from hangwatch.sinks.catalogue import params
from hangwatch.sinks.catalogue.expr import STAGE_ARRAY
from hangwatch.sinks.catalogue.registry import Context, Param, query
from hangwatch.sinks.catalogue.rollup import (
    CONNECTED,
    CONTACT_RATE,
    DECLINE_RATE,
    HANGUP_RATE,
    REFUSAL_RATE,
    compact_rows,
    rollup_rows,
    series_time,
    snapped_step,
)
from hangwatch.sinks.sql import literal

# The dashboards' template variables: rollup (and call_events) columns a panel can be filtered on.
VARIABLES: Final = ("branch", "campaign", "channel", "script_version")

# Comparison factors: name -> (rollup facet, SQL giving a readable value from its columns).
COMPARISONS: Final = {
    "script_version": ("all", "script_version"),
    "channel": ("all", "channel"),
    "credit_grade": ("profile", "credit_grade"),
    "pre_notified": ("profile", "if(pre_notified = 'true', 'pre-notified', 'not notified')"),
    "first_time_borrower": ("profile", "multiIf(first_time_borrower = '(none)', '(none)', "
                                       "first_time_borrower = 'true', 'first-time', 'repeat')"),
}

# Sample sizes and the two headline rates, as every summary shows them.
_HEADLINE: Final = f"""sum(c_attempts) AS attempts,
  {CONNECTED} AS connected,
  {HANGUP_RATE} AS hangup_rate,
  {DECLINE_RATE} AS decline_rate"""


def _filters(ctx: Context) -> str:
    """One filter per dashboard variable (all values when none is selected)."""
    return " AND ".join(ctx.frame.any_of(v, v) for v in VARIABLES)


@query("variable_values", "Distinct values of a dashboard variable seen in the time range.",
       Param("variable", "branch", "a dashboard variable", str, lambda ctx: VARIABLES), time="range", since="6h")
def variable_values(ctx: Context, variable: str) -> str:
    # The value is what the panels' `column IN (...)` filters compare with; calls without a
    # script version ('(none)') are not a choice, as before.
    return (f"SELECT DISTINCT {variable} AS value FROM {rollup_rows(ctx, columns=('attempts',))} "
            f"WHERE {variable} != '(none)' ORDER BY value")


@query("live_summary", "Attempts, connected calls, hang-up and decline rate over the range.", time="range",
       since="24h")
def live_summary(ctx: Context) -> str:
    return f"""
SELECT
  {_HEADLINE}
FROM {rollup_rows(ctx, where=_filters(ctx))}
""".strip()


_SERIES_COUNTS: Final = ("attempts", "connected", "hung_up", "declined", "refused")


@query("rates_over_time", "Hang-up, decline, refusal and contact rate per interval.", time="range", since="6h")
def rates_over_time(ctx: Context) -> str:
    step = snapped_step(ctx.frame.interval_s())
    return f"""
SELECT
  {series_time(ctx, step)} AS time,
  {HANGUP_RATE} AS `hang-up rate`,
  {DECLINE_RATE} AS `decline rate`,
  {REFUSAL_RATE} AS `refusal rate`,
  {CONTACT_RATE} AS `contact rate`
FROM {compact_rows(ctx, "all", _SERIES_COUNTS, VARIABLES, step=step)}
GROUP BY time
ORDER BY time
""".strip()


# Long format (time, branch, value): Grafana turns it into one series per branch.
@query("hangup_rate_by_branch", "Hang-up rate per branch and interval.", time="range", since="6h")
def hangup_rate_by_branch(ctx: Context) -> str:
    step = snapped_step(ctx.frame.interval_s())
    return f"""
SELECT
  {series_time(ctx, step)} AS time,
  branch,
  {HANGUP_RATE} AS hangup_rate
FROM {compact_rows(ctx, "branch", ("connected", "hung_up"), VARIABLES, step=step)}
GROUP BY time, branch
ORDER BY time, branch
""".strip()


def _hour_columns(tz: str) -> str:
    cols = []
    for h in range(24):
        hour = f"toHour(bucket_start, {literal(tz)}) = {h}"
        cols.append(f"  sumIf(c_hung_up, {hour}) / nullIf(sumIf(c_connected, {hour}), 0) AS `{h:02d}`")
    return ",\n".join(cols)


# Branch x hour of day (local time) as a pivot: one row per branch, one column per hour; a
# colour-coded table is the heatmap Grafana's heatmap panel cannot draw for a categorical y
# axis and a non-time x axis. Hours and minutes only (a day row has no hour of day).
@query("branch_hour_heatmap", "Hang-up rate by branch (rows) and local hour of day (columns).", time="range",
       since="7d")
def branch_hour_heatmap(ctx: Context) -> str:
    return f"""
SELECT
  branch,
  {CONNECTED} AS connected,
{_hour_columns(ctx.tz)}
FROM {compact_rows(ctx, "branch", ("connected", "hung_up"), VARIABLES, days=False)}
GROUP BY branch
ORDER BY branch
""".strip()


@query("comparison", "Rates by one factor (script version, channel, ...), each with its sample sizes.",
       Param("factor", "script_version", "the factor to compare", str, lambda ctx: tuple(COMPARISONS)),
       time="range", since="24h")
def comparison(ctx: Context, factor: str) -> str:
    _, value = COMPARISONS[factor]
    columns = ("attempts", "connected", "hung_up", "declined", "refused")
    counts = ", ".join(f"c_{c}" for c in columns)
    return f"""
SELECT
  {value} AS {factor},
  {_HEADLINE},
  {REFUSAL_RATE} AS refusal_rate,
  {CONTACT_RATE} AS contact_rate
FROM (SELECT value AS {factor}, {counts} FROM {compact_rows(ctx, factor, columns, VARIABLES)})
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
  sum(c_hung_up) AS hung_up,
  sum(c_refused) AS refused
FROM {rollup_rows(ctx, "stage", ("hung_up", "refused"), where=f"{_filters(ctx)} AND hangup_stage != '(none)'")}
GROUP BY stage
HAVING hung_up + refused > 0
ORDER BY indexOf({STAGE_ARRAY}, stage), stage
""".strip()


_AGENT_COUNTS: Final = ("attempts", "connected", "hung_up")


@query("top_agents", "Agents with the highest hang-up rate (at least alerts.min_connected connected calls).",
       params.limit(15), time="range", since="24h")
def top_agents(ctx: Context, limit: int) -> str:
    return f"""
SELECT
  value AS agent_id,
  branch,
  sum(c_attempts) AS attempts,
  {CONNECTED} AS connected,
  {HANGUP_RATE} AS hangup_rate
FROM {compact_rows(ctx, "agent", _AGENT_COUNTS, VARIABLES)}
WHERE agent_id != '(none)'
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
FROM {rollup_rows(ctx, where=_filters(ctx))}
GROUP BY branch
ORDER BY hangup_rate DESC, branch
""".strip()


@query("events_per_minute", "Distinct events per minute of event time.", time="range", since="1h")
def events_per_minute(ctx: Context) -> str:
    return f"""SELECT bucket_start AS minute, sum(c_attempts) AS events, sum(c_hung_up) AS hung_up,
       sum(c_declined) AS declined
FROM {compact_rows(ctx, "all", ("attempts", "hung_up", "declined"), (), step=str(60))}
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
FROM {rollup_rows(ctx, columns=("connected", "hung_up"))}
GROUP BY branch
HAVING {CONNECTED} >= {int(ctx.min_connected)}
ORDER BY branch
""".strip()
