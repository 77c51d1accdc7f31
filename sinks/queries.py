"""Every SQL statement a user sees (CLI, report, benchmarks; dashboards take theirs from here
too), in one place so that two views of the same number can never disagree.

Rules every query here follows:
- exact before merges: tables are read with FINAL (when the partition key is part of the
  deduplication key) or with argMax(..., version) grouped by the key;
- rates are derived from summed counts, never averaged;
- only SQL that runs on ClickHouse 18.16 and current versions alike (no window functions,
  toStartOfInterval, JSONExtract, WITH FILL; aliases never shadow a column inside an
  aggregate, which old servers reject);
- values are rendered as literals (sinks.sql.literal), times as toDateTime(epoch, 'UTC').
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from hangwatch.sinks.backends import Backend, Result
from hangwatch.sinks.sql import ident, literal

RATES = """if(connected > 0, round(hung_up / connected, 4), NULL) AS hangup_rate,
       if(attempts > 0, round(declined / attempts, 4), NULL) AS decline_rate,
       if(connected > 0, round(refused / connected, 4), NULL) AS refusal_rate,
       if(attempts > 0, round(connected / attempts, 4), NULL) AS contact_rate"""
_SUM_COUNTS = ("sum(attempts) AS attempts, sum(connected) AS connected, sum(hung_up) AS hung_up, "
               "sum(declined) AS declined, sum(refused) AS refused")


@dataclasses.dataclass(frozen=True, slots=True)
class Query:
    name: str
    description: str
    build: Callable[..., str]  # (db, **params) -> SQL
    defaults: dict[str, Any]


_QUERIES: dict[str, Query] = {}


def _query(name: str, description: str, **defaults: Any) -> Callable[[Callable[..., str]], Callable[..., str]]:
    def register(fn: Callable[..., str]) -> Callable[..., str]:
        _QUERIES[name] = Query(name, description, fn, defaults)
        return fn

    return register


def queries() -> dict[str, Query]:
    return dict(_QUERIES)


def render(name: str, db: str, **params: Any) -> str:
    q = _QUERIES[name]
    unknown = set(params) - set(q.defaults)
    if unknown:
        raise ValueError(f"query {name!r} has no parameters {sorted(unknown)}; it takes {sorted(q.defaults)}")
    return q.build(ident(db), **{**q.defaults, **{k: v for k, v in params.items() if v is not None}})


def run(backend: Backend, db: str, name: str, **params: Any) -> Result:
    return backend.query(render(name, db, **params))


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`15m`, `2h`, `7d`, `90s` before now, or an ISO 8601 time (UTC if it has no offset)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    now = now or datetime.now(tz=UTC)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
        return now - timedelta(**{unit: float(m.group(1))})
    dt = datetime.fromisoformat(text.strip())
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _ago(v: datetime | str) -> datetime:
    return v if isinstance(v, datetime) else parse_since(v)


# --- rates -------------------------------------------------------------------------------

@_query("current_rates", "Counts and rates of the latest window of one size, per dimension value.",
        window_size_s=300, dimension=None)
def current_rates(db: str, window_size_s: int, dimension: str | None) -> str:
    dim = f"\n  AND dimension = {literal(dimension)}" if dimension else ""
    size = literal(int(window_size_s))
    return f"""SELECT dimension, value, window_start, attempts, connected, hung_up, declined, refused,
       {RATES}, final, version, source
FROM {db}.hangup_rates FINAL
WHERE window_size_s = {size}{dim}
  AND window_start = (SELECT max(window_start) FROM {db}.hangup_rates WHERE window_size_s = {size})
ORDER BY dimension, connected DESC, value"""


@_query("rolling_rates", "Rates over the last N minutes per value of a dimension, summed from the 60 s windows "
        "(ending at the latest stored window unless `until` is given).", minutes=15, dimension="branch", until=None)
def rolling_rates(db: str, minutes: int, dimension: str, until: datetime | None) -> str:
    end = literal(until) if until else f"(SELECT max(window_end) FROM {db}.hangup_rates WHERE window_size_s = 60)"
    return f"""SELECT value, attempts, connected, hung_up, declined, refused, {RATES}, from_time, to_time
