"""Pipeline health: dead letters, freshness, late events, sink flushes, and the two health
alert rules. Dead letters are one row per source position, however often delivered."""

from __future__ import annotations

from hangwatch.sinks.catalogue import params
from hangwatch.sinks.catalogue.expr import dead_letters
from hangwatch.sinks.catalogue.registry import Context, Param, per_interval, query
from hangwatch.sinks.sql import literal


@query("dlq_summary", "Dead letters per source topic and error kind.", time="range", since="7d")
def dlq_summary(ctx: Context) -> str:
    return f"""SELECT source_topic, d_error_kind AS error_kind, count() AS messages,
       min(d_received_at) AS first_seen, max(d_received_at) AS last_seen,
       argMax(d_error, d_received_at) AS latest_error
FROM {dead_letters(ctx.db)}
WHERE {ctx.frame.time_filter("d_received_at")}
GROUP BY source_topic, d_error_kind
ORDER BY messages DESC, source_topic, error_kind"""


@query("dlq_latest", "The latest dead letters with their errors.", params.limit(20))
def dlq_latest(ctx: Context, limit: int) -> str:
    return f"""SELECT d_received_at AS received_at, source_topic, source_partition, source_offset,
       d_error_kind AS error_kind, d_error_field AS error_field, d_error AS error, d_worker AS worker
FROM {dead_letters(ctx.db)}
ORDER BY received_at DESC, source_topic, source_partition, source_offset DESC
LIMIT {int(limit)}"""


HMAC = Param("hmac", "", "the HMAC-SHA256 (hex) of the number, keyed with privacy.hash_key (docs/privacy.md)", str)


@query("dlq_personal_data", "Dead letters that held a phone or ID number with this keyed hash (a producer "
       "finding its record; the number itself is masked).", HMAC, params.limit(100), time="range", since="90d")
def dlq_personal_data(ctx: Context, hmac: str, limit: int) -> str:
    return f"""SELECT received_at, source_topic, source_partition, source_offset, error_field, personal_data_types,
       personal_data_fields
FROM {ctx.db}.dead_letters
WHERE has(personal_data_hmacs, {literal(hmac.strip().lower())}) AND {ctx.frame.time_filter("received_at")}
ORDER BY received_at DESC, source_partition, source_offset
LIMIT 1 BY source_topic, source_partition, source_offset
LIMIT {int(limit)}"""


@query("dlq_per_s", "Dead letters per second, per interval of arrival.", time="range", since="3h")
def dlq_per_s(ctx: Context) -> str:
    f = ctx.frame
    return per_interval(ctx, "received_at", f"count() / {f.interval_s()} AS `dead letters /s`",
                        f"{ctx.db}.dead_letters FINAL", f.time_filter("received_at"))


# Also the "dead letters growing" alert rule.
@query("dlq_count", "Dead letters that arrived in the range.", time="range", since="10m")
def dlq_count(ctx: Context) -> str:
    return f"""
SELECT count() AS dead_letters
FROM {ctx.db}.dead_letters FINAL
WHERE {ctx.frame.time_filter("received_at")}
""".strip()


@query("dlq_by_kind", "Dead letters per error kind in the range.", time="range", since="24h")
def dlq_by_kind(ctx: Context) -> str:
    return f"""
SELECT error_kind, count() AS dead_letters
FROM {ctx.db}.dead_letters FINAL
WHERE {ctx.frame.time_filter("received_at")}
GROUP BY error_kind
ORDER BY dead_letters DESC, error_kind
""".strip()


@query("dlq_in_range", "The newest dead letters of the range with the error and where they came from.",
       params.limit(50), time="range", since="24h")
def dlq_in_range(ctx: Context, limit: int) -> str:
    return f"""
SELECT received_at, error_kind, error_field, error, source_topic, source_partition, source_offset, worker
FROM {ctx.db}.dead_letters FINAL
WHERE {ctx.frame.time_filter("received_at")}
ORDER BY received_at DESC, source_partition, source_offset DESC
LIMIT {int(limit)}
""".strip()


# Freshness and the "pipeline stalled" rule read the sink's flush log (sink_batches: a row
# per table per flush, with the newest event time of the flush, migration 0010), never
# call_events: the answer costs the same at a thousand events or at a hundred million.
_STORED_EVENTS = "`table` = 'call_events' AND rows > rejected"


@query("freshness", "Pipeline freshness: now minus the latest event time stored, and the latest write per table "
       "(from the sink's flush log).")
