"""Queries for the remedies (issue 16, docs/analytics.md): comparing groups and periods
(intervention impact) and the best time to call, from the rollups (rollup_1m/1h/1d, read with
rollup.rollup_rows), plus the borrowers' clustering of calls (borrower_calls) that the
statistics' design effect is estimated from.

The CLI and the report take counts from `compare_counts`, `borrower_clustering` and
`best_time_slots` and judge them with hangwatch.analytics.stats. The panels cannot run Python,
so `compare_one_vs_rest` and `best_slots` compute the same statistics in SQL (pooled
two-proportion z test, Newcombe's interval, Wilson lower bounds; tests hold them equal to
stats). Every value a panel needs from the settings (minimum sample, confidence, design effect)
is a parameter, filled in when the dashboards are generated.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Final

from hangwatch.sinks.catalogue import params
from hangwatch.sinks.catalogue.expr import CONNECTED_LIST, DIMENSION_SQL
from hangwatch.sinks.catalogue.registry import Context, Param, QueryError, query
from hangwatch.sinks.catalogue.rollup import FACET_COLUMNS, SEGMENT, compact_rows, rollup_rows
from hangwatch.sinks.sql import literal

# Filters people can set (dashboard variables, CLI --filter): segment columns of every rollup row.
FILTERS: Final = SEGMENT
# Factors groups can be formed by: segment columns and the profile facet's columns. Every one
# of them is a column of the 'profile' rollup rows, so one read serves groups and strata.
FACTORS: Final = (*SEGMENT, *FACET_COLUMNS["profile"])
# Strata of the stratified (Cochran-Mantel-Haenszel) estimate.
STRATA: Final = ("credit_grade", "campaign")
# Segments of the best time to call ('all': no split).
SEGMENTS: Final = ("all", "credit_grade", "first_time_borrower", "campaign", "channel")
# Each rate: (successes, units) as rollup counts.
RATES: Final = {"hangup_rate": ("hung_up", "connected"), "decline_rate": ("declined", "attempts"),
                "contact_rate": ("connected", "attempts")}
_COUNTS: Final = ("attempts", "connected", "hung_up", "declined")
# UInt64 over UInt64: 18.16 types intDiv(UInt64, UInt8) as Int64 (the maximum becomes -1).
_HASH_MAX: Final = "toUInt64(18446744073709551615)"


def _filters(ctx: Context) -> str:
    return " AND ".join(ctx.frame.any_of(c, c) for c in FILTERS)


def _sum(columns: tuple[str, ...] = _COUNTS) -> str:
    return ", ".join(f"sum(c_{c}) AS {c}" for c in columns)


def _hashes(ids: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"cityHash64({literal(i)})" for i in ids) + ")"


def _values(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


def _confidence_z(ctx: Context, text: str, name: str) -> float:
    try:
        c = float(text)
    except ValueError:
        raise QueryError(f"{name}: confidence must be a number, got {text!r}") from None
    if not 0.5 < c < 1.0:
        raise QueryError(f"{name}: confidence must be within (0.5, 1), got {c}")
    return NormalDist().inv_cdf(0.5 + c / 2.0)


def _deff(text: str, name: str) -> float:
    try:
        d = float(text)
    except ValueError:
        raise QueryError(f"{name}: design_effect must be a number >= 1, got {text!r}") from None
    if d < 1.0:
        raise QueryError(f"{name}: design_effect must be >= 1, got {d}")
    return d


_FACTOR = Param("factor", "script_version", "what the groups differ by", str, lambda ctx: FACTORS)
_SEGMENT = Param("segment", "all", "the borrowers' segment the slots are judged for", str, lambda ctx: SEGMENTS)
_CONFIDENCE = Param("confidence", "0.95", "confidence of the intervals (analytics.confidence)")
_DEFF = Param("design_effect", "1", "calls per borrower are not independent: counts are divided by this "
              "(analytics.design_effect; docs/analytics.md)")
_MIN_ATTEMPTS = Param("min_attempts", 200, "a slot is judged from this many attempts "
                      "(analytics.best_time_min_attempts)", int)
_MIN_CONNECTED = Param("min_connected", 50, "... and connected calls (analytics.best_time_min_connected)", int)


@query("compare_counts", "Attempts, connected, hung-up and declined calls per value of a factor, credit grade and "
       "campaign (the strata), from the rollups: what `hangwatch query compare` judges.",
       _FACTOR, time="range", since="14d")
def compare_counts(ctx: Context, factor: str) -> str:
    source = rollup_rows(ctx, "profile", _COUNTS, _filters(ctx))
    strata = ", ".join(s for s in STRATA if s != factor)
    return f"""