FROM
(
    SELECT value, {_SUM_COUNTS}, min(window_start) AS from_time, max(window_end) AS to_time
    FROM {db}.hangup_rates FINAL
    WHERE window_size_s = 60 AND dimension = {literal(dimension)}
      AND window_start >= {end} - {int(minutes) * 60} AND window_start < {end}
    GROUP BY value
)
ORDER BY connected DESC, value"""


@_query("rates_timeseries", "Counts and rates per window of one dimension value over time (for charts).",
        window_size_s=60, dimension="all", value="all", since="6h")
def rates_timeseries(db: str, window_size_s: int, dimension: str, value: str, since: datetime | str) -> str:
    return f"""SELECT window_start, attempts, connected, hung_up, declined, refused, {RATES}, final
FROM {db}.hangup_rates FINAL
WHERE window_size_s = {literal(int(window_size_s))} AND dimension = {literal(dimension)}
  AND value = {literal(value)} AND window_start >= {literal(_ago(since))}
ORDER BY window_start"""


# --- flags and alerts -----------------------------------------------------------------------

def _latest(columns: list[str], version: str, prefix: str) -> str:
    """argMax of each column by `version`, aliased `<prefix><column>` (never the column's own
    name: an alias shadowing a column used inside an aggregate breaks old servers)."""
    return ",\n           ".join(f"argMax({c}, {version}) AS {prefix}{c}" for c in columns)


@_query("top_flagged_borrowers", "Borrowers with open flags (raised or escalated), the most severe first, "
        "with the latest explanation and evidence.", limit=20, since=None)
def top_flagged_borrowers(db: str, limit: int, since: datetime | str | None) -> str:
    # A flag's current state is its furthest status (raised < escalated < resolved); the
    # emission time breaks ties between redeliveries. Where two flags of a borrower share a
    # last event time, flag_id picks one, so the answer does not depend on part order.
    version = "toUInt64(toInt8(status)) * 10000000000000 + emitted_at_ms"
    cols = ["borrower_id", "loan_id", "rule_id", "status", "severity", "explanation", "evidence", "evidence_count",
            "last_event_at"]
    since_sql = f"\n  AND f_last_event_at >= {literal(_ago(since))}" if since else ""
    return f"""SELECT f_borrower_id AS borrower, count() AS open_flags,
       arrayElement(['low', 'medium', 'high'], max(toInt8(f_severity))) AS max_severity,
       arraySort(groupUniqArray(toString(f_rule_id))) AS rules,
       max(f_last_event_at) AS last_event,
       argMax(f_explanation, (f_last_event_at, flag_id)) AS explanation,
       argMax(f_evidence, (f_last_event_at, flag_id)) AS evidence,
       sum(f_evidence_count) AS evidence_calls
FROM
(
    SELECT flag_id,
           {_latest(cols, version, "f_")}
    FROM {db}.borrower_flags
    GROUP BY flag_id
)
WHERE f_status != 'resolved'{since_sql}
GROUP BY f_borrower_id
ORDER BY max(toInt8(f_severity)) DESC, open_flags DESC, last_event DESC, borrower
LIMIT {int(limit)}"""


@_query("active_alerts", "Spike alerts currently firing (latest version per alert_id).", limit=100)
def active_alerts(db: str, limit: int) -> str:
    cols = ["status", "dimension", "value", "window_start", "window_end", "connected", "hung_up", "hangup_rate",
            "wilson_low", "baseline_rate", "explanation", "emitted_at"]
    return f"""SELECT alert_id, a_dimension AS dimension, a_value AS value, a_window_start AS window_start,
       a_window_end AS window_end, a_connected AS connected, a_hung_up AS hung_up,
       round(a_hangup_rate, 4) AS hangup_rate, round(a_wilson_low, 4) AS wilson_low,
       round(a_baseline_rate, 4) AS baseline_rate, a_explanation AS explanation, a_emitted_at AS fired_at
