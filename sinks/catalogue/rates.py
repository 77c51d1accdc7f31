"""Queries over the stream's window counts (hangup_rates): the highest version of each window
cell through expr.current_cells (argMax over the version, no FINAL); rates derived from summed
counts, never averaged."""

from __future__ import annotations

from hangwatch.sinks.catalogue import params
from hangwatch.sinks.catalogue.expr import COUNT_COLUMNS, ROUNDED_RATES, SUM_COUNTS, current_cells
from hangwatch.sinks.catalogue.registry import Context, per_interval, query
from hangwatch.sinks.sql import literal

_COUNTS = ", ".join(f"c_{c} AS {c}" for c in COUNT_COLUMNS)


@query("current_rates", "Counts and rates of the latest window of one size, per dimension value.",
       params.window_size(300), params.dimension(None))
def current_rates(ctx: Context, window_size_s: int, dimension: str | None) -> str:
    db = ctx.db
    dim = f" AND dimension = {literal(dimension)}" if dimension else ""
    size = literal(int(window_size_s))
    latest = f"(SELECT max(window_start) FROM {db}.hangup_rates WHERE window_size_s = {size})"
    cells = current_cells(db, f"window_size_s = {size}{dim} AND window_start = {latest}",
                          (*COUNT_COLUMNS, "final", "version", "source"))
    return f"""SELECT dimension, value, window_start, {_COUNTS},
       {ROUNDED_RATES}, c_final AS final, c_version AS version, c_source AS source
FROM {cells}
ORDER BY dimension, connected DESC, value"""


@query("rolling_rates", "Rates over the last N minutes per value of a dimension, summed from the 60 s windows "
       "(ending at the latest stored window, or at --until).", params.MINUTES, params.dimension("branch"),
       time="end")
def rolling_rates(ctx: Context, minutes: int, dimension: str) -> str:
    db = ctx.db
    end = ctx.frame.to_time(f"(SELECT max(window_end) FROM {db}.hangup_rates WHERE window_size_s = 60)")
    where = (f"window_size_s = 60 AND dimension = {literal(dimension)} "
             f"AND window_start >= {end} - {int(minutes) * 60} AND window_start < {end}")
    return f"""SELECT value, attempts, connected, hung_up, declined, refused, {ROUNDED_RATES}, from_time, to_time
FROM
(
    SELECT value, {SUM_COUNTS}, min(window_start) AS from_time, max(c_window_end) AS to_time
    FROM {current_cells(db, where, (*COUNT_COLUMNS, "window_end"))}
    GROUP BY value
)
ORDER BY connected DESC, value"""


@query("rates_timeseries", "Counts and rates per window of one dimension value over time (for charts).",
       params.window_size(60), params.dimension("all"), params.VALUE, time="range", since="6h")
def rates_timeseries(ctx: Context, window_size_s: int, dimension: str, value: str) -> str:
    where = (f"window_size_s = {literal(int(window_size_s))} AND dimension = {literal(dimension)} "
             f"AND value = {literal(value)} AND {ctx.frame.time_filter('window_start')}")
    return f"""SELECT window_start, {_COUNTS}, {ROUNDED_RATES}, c_final AS final
FROM {current_cells(ctx.db, where, (*COUNT_COLUMNS, "final"))}
ORDER BY window_start"""


# The stream's own 60-second windows summed over the minutes before the end of the range
# (on a live dashboard the end is "now"): the rolling view the risk team watches, and a
# cross-check of the stream against call_events. Sums inside, rates outside: 18.16 resolves a
# column inside an aggregate to a same-named output alias (code 184), so the two never meet.
@query("rolling_by_branch", "Last N minutes by branch from the stream's 60 s windows, with sample sizes.",
       params.MINUTES, time="end")
def rolling_by_branch(ctx: Context, minutes: int) -> str:
    end = ctx.frame.to_time(f"(SELECT max(window_end) FROM {ctx.db}.hangup_rates WHERE window_size_s = 60)")
    where = (f"window_size_s = 60 AND dimension = 'branch' AND window_start >= {end} - INTERVAL {int(minutes)} MINUTE "
             f"AND window_start < {end} AND {ctx.frame.any_of('value', 'branch')}")
    return f"""
SELECT
  branch,
  attempts,
  connected,
  hung_up / nullIf(connected, 0) AS hangup_rate,
  declined / nullIf(attempts, 0) AS decline_rate
FROM
(
    SELECT value AS branch, {SUM_COUNTS}
    FROM {current_cells(ctx.db, where)}
    GROUP BY branch
)
ORDER BY hangup_rate DESC, branch
""".strip()


# What the stream counted: its 60-second "all" windows, by event time.
@query("events_in_per_s", "Events per second counted by the stream (its 60 s 'all' windows), per interval.",
       time="range", since="3h")
def events_in_per_s(ctx: Context) -> str:
    f = ctx.frame
    cells = current_cells(ctx.db, f"window_size_s = 60 AND dimension = 'all' AND {f.time_filter('window_start')}",
                          ("attempts",))
    return per_interval(ctx, "window_start", f"sum(c_attempts) / {f.interval_s()} AS `events in /s`", cells, "1=1")


# Window cells that reconcile rewrote from call_events (the stream missed or miscounted
# events, e.g. ones later than the grace), by storage time.
@query("reconciled_windows", "Window cells corrected by `hangwatch reconcile`, per interval of storage time.",
       time="range", since="24h")
def reconciled_windows(ctx: Context) -> str:
    return per_interval(ctx, "ingested_at", "count() AS `windows corrected by reconcile`", f"{ctx.db}.hangup_rates",
                        f"{ctx.frame.time_filter('ingested_at')} AND source = 'reconcile'")