SELECT
  {factor} AS grp,
  {strata},
  {_sum()}
FROM {source}
GROUP BY grp, {strata}
ORDER BY grp, {strata}
""".strip()


_CLUSTER_FACTOR = Param("factor", "all", "restrict to calls whose factor is one of `groups`", str,
                        lambda ctx: ("all", *FACTORS))
_CLUSTER_GROUPS = Param("groups", "", "comma-separated values of the factor (empty: all)")


def _clustering_scope(ctx: Context, factor: str, groups: str) -> list[str]:
    chosen = _values(groups)
    where = [ctx.frame.time_filter("occurred_at"), _filters(ctx)]
    if factor != "all" and chosen:
        where.append(f"{DIMENSION_SQL[factor]} IN {literal(chosen)}")
    return where


@query("borrower_calls_in_scope", "The calls borrower_clustering would group (copies of a redelivered event "
       "count until merged): what its sample size is chosen from.", _CLUSTER_FACTOR, _CLUSTER_GROUPS,
       time="range", since="14d")
def borrower_calls_in_scope(ctx: Context, factor: str, groups: str) -> str:
    where = " AND ".join(_clustering_scope(ctx, factor, groups))
    return f"SELECT count() AS calls FROM {ctx.db}.borrower_calls WHERE {where}"


@query("borrower_clustering", "Per rate, the sums over borrowers of their calls (borrowers, units, successes, "
       "Σ k²/m, Σ m²) that the design effect of a comparison is estimated from (docs/analytics.md).",
       _CLUSTER_FACTOR, _CLUSTER_GROUPS,
       Param("one_in", 0, "read the borrowers of the lowest 1/one_in of the hash range (1: every borrower; 0: "
             "chosen from sample_calls by a count in the query)", int),
       Param("sample_calls", 500_000, "with one_in 0: above this many calls, a hash sample of the borrowers with "
             "about as many (0: every borrower; analytics.design_effect_sample_calls)", int),
       time="range", since="14d")
def borrower_clustering(ctx: Context, factor: str, groups: str, one_in: int, sample_calls: int) -> str:
    where = _clustering_scope(ctx, factor, groups)
    # A sample: the borrowers of the lowest 1/k of the hash range. The design effect comes from
    # ratios of these sums, which a random sample of borrowers estimates alike, and the time
    # goes into grouping the calls per event and borrower. borrower_calls is sorted by the hash
    # first (0018), so the primary key reads only the sampled borrowers' granules. The report
    # counts first (borrower_calls_in_scope) and passes k: 18.16 runs a scalar subquery once
    # per use, several times here, which costs more than the grouping once it reads a filter
    # column.
    sample_k = str(int(one_in)) if one_in > 0 else (
        f"intDiv(({borrower_calls_in_scope(ctx, factor, groups)}), {int(sample_calls)})" if sample_calls > 0 else "1")
    if sample_k != "1":
        where.append(f"cityHash64(borrower_id) <= intDiv({_HASH_MAX}, greatest(toUInt64(1), toUInt64({sample_k})))")
    sums = []
    for rate, (k, m) in RATES.items():
        name = rate.removesuffix("_rate")
        sums.append(f"countIf(b_{m} > 0) AS {name}_borrowers, sum(b_{m}) AS {name}_units, "
                    f"sum(b_{k}) AS {name}_successes, "
                    # rounded: a float sum's last digits depend on the order the parts are added in
                    f"round(sumIf(b_{k} * b_{k} / b_{m}, b_{m} > 0), 6) AS {name}_between, "
                    f"sum(b_{m} * b_{m}) AS {name}_m2")
    body = ",\n  ".join(sums)
    return f"""
SELECT
  {body}
FROM (
  SELECT
    borrower_id,
    count() AS b_attempts,
    countIf(outcome IN {CONNECTED_LIST}) AS b_connected,
    countIf(outcome = 'hung_up') AS b_hung_up,
    countIf(outcome = 'declined') AS b_declined
  FROM (
    SELECT borrower_id, event_id, outcome
    FROM {ctx.db}.borrower_calls
    WHERE {" AND ".join(where)}
    LIMIT 1 BY event_id
  )
  GROUP BY borrower_id
)
""".strip()


# toDayOfWeek(t, zone) on 18.16 is toDayOfWeek(t, mode, zone) on current servers: the local
# weekday and hour come from the time carried into the zone instead, which both read alike.
def _segment_source(ctx: Context, segment: str) -> tuple[str, str]:
    """(segment expression, subquery with hour rows at most) for a best-time query: the compact
    rollups of the segment's column (sinks.catalogue.rollup.compact_rows; the full rollups when
    a filter is set)."""
    source = compact_rows(ctx, segment, ("attempts", "connected", "hung_up"), FILTERS, days=False)
    return ("'all'" if segment == "all" else "value"), source


def _slot_counts(ctx: Context, segment: str) -> str:
    expr, source = _segment_source(ctx, segment)
    tz = literal(ctx.tz)
    return f"""