def freshness(ctx: Context) -> str:
    # An empty log gives max() = 0; nullIf turns that into "no data" instead of 1970.
    newest_ms = f"nullIf(maxIf(newest_event_ms, {_STORED_EVENTS}), 0)"
    return f"""SELECT toDateTime(intDiv({newest_ms}, 1000), 'UTC') AS latest_event_at,
       toInt64(now()) - toInt64(intDiv({newest_ms}, 1000)) AS event_lag_s,
       nullIf(maxIf(flushed_at, {_STORED_EVENTS}), toDateTime(0, 'UTC')) AS events_stored_at,
       nullIf(maxIf(flushed_at, `table` = 'hangup_rates' AND rows > rejected), toDateTime(0, 'UTC'))
           AS rates_stored_at,
       nullIf(max(flushed_at), toDateTime(0, 'UTC')) AS last_flush_at,
       now() AS now
FROM {ctx.db}.sink_batches"""


# Freshness is about now, not about a selected range: how long ago the newest call happened
# (event time) and how long ago the newest row was stored (the sink), over the last day of
# the flush log (one day partition or two).
@query("freshness_age", "Seconds since the newest stored call happened and since the newest row was stored.")
def freshness_age(ctx: Context) -> str:
    return f"""
SELECT
  dateDiff('second', toDateTime(intDiv(max(newest_event_ms), 1000), 'UTC'), now()) AS `event freshness`,
  dateDiff('second', max(flushed_at), now()) AS `ingest freshness`
FROM {ctx.db}.sink_batches
WHERE flushed_at >= now() - INTERVAL 1 DAY AND {_STORED_EVENTS}
""".strip()


# Rows stored into call_events, by the time they were stored, from the flush log (redelivered
# copies are rows the sink wrote too; the gap to what the stream counted shows them).
@query("events_stored_per_s", "Rows stored into call_events per second, per interval of storage time.",
       time="range", since="3h")
def events_stored_per_s(ctx: Context) -> str:
    f = ctx.frame
    return per_interval(ctx, "flushed_at", f"sum(rows - rejected) / {f.interval_s()} AS `rows stored /s`",
                        f"{ctx.db}.sink_batches", f"{f.time_filter('flushed_at')} AND `table` = 'call_events'")


# Late: calls stored long after they happened (beyond the worker's grace), by storage time:
# the sink counts them per flush (sink_batches.late_rows, migration 0014).
@query("late_events", "Calls stored more than worker.grace_s after they happened, per interval.", time="range",
       since="24h")
def late_events(ctx: Context) -> str:
    late = f"sum(late_rows) AS `late calls (> {int(ctx.grace_s)} s)`"
    return per_interval(ctx, "flushed_at", late, f"{ctx.db}.sink_batches",
                        f"{ctx.frame.time_filter('flushed_at')} AND `table` = 'call_events'")


# Also the "pipeline stalled" alert rule: the last flush that stored call_events rows, from
# the flush log. max() over no rows is the epoch, so "nothing stored in the range" is a huge
# age: the rule fires.
@query("seconds_since_stored", "Seconds since the newest row of call_events was stored (within the range).",
       time="range", since="1h")
def seconds_since_stored(ctx: Context) -> str:
    return f"""
SELECT dateDiff('second', max(flushed_at), now()) AS seconds_since_last_stored
FROM {ctx.db}.sink_batches
WHERE {ctx.frame.time_filter("flushed_at")} AND {_STORED_EVENTS}
""".strip()


@query("sink_batches", "Sink flushes per table: batches, rows, batch sizes and durations.", time="range",
       since="1h")
def sink_batches(ctx: Context) -> str:
    return f"""SELECT table, count() AS batches, sum(rows) AS total_rows, sum(rejected) AS total_rejected,
       round(avg(rows), 1) AS avg_rows, max(rows) AS max_rows, round(avg(seconds), 4) AS avg_seconds,
       max(flushed_at) AS last_flush
FROM {ctx.db}.sink_batches
WHERE {ctx.frame.time_filter("flushed_at")}
GROUP BY table
ORDER BY table"""


def _per_table(ctx: Context, aggregate: str, alias: str) -> str:
    f = ctx.frame
    return f"""
SELECT
  {f.bucket("flushed_at")} AS time,
  `table`,
  {aggregate} AS {alias}
FROM {ctx.db}.sink_batches
WHERE {f.time_filter("flushed_at")}
GROUP BY time, `table`
ORDER BY time, `table`
""".strip()


@query("sink_batch_sizes", "Average rows per INSERT by table, per interval.", time="range", since="3h")
def sink_batch_sizes(ctx: Context) -> str:
    return _per_table(ctx, "avg(rows)", "rows_per_batch")


@query("sink_flush_seconds", "Slowest INSERT by table, per interval.", time="range", since="3h")
def sink_flush_seconds(ctx: Context) -> str:
    return _per_table(ctx, "max(seconds)", "max_flush_seconds")