FROM
(
    SELECT alert_id,
           {_latest(cols, "version", "a_")}
    FROM {db}.hangup_alerts
    GROUP BY alert_id
)
WHERE a_status = 'firing'
ORDER BY hangup_rate - baseline_rate DESC, alert_id
LIMIT {int(limit)}"""


# --- dead letters ---------------------------------------------------------------------------

def _dead_letters(db: str) -> str:
    """One row per source position (exact however many times a dead letter was delivered)."""
    cols = ["error_kind", "error_field", "error", "received_at", "worker", "source_timestamp_ms"]
    return f"""(
    SELECT source_topic, source_partition, source_offset,
           {_latest(cols, "ingested_at", "d_")}
    FROM {db}.dead_letters
    GROUP BY source_topic, source_partition, source_offset
)"""


@_query("dlq_summary", "Dead letters per source topic and error kind.", since="7d")
def dlq_summary(db: str, since: datetime | str) -> str:
    return f"""SELECT source_topic, d_error_kind AS error_kind, count() AS messages,
       min(d_received_at) AS first_seen, max(d_received_at) AS last_seen,
       argMax(d_error, d_received_at) AS latest_error
FROM {_dead_letters(db)}
WHERE d_received_at >= {literal(_ago(since))}
GROUP BY source_topic, d_error_kind
ORDER BY messages DESC, source_topic, error_kind"""


@_query("dlq_latest", "The latest dead letters with their errors.", limit=20)
def dlq_latest(db: str, limit: int) -> str:
    return f"""SELECT d_received_at AS received_at, source_topic, source_partition, source_offset,
       d_error_kind AS error_kind, d_error_field AS error_field, d_error AS error, d_worker AS worker
FROM {_dead_letters(db)}
ORDER BY received_at DESC, source_topic, source_partition, source_offset DESC
LIMIT {int(limit)}"""


# --- pipeline health ------------------------------------------------------------------------

@_query("freshness", "Pipeline freshness: now minus the latest event time stored, and the latest write per table.")
def freshness(db: str) -> str:
    # An empty table gives max() = 0; nullIf turns that into "no data" instead of 1970.
    return f"""SELECT toDateTime(intDiv(nullIf(max(occurred_at_ms), 0), 1000), 'UTC') AS latest_event_at,
       toInt64(now()) - toInt64(intDiv(nullIf(max(occurred_at_ms), 0), 1000)) AS event_lag_s,
       nullIf(max(ingested_at), toDateTime(0, 'UTC')) AS events_stored_at,
       (SELECT nullIf(max(ingested_at), toDateTime(0, 'UTC')) FROM {db}.hangup_rates) AS rates_stored_at,
       (SELECT nullIf(max(flushed_at), toDateTime(0, 'UTC')) FROM {db}.sink_batches) AS last_flush_at,
       now() AS now
FROM {db}.call_events"""


@_query("events_per_minute", "Distinct events per minute of event time.", since="1h")
def events_per_minute(db: str, since: datetime | str) -> str:
    return f"""SELECT toStartOfMinute(occurred_at) AS minute, count() AS events,
       countIf(outcome = 'hung_up') AS hung_up, countIf(outcome = 'declined') AS declined
FROM {db}.call_events FINAL
WHERE occurred_at >= {literal(_ago(since))}
GROUP BY minute
ORDER BY minute"""


@_query("sink_batches", "Sink flushes per table: batches, rows, batch sizes and durations.", since="1h")
def sink_batches(db: str, since: datetime | str) -> str:
    return f"""SELECT table, count() AS batches, sum(rows) AS total_rows, sum(rejected) AS total_rejected,
       round(avg(rows), 1) AS avg_rows, max(rows) AS max_rows, round(avg(seconds), 4) AS avg_seconds,
       max(flushed_at) AS last_flush
FROM {db}.sink_batches
WHERE flushed_at >= {literal(_ago(since))}
GROUP BY table
ORDER BY table"""