SELECT
  {expr} AS segment,
  toDayOfWeek(toDateTime(bucket_start, {tz})) AS weekday,
  toHour(toDateTime(bucket_start, {tz})) AS hour,
  {_sum(("attempts", "connected", "hung_up"))}
FROM {source}
GROUP BY segment, weekday, hour""".strip()


@query("best_time_slots", "Attempts, connected and hung-up calls per segment value, local weekday (1 = Monday) and "
       "local hour, from the rollups' hour and minute rows: what `hangwatch query best-times` judges.",
       _SEGMENT, time="range", since="28d")
def best_time_slots(ctx: Context, segment: str) -> str:
    return f"{_slot_counts(ctx, segment)}\nORDER BY segment, weekday, hour"


def _wilson(k: str, n: str, z: float, lower: bool) -> str:
    """Wilson score bound of k / n (SQL; k, n floats, n > 0); the CASE of k = 0 or k = n as in stats."""
    z2 = repr(z * z)
    sign = "-" if lower else "+"
    edge = f"{k} = 0" if lower else f"{k} = {n}"
    bound = (f"(({k} / {n} + {z2} / (2 * {n})) {sign} {z!r} * sqrt(({k} / {n}) * (1 - {k} / {n}) / {n} "
             f"+ {z2} / (4 * {n} * {n}))) / (1 + {z2} / {n})")
    clamp = f"greatest(0, {bound})" if lower else f"least(1, {bound})"
    return f"if({edge}, {0 if lower else 1}, {clamp})"


@query("best_slots", "The best local weekday x hour slots to call per segment: slots with at least min_attempts "
       "attempts and min_connected connected calls, ranked by the Wilson lower bound of the reach rate (connected and "
       "not hung up, per attempt), the first `top` per segment value (docs/analytics.md).",
       _SEGMENT, _MIN_ATTEMPTS, _MIN_CONNECTED, Param("top", 3, "slots per segment value", int), _CONFIDENCE,
       time="range", since="28d")
def best_slots(ctx: Context, segment: str, min_attempts: int, min_connected: int, top: int, confidence: str) -> str:
    z = _confidence_z(ctx, confidence, "best_slots")
    reach_low = _wilson("toFloat64(connected - hung_up)", "toFloat64(attempts)", z, lower=True)
    return f"""
SELECT
  segment,
  weekday,
  hour,
  attempts,
  connected,
  connected / attempts AS contact_rate,
  if(connected > 0, hung_up / connected, NULL) AS hangup_rate,
  (connected - hung_up) / attempts AS reach_rate,
  {reach_low} AS reach_low
FROM (
{_slot_counts(ctx, segment)}
)
WHERE attempts >= {int(min_attempts)} AND connected >= {int(min_connected)}
ORDER BY segment, reach_low DESC, weekday, hour
LIMIT {int(top)} BY segment
""".strip()


@query("best_time_grid", "A rate per local weekday (rows, 1 = Monday) and local hour (columns); empty where the "
       "slot has fewer than min_attempts attempts (the minimum sample).",
       Param("rate", "contact_rate", "contact_rate or hangup_rate", str, lambda ctx: ("contact_rate", "hangup_rate")),
       _MIN_ATTEMPTS, time="range", since="28d")
def best_time_grid(ctx: Context, rate: str, min_attempts: int) -> str:
    k, n = RATES[rate]
    cols = ",\n  ".join(
        f"sumIf(c_{k}, h = {h}) / nullIf(sumIf(c_{n}, h = {h}), 0) * "
        f"if(sumIf(c_attempts, h = {h}) >= {int(min_attempts)}, 1, NULL) AS `{h:02d}`" for h in range(24))
    _, source = _segment_source(ctx, "all")
    tz = literal(ctx.tz)
    return f"""
SELECT
  weekday,
  sum(c_attempts) AS attempts,
  {cols}
FROM (
  SELECT toDayOfWeek(toDateTime(bucket_start, {tz})) AS weekday, toHour(toDateTime(bucket_start, {tz})) AS h,
         c_attempts, c_connected, c_hung_up
  FROM {source}
)
GROUP BY weekday
ORDER BY weekday
""".strip()


@query("compare_one_vs_rest", "Each value of a factor against all the others on one rate: counts, rates, the "
       "difference (value - rest) with Newcombe's interval and the p-value of the pooled two-proportion z test; "
       "counts divided by design_effect first (docs/analytics.md).",
       _FACTOR, Param("rate", "hangup_rate", "the rate compared", str, lambda ctx: tuple(RATES)), _CONFIDENCE, _DEFF,
       time="range", since="24h")
def compare_one_vs_rest(ctx: Context, factor: str, rate: str, confidence: str, design_effect: str) -> str:
    z = _confidence_z(ctx, confidence, "compare_one_vs_rest")
    d = repr(_deff(design_effect, "compare_one_vs_rest"))
    k, n = RATES[rate]
    source = compact_rows(ctx, factor, (k, n), FILTERS)
    bounds = {f"{side}_{b}": _wilson(f"k_{side}", f"n_{side}", z, lower=(b == "low"))
              for side in ("a", "b") for b in ("low", "high")}
    return f"""
SELECT
  grp,
  n_value,
  k_value / n_value AS rate_value,
  n_rest,
  k_rest / n_rest AS rate_rest,
  p_b - p_a AS difference,
  p_b - p_a - sqrt((p_b - b_low) * (p_b - b_low) + (a_high - p_a) * (a_high - p_a)) AS ci_low,
  p_b - p_a + sqrt((b_high - p_b) * (b_high - p_b) + (p_a - a_low) * (p_a - a_low)) AS ci_high,
  if(pooled_var > 0, erfc(abs(p_b - p_a) / sqrt(pooled_var) / sqrt(2)), 1) AS p_value
FROM (
  SELECT
    grp, k_value, n_value, k_rest, n_rest,
    k_value / {d} AS k_b, n_value / {d} AS n_b, k_rest / {d} AS k_a, n_rest / {d} AS n_a,
    k_b / n_b AS p_b, k_a / n_a AS p_a,
    {bounds["a_low"]} AS a_low,
    {bounds["a_high"]} AS a_high,
    {bounds["b_low"]} AS b_low,
    {bounds["b_high"]} AS b_high,
    ((k_a + k_b) / (n_a + n_b)) * (1 - (k_a + k_b) / (n_a + n_b)) * (1 / n_a + 1 / n_b) AS pooled_var
  FROM (
    SELECT g AS grp, toFloat64(kv) AS k_value, toFloat64(nv) AS n_value, toFloat64(tk - kv) AS k_rest,
           toFloat64(tn - nv) AS n_rest
    FROM (
      SELECT groupArray(v) AS gs, groupArray(kg) AS ks, groupArray(ng) AS ns, sum(kg) AS tk, sum(ng) AS tn
      FROM (
        SELECT value AS v, sum(c_{k}) AS kg, sum(c_{n}) AS ng
        FROM {source}
        GROUP BY v
      )
    )
    ARRAY JOIN gs AS g, ks AS kv, ns AS nv
  )
  WHERE n_value > 0 AND n_rest > 0
)
ORDER BY grp
""".strip()


@query("borrower_segments", "Each borrower's segment values (credit grade, first-time borrower, campaign, channel) as "
       "of their latest call in the range: the report and the review list look up a flagged borrower's best slot.",
       Param("borrowers", "", "comma-separated borrower ids (pseudonymous; empty: every borrower called)"),
       params.limit(1000), time="range", since="24h")
def borrower_segments(ctx: Context, borrowers: str, limit: int) -> str:
    chosen = _values(borrowers)
    where = ctx.frame.time_filter("occurred_at")
    if chosen:
        # the hash condition is what borrower_calls' primary key prunes on (0018)
        where += f" AND cityHash64(borrower_id) IN {_hashes(chosen)} AND borrower_id IN {literal(chosen)}"
    latest = ",\n  ".join(f"argMax({DIMENSION_SQL[s]}, occurred_at_ms) AS last_{s}"
                          for s in ("credit_grade", "first_time_borrower", "campaign", "channel"))
    return f"""
SELECT
  borrower_id,
  {latest}
FROM {ctx.db}.borrower_calls
WHERE {where}
GROUP BY borrower_id
ORDER BY borrower_id
LIMIT {int(limit)}
""".strip()
