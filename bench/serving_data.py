"""Synthetic data at a bank's scale for the serving benchmark (bench/serving.py): N call events
over D days written into the real schema by INSERT ... SELECT from numbers(), one day's
partition per statement (ClickHouse 18.16 refuses an insert block that spans more than 100
partitions), then what the pipeline would have written beside them.

The world (`World`): ~20 branches (Zipf-like sizes), ~2,000 agents (each in one branch),
~50 campaigns (each branch runs ~10 of them), ~10 script versions (a campaign uses 1-3 at a
time: human scripts rotate every 30 days, one robot script), 10 M borrowers ('b-0001234'; a
borrower has one branch, credit grade, first-time flag and loan, ~3 % are repeat refusers),
the daily rhythm (calls mostly 09:00-20:00 local time, a lunch dip, fewer calls at weekends)
and the simulator's outcome model (hangwatch.simulator.model: hour-of-day, credit grade,
robot, pre-notification, first-time borrower and script effects on declines, refusals,
hang-ups and the hang-up stage) evaluated in SQL. Every value derives from the event's index
by hash, so a load is reproducible: same arguments, same rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from hangwatch.schemas.call_outcome import HANGUP_STAGES, OUTCOMES
from hangwatch.simulator import model
from hangwatch.simulator.population import GRADE_WEIGHTS
from hangwatch.sinks import rollup
from hangwatch.sinks.backends import Backend
from hangwatch.sinks.catalogue.expr import CONNECTED_LIST
from hangwatch.sinks.reconcile import recompute_sql
from hangwatch.sinks.sql import ident, literal
from hangwatch.sinks.tables import (
    BORROWER_CALLS,
    BORROWER_FLAGS,
    CALL_EVENTS,
    DEAD_LETTERS,
    HANGUP_ALERTS,
    HANGUP_RATES,
    ROLLUP_1H,
    SINK_BATCHES,
)

log = logging.getLogger(__name__)

BRANCHES: Final = (
    "shanghai-pudong", "shanghai-xuhui", "beijing-chaoyang", "beijing-haidian", "shenzhen-futian",
    "guangzhou-tianhe", "hangzhou-xihu", "chengdu-jinjiang", "nanjing-gulou", "wuhan-jianghan",
    "suzhou-gusu", "tianjin-heping", "chongqing-yuzhong", "xian-yanta", "qingdao-shinan",
    "xiamen-siming", "changsha-yuelu", "zhengzhou-jinshui", "jinan-lixia", "ningbo-yinzhou",
)
AGENTS_PER_BRANCH: Final = 100
CAMPAIGN_KINDS: Final = ("pre_loan_verification", "post_loan_review", "repayment_reminder", "renewal_offer",
                         "arrears_followup")
# Per campaign kind: share of robot calls and the stage factors (the simulator's for its three).
_KIND_ROBOT_PCT: Final = (15, 40, 75, 50, 30)
_KIND_STAGES: Final = (model.CAMPAIGNS[0].stage_mult, model.CAMPAIGNS[1].stage_mult, model.CAMPAIGNS[2].stage_mult,
                       (1.0, 1.0, 1.0, 1.0, 1.0), (1.2, 1.1, 1.0, 1.0, 1.0))
CAMPAIGNS: Final = tuple(f"{CAMPAIGN_KINDS[i % 5]}-{i // 5 + 1:02d}" for i in range(50))
CAMPAIGNS_PER_BRANCH: Final = 10
# Six human scripts, four robot ones; the simulator's five keep their stage factors.
SCRIPTS: Final = ("v2.3", "v2.4", "v2.5-pilot", "v2.6", "v3.0", "v3.1-pilot", "robot-v5", "robot-v6", "robot-v7",
                  "robot-v7.1")
_SCRIPT_STAGES: Final = (model.SCRIPTS[0].stage_mult, model.SCRIPTS[1].stage_mult, model.SCRIPTS[2].stage_mult,
                         (0.9, 1.0, 0.8, 0.85, 1.0), (0.85, 0.9, 0.8, 0.8, 1.0), (1.0, 1.3, 1.6, 1.5, 1.0),
                         model.SCRIPTS[3].stage_mult, model.SCRIPTS[4].stage_mult, (0.75, 1.0, 1.0, 1.0, 1.0),
                         (0.7, 0.95, 1.0, 1.0, 1.0))
HUMAN_SCRIPTS: Final = 6
ROBOT_SCRIPTS: Final = 4
SCRIPT_PERIOD_DAYS: Final = 30
GRADES: Final = tuple(GRADE_WEIGHTS)
# Local hour of day -> relative call volume: mostly 09:00-20:00, a lunch dip, a few quiet-hour calls.
HOUR_WEIGHTS: Final = (0.2, 0.1, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 1.5, 8.0, 10.0, 10.0, 6.0, 6.5, 9.0, 10.0, 10.0, 9.0,
                       7.0, 6.0, 3.0, 1.0, 0.5, 0.3)
WEEKDAY_WEIGHTS: Final = (1.0, 1.0, 1.0, 1.0, 1.0, 0.55, 0.35)  # Monday .. Sunday
REFUSER_PERMILLE: Final = 30
FIRST_TIME_PCT: Final = 40
_U: Final = 100_000  # resolution of the weighted choices

# The columns this module fills, as of migration 0014; a column added later takes its default.
EVENT_COLUMNS: Final = CALL_EVENTS.columns[:23]
COPY_COLUMNS: Final = BORROWER_CALLS.columns[:19]
RATE_COLUMNS: Final = HANGUP_RATES.columns[:21]
FLAG_COLUMNS: Final = BORROWER_FLAGS.columns[:40]
ALERT_COLUMNS: Final = HANGUP_ALERTS.columns[:18]
DEAD_LETTER_COLUMNS: Final = DEAD_LETTERS.columns[:12]

FLAG_RULES: Final = (("repeated_refusal", 70), ("compliance_frequency", 15), ("compliance_quiet_hours", 15))


@dataclasses.dataclass(frozen=True, slots=True)
class Shape:
    """What to load: `events` calls over `days` local days ending at `end` (the last day is
    cut at `end`), `borrowers` distinct borrowers."""

    events: int
    days: int
    end: datetime
    borrowers: int = 10_000_000
    tz: str = "Asia/Shanghai"

    @property
    def offset_h(self) -> int:
        """Hours the local zone is ahead of UTC (at the end; the rhythm ignores clock changes)."""
        off = self.end.astimezone(ZoneInfo(self.tz)).utcoffset()
        return int(off.total_seconds() // 3600) if off is not None else 0

    def hour_weights(self) -> list[float]:
        """Call volume per UTC hour of day (HOUR_WEIGHTS are local hours)."""
        return [HOUR_WEIGHTS[(h + self.offset_h) % 24] for h in range(24)]

    def day_plans(self) -> list[DayPlan]:
        """One plan per UTC day (one call_events partition each), oldest first, the last one
        cut at `end`; the counts sum to `events`."""
        end_s = int(self.end.timestamp())
        last = end_s // 86_400 * 86_400
        starts = [last - (self.days - 1 - i) * 86_400 for i in range(self.days)]
        hw = self.hour_weights()
        weights = []
        for i, s in enumerate(starts):
            trend = 0.85 + 0.3 * i / max(self.days - 1, 1)  # the book grows over the period
            weekday = datetime.fromtimestamp(s, tz=UTC).weekday()
            weights.append(WEEKDAY_WEIGHTS[weekday] * trend * _covered_share(hw, s, end_s))
        total = sum(weights)
        counts = [int(self.events * w / total) for w in weights]
        counts[-2 if len(counts) > 1 and counts[-1] == 0 else -1] += self.events - sum(counts)
        plans, first = [], 0
        for i, (s, n) in enumerate(zip(starts, counts, strict=True)):
            plans.append(DayPlan(i, s, n, first, min(86_400, end_s - s)))
            first += n
        return plans

    def local_days(self) -> list[int]:
        """Starts (epoch s) of the local days that overlap the period."""
        plans = self.day_plans()
        out = []
        start, end = rollup.local_day(plans[0].start_s, self.tz)
        while start < int(self.end.timestamp()):
            out.append(start)
            start, end = end, rollup.local_day(end, self.tz)[1]
        return out


@dataclasses.dataclass(frozen=True, slots=True)
class DayPlan:
    index: int  # 0 = the oldest day
    start_s: int  # UTC midnight, epoch seconds
    events: int
    first: int  # global index of its first event
    limit_s: int  # seconds of the day that have happened (86,400 but on the last day)

    @property
    def end_s(self) -> int:
        return self.start_s + 86_400


def _covered_share(hour_weights: Sequence[float], day_start_s: int, end_s: int) -> float:
    """Share of a UTC day's call volume that lies before end_s."""
    seconds = max(0, min(86_400, end_s - day_start_s))
    full, part = divmod(seconds, 3600)
    w = sum(hour_weights[:full]) + (hour_weights[full] * part / 3600 if full < 24 else 0.0)
    return w / sum(hour_weights)


def _arr(values: Sequence[Any]) -> str:
    return "[" + ", ".join(_arr(v) if isinstance(v, list | tuple) else literal(v) for v in values) + "]"


def _thresholds(weights: Sequence[float]) -> list[int]:
    """Cumulative thresholds (units of _U) of all but the last weight: the index of a draw u in
    [0, _U) is the number of thresholds <= u."""
    total = sum(weights)
    return [round(_U * c / total) for c in itertools.accumulate(weights)][:-1]


def _branch_weights() -> list[float]:
    return [1.0 / (i + 1) ** 0.6 for i in range(len(BRANCHES))]


def events_sql(db: str, day: DayPlan, shape: Shape) -> str:
    """INSERT one UTC day's events into call_events (its one day partition)."""
    borrowers = shape.borrowers
    stage_sql = _arr(list(HANGUP_STAGES))
    hour_th = _thresholds(shape.hour_weights())
    # A partial last day draws only from the hours that have begun.
    hour_cut = min(day.limit_s // 3600, 23)
    umax = hour_th[hour_cut] if hour_cut < 23 else _U
    notify_permille = [300 + (i * 137) % 400 for i in range(len(BRANCHES))]
    robot_pct = [_KIND_ROBOT_PCT[i % 5] for i in range(len(CAMPAIGNS))]
    period = day.index // SCRIPT_PERIOD_DAYS
    f = lambda x: [float(v) for v in x]  # noqa: E731
    inner = [
        ("g", f"number + {day.first}"),
        ("b", f"intHash64(g * 8 + 1) % {borrowers}"),
        ("hb", "intHash64(b + 7777777)"),
        ("br", f"arrayCount(x -> x <= hb % {_U}, {_arr(_thresholds(_branch_weights()))})"),
        ("gr", f"arrayCount(x -> x <= intDiv(hb, {_U}) % {_U}, {_arr(_thresholds(list(GRADE_WEIGHTS.values())))})"),
        ("ft", f"intDiv(hb, 10000000000) % 100 < {FIRST_TIME_PCT}"),
        ("refuser", f"intDiv(hb, 1000000000000) % 1000 < {REFUSER_PERMILLE}"),
        ("ht", "intHash64(g * 8 + 2)"),
        ("hr", f"arrayCount(x -> x <= ht % {umax}, {_arr(hour_th)})"),
        ("lh", f"(hr + {shape.offset_h}) % 24"),
        ("sec0", "hr * 3600 + intDiv(ht, 1000000) % 3600"),
        ("sec", f"if(sec0 < {day.limit_s}, sec0, sec0 % {max(day.limit_s, 1)})"),
        ("ms", f"({day.start_s} + sec) * 1000 + intDiv(ht, 1000000000000) % 1000"),
        ("hc", "intHash64(g * 8 + 3)"),
        ("camp", f"(br * 3 + (intDiv(hc, 7) % {CAMPAIGNS_PER_BRANCH}) * 5) % {len(CAMPAIGNS)}"),
        ("robot", f"intDiv(hc, 1000000) % 100 < arrayElement({_arr(robot_pct)}, camp + 1)"),
        ("notified", f"intDiv(hc, 1000) % 1000 < arrayElement({_arr(notify_permille)}, br + 1)"),
        ("h1", f"(camp + {period}) % {HUMAN_SCRIPTS}"),
        ("h2", f"(camp * 7 + {period * 3 + 1}) % {HUMAN_SCRIPTS}"),
        ("si", f"if(robot, {HUMAN_SCRIPTS} + (camp + {period // 2}) % {ROBOT_SCRIPTS}, "
               f"if((camp + {period}) % 3 != 0 AND intDiv(hc, 100000000) % 10 < 3, h2, h1))"),
        ("w", f"arrayMap((w0, rm, nm, fm, sm, cm) -> w0 * if(robot, rm, 1.) * if(notified, 1., nm) * if(ft, fm, 1.) "
              f"* sm * cm, {_arr(f(model.BASE_STAGE_WEIGHTS))}, {_arr(f(model.ROBOT_STAGE_MULT))}, "
              f"{_arr(f(model.NOT_NOTIFIED_STAGE_MULT))}, {_arr(f(model.FIRST_TIME_STAGE_MULT))}, "
              f"arrayElement({_arr([f(s) for s in _SCRIPT_STAGES])}, si + 1), "
              f"arrayElement({_arr([f(s) for s in _KIND_STAGES])}, camp % 5 + 1))"),
        ("total", "arraySum(w)"),
        ("ho", "intHash64(g * 8 + 4)"),
        ("u1", "(ho % 1000000) / 1000000."),
        ("u2", "(intDiv(ho, 1000000) % 1000000) / 1000000."),
        ("u3", "(intDiv(ho, 1000000000000) % 1000000) / 1000000."),
        ("hd", "intHash64(g * 8 + 5)"),
        ("u4", "(hd % 1000000) / 1000000."),
        ("z", "((intDiv(hd, 1000000) % 1000) + (intDiv(hd, 1000000000) % 1000) + (intDiv(hd, 1000000000000) % 1000)"
              " - 1498.5) / 500."),
        ("p_dec", f"least(0.6, 0.08 * arrayElement({_arr(f(model.HOUR_DECLINE))}, lh + 1) "
                  f"* arrayElement({_arr(f(model.GRADE_DECLINE.values()))}, gr + 1) * if(robot, 1.6, 1.) "
                  f"* if(notified, 0.55, 1.) * if(refuser, 5., 1.))"),
        ("p_na", f"0.15 * arrayElement({_arr(f(model.HOUR_NO_ANSWER))}, lh + 1) * if(notified, 0.8, 1.)"),
        ("p_busy", f"0.04 * arrayElement({_arr(f(model.HOUR_BUSY))}, lh + 1)"),
        ("p_wrong", "if(refuser, 0.01, 0.03)"),
        ("p_ref", f"if(refuser, 0.35, least(0.3, 0.035 * arrayElement({_arr(f(model.GRADE_REFUSE.values()))}, gr + 1)"
                  " * if(notified, 0.7, 1.)))"),
        ("p_hang", f"{model.HANGUP_BASE} * total * arrayElement({_arr(f(model.HOUR_HANGUP))}, lh + 1) "
                   f"* arrayElement({_arr(f(model.GRADE_HANGUP.values()))}, gr + 1) "
                   f"* if(notified, {model.NOTIFIED_HANGUP_MULT}, 1.) * if(refuser, {model.REFUSER_HANGUP_MULT}, 1.)"),
        ("c2", "0.01 + p_dec"),
        ("c3", "c2 + p_na"),
        ("c4", "c3 + p_busy"),
        ("oc", f"multiIf(u1 < 0.01, 9, u1 < c2, 5, u1 < c3, 6, u1 < c4, 7, u1 < c4 + 0.03, 8, u2 < p_wrong, 4, "
               f"u2 < p_wrong + p_ref, 3, u2 < p_wrong + p_ref + least({model.MAX_HANGUP} - p_wrong - p_ref, p_hang), "
               "2, 1)"),
        ("st", "greatest(arrayFirstIndex(c -> c > u3 * total, arrayCumSum(w)), 1)"),
        ("st_ref", "arrayFirstIndex(c -> c > u3, [0.1, 0.45, 0.8, 0.95, 1.01])"),
        ("att", "toUInt32(arrayCount(x -> x <= intDiv(hd, 10000000000000) % 100, [55, 80, 92]) + 1)"),
        ("dur", f"multiIf(oc = 2, (arrayElement({_arr([lo for lo, _ in model.STAGE_DURATION_S])}, st) + u4 * "
                f"(arrayElement({_arr([hi - lo for lo, hi in model.STAGE_DURATION_S])}, st))) * if(robot, 0.7, 1.), "
                "oc = 1, exp(if(robot, 4.443, 5.347) + if(camp % 5 = 0, 0.18, 0.) + 0.35 * z), "
                "oc = 3, 10. + 80. * u4, oc = 4, 4. + 26. * u4, 0.)"),
    ]
    outer = [
        "concat(lower(hex(intHash64(g * 8 + 6))), lower(hex(intHash64(g * 8 + 7))))",  # event_id
        "concat('call-', toString(g))",
        f"concat('b-', substring(toString({10 ** 7} + b), 2))",
        f"concat('loan-', substring(toString({10 ** 8} + b), 2))",
        "toDateTime(intDiv(ms, 1000), 'UTC')",
        "ms",
        f"arrayElement({_arr(list(CAMPAIGNS))}, camp + 1)",
        "if(robot, 'robot', 'human')",
        f"if(robot, NULL, concat('agent-', substring(toString(10001 + br * {AGENTS_PER_BRANCH} + "
        f"intDiv(hc, 10000000000) % {AGENTS_PER_BRANCH}), 2)))",
        f"arrayElement({_arr(list(BRANCHES))}, br + 1)",
        f"arrayElement({_arr(list(OUTCOMES))}, oc)",
        f"multiIf(oc = 2, arrayElement({stage_sql}, st), oc = 3, arrayElement({stage_sql}, st_ref), NULL)",
        "round(dur, 1)",
        "att",
        "toUInt8(notified)",
        f"arrayElement({_arr(list(GRADES))}, gr + 1)",
        "toUInt8(ft)",
        f"arrayElement({_arr(list(SCRIPTS))}, si + 1)",
        "1",
        "'{}'",
        "toUInt32(b % 12)",
        "g",
        "toDateTime(intDiv(ms, 1000) + 1 + ht % 3, 'UTC')",
    ]
    if len(outer) != len(EVENT_COLUMNS):
        raise RuntimeError("events_sql: one expression per call_events column")
    inner_sql = ",\n       ".join(f"{e} AS {a}" for a, e in inner)
    outer_sql = ",\n       ".join(outer)
    return f"""INSERT INTO {ident(db)}.{CALL_EVENTS.name} ({", ".join(EVENT_COLUMNS)})
SELECT {outer_sql}
FROM
(
SELECT {inner_sql}
FROM numbers({day.events})
)"""


def borrower_calls_sql(db: str, lo_s: int, hi_s: int) -> str:
    """The sink's copy of the events of [lo_s, hi_s) into borrower_calls (the same columns)."""
    cols = ", ".join(COPY_COLUMNS)
    return (f"INSERT INTO {ident(db)}.{BORROWER_CALLS.name} ({cols}) SELECT {cols} FROM {ident(db)}.call_events "
            f"WHERE occurred_at >= toDateTime({lo_s}, 'UTC') AND occurred_at < toDateTime({hi_s}, 'UTC')")


def _rate_columns() -> str:
    return ", ".join(RATE_COLUMNS)


def stream_cells_sql(db: str, size: int, lo_s: int, hi_s: int) -> str:
    """The stream's final window cells of `size` in [lo_s, hi_s), counted as reconcile recounts
    them (sinks.reconcile.recompute_sql): version 1, final, source 'stream'."""
    outcomes = ", ".join(f"n_{o}" for o in OUTCOMES)
    return f"""INSERT INTO {ident(db)}.{HANGUP_RATES.name} ({_rate_columns()})
SELECT {size}, toDateTime(ws, 'UTC'), toDateTime(ws + {size}, 'UTC'), dim, val, n_attempts, n_connected,
       {outcomes}, 1, 1, 'stream', toDateTime(ws + {size} + 2, 'UTC'), toDateTime(ws + {size} + 3, 'UTC')
FROM ({recompute_sql(db, size, lo_s, hi_s)})"""


def all_cells_sql(db: str, size: int, lo_s: int, hi_s: int) -> str:
    """The stream's cells of dimension 'all' in [lo_s, hi_s): the same counts recompute_sql
    gives for 'all', without its ARRAY JOIN over every dimension (history only)."""
    return f"""INSERT INTO {ident(db)}.{HANGUP_RATES.name} ({_rate_columns()})
SELECT {size}, toDateTime(ws, 'UTC'), toDateTime(ws + {size}, 'UTC'), 'all', 'all', n, c, {", ".join(
        f"n_{o}" for o in OUTCOMES)}, 1, 1, 'stream', toDateTime(ws + {size} + 2, 'UTC'),
       toDateTime(ws + {size} + 3, 'UTC')
FROM (SELECT intDiv(toUInt32(occurred_at), {size}) * {size} AS ws, count() AS n,
             countIf(outcome IN {CONNECTED_LIST}) AS c, {", ".join(
        f"countIf(outcome = {literal(o)}) AS n_{o}" for o in OUTCOMES)}
      FROM {ident(db)}.call_events
      WHERE occurred_at >= toDateTime({lo_s}, 'UTC') AND occurred_at < toDateTime({hi_s}, 'UTC')
      GROUP BY ws)"""


# Dimension of the stream -> (rollup facet, rollup column) holding the same counts.
_FACET_OF: Final = {
    "all": ("all", "'all'"), "branch": ("all", "branch"), "campaign": ("all", "campaign"),
    "channel": ("all", "channel"), "script_version": ("all", "script_version"),
    "agent_id": ("agent", "agent_id"), "credit_grade": ("profile", "credit_grade"),
    "pre_notified": ("profile", "pre_notified"), "first_time_borrower": ("profile", "first_time_borrower"),
    "hangup_stage": ("stage", "hangup_stage"),
}


def cells_from_rollup_sql(db: str, table: str, size: int, dimensions: Sequence[str], lo_s: int, hi_s: int) -> str:
    """Window cells of `size` (the rollup's grain) in [lo_s, hi_s) for `dimensions`, summed from
    the rollup (the same counts as recompute_sql, far cheaper over months): for the history
    before the last days, which the stream wrote when it happened."""
    counts = ("attempts", "connected", *OUTCOMES)
    parts = []
    for d in dimensions:
        facet, column = _FACET_OF[d]
        parts.append(f"""SELECT bucket_start, {literal(d)} AS dim, toString({column}) AS val,
       {", ".join(f"sum(r_{c}) AS s_{c}" for c in counts)}
FROM (SELECT bucket_start, facet, branch, campaign, channel, script_version, credit_grade, pre_notified,
             first_time_borrower, hangup_stage, agent_id, {", ".join(f"argMax({c}, version) AS r_{c}" for c in counts)}
      FROM {ident(db)}.{ident(table)}
      WHERE facet = {literal(facet)} AND bucket_start >= toDateTime({lo_s}, 'UTC')
        AND bucket_start < toDateTime({hi_s}, 'UTC')
      GROUP BY bucket_start, facet, branch, campaign, channel, script_version, credit_grade, pre_notified,
               first_time_borrower, hangup_stage, agent_id)
GROUP BY bucket_start, dim, val""")
    union = "\nUNION ALL\n".join(parts)
    return f"""INSERT INTO {ident(db)}.{HANGUP_RATES.name} ({_rate_columns()})
SELECT {size}, bucket_start, bucket_start + {size}, dim, val, {", ".join(f"s_{c}" for c in counts)},
       1, 1, 'stream', bucket_start + {size + 2}, bucket_start + {size + 3}
FROM ({union})"""


def flags_sql(db: str, lo_s: int, hi_s: int, n: int, first: int, borrowers: int) -> str:
    """`n` flag episodes whose first call lies in [lo_s, hi_s) (one month partition): each is
    raised, ~35 % escalated, ~55 % resolved; one row per transition, with v2 facts and the
    evidence as arrays and JSON (three calls)."""
    rules = _arr([r for r, _ in FLAG_RULES])
    th = _arr(_thresholds([w for _, w in FLAG_RULES]))
    span = max(hi_s - lo_s, 1)
    cols = ", ".join(FLAG_COLUMNS)
    return f"""INSERT INTO {ident(db)}.{BORROWER_FLAGS.name} ({cols})
SELECT flag_id, borrower_id, loan_id, rule_id, 1, severity, status, evidence, 3, first_at, last_at, explanation,
       emitted, toUInt64(emitted) * 1000 + 250, emitted + 1,
       [concat(flag_id, '-e1'), concat(flag_id, '-e2'), concat(flag_id, '-e3')],
       [concat(flag_id, '-c1'), concat(flag_id, '-c2'), concat(flag_id, '-c3')],
       [first_at, first_at + intDiv(last_at - first_at, 2), last_at],
       ['hung_up', 'refused', 'hung_up'], ['income_check', '', 'identity_check'], [agent, agent, agent],
       ['human', 'human', 'human'], ['v2.4', 'v2.4', 'v2.5-pilot'],
       2, ['hung_up', 'refused'], [2, 1], ['income_check', 'identity_check'], ['human'], [3], 0, 1,
       'negative_outcomes', '>=', toUInt32(if(status = 'raised', 3, 5)), toUInt32(if(status = 'raised', 3, 5)),
       604800000, if(status = 'resolved', 'none', 'pre_notify_sms'), ['calls'], [3], []
FROM
(
    SELECT concat(lower(hex(intHash64(i * 4 + 1))), lower(hex(intHash64(i * 4 + 2)))) AS flag_id,
           intHash64(i * 4 + 3) % {borrowers} AS b,
           concat('b-', substring(toString({10 ** 7} + b), 2)) AS borrower_id,
           concat('loan-', substring(toString({10 ** 8} + b), 2)) AS loan_id,
           arrayElement({rules}, arrayCount(x -> x <= intHash64(i) % {_U}, {th}) + 1) AS rule_id,
           toDateTime({lo_s} + intHash64(i * 4 + 4) % {span}, 'UTC') AS first_at,
           concat('agent-', substring(toString(10001 + intHash64(i) % 2000), 2)) AS agent,
           arrayJoin(arrayFilter(s -> s = 'raised' OR (s = 'escalated' AND intHash64(i) % 100 < 35)
                                      OR (s = 'resolved' AND intHash64(i + 1) % 100 < 55),
                                 ['raised', 'escalated', 'resolved'])) AS status,
           first_at + multiIf(status = 'raised', 3600, status = 'escalated', 86400, 259200) AS last_at,
           last_at + 2 AS emitted,
           multiIf(rule_id != 'repeated_refusal', 'high', status = 'raised', 'medium',
                   status = 'escalated', 'high', 'low') AS severity,
           concat('[{{"event_id": "', flag_id, '-e1", "call_id": "', flag_id, '-c1", "occurred_at": "',
                  toString(first_at), '", "outcome": "hung_up", "hangup_stage": "income_check"}}]') AS evidence,
           concat(toString(if(status = 'raised', 3, 5)), ' negative outcomes within 7 days') AS explanation
    FROM (SELECT number + {first} AS i FROM numbers({n}))
)"""


def alerts_sql(db: str, lo_s: int, hi_s: int, n: int, first: int, end_s: int) -> str:
    """`n` spike alerts on branches, campaigns and script versions whose 5-minute window starts
    in [lo_s, hi_s) during calling hours: a firing record, and a resolved one 10-60 min later
    unless that is after `end_s`."""
    dims = _arr(["branch", "campaign", "script_version"])
    span = max(hi_s - lo_s, 1)
    cols = ", ".join(ALERT_COLUMNS)
    return f"""INSERT INTO {ident(db)}.{HANGUP_ALERTS.name} ({cols})
SELECT concat(dimension, '|', value, '|', toString(toUInt32(ws))), status, dimension, value, 300, ws, ws + 300,
       connected, hung_up, hung_up / connected, hung_up / connected - 0.08, hung_up / connected + 0.08, 0.16, 1200,
       concat(dimension, ' ', value, ': hang-up rate above its baseline'), if(status = 'firing', 1, 2),
       if(status = 'firing', ws + 305, resolved_at), if(status = 'firing', ws + 306, resolved_at + 1)
FROM
(
    SELECT arrayElement({dims}, intHash64(i) % 3 + 1) AS dimension,
           multiIf(dimension = 'branch', arrayElement({_arr(list(BRANCHES))}, intHash64(i + 1) % {len(BRANCHES)} + 1),
                   dimension = 'campaign',
                   arrayElement({_arr(list(CAMPAIGNS))}, intHash64(i + 1) % {len(CAMPAIGNS)} + 1),
                   arrayElement({_arr(list(SCRIPTS))}, intHash64(i + 1) % {len(SCRIPTS)} + 1)) AS value,
           toDateTime(intDiv({lo_s} + intHash64(i + 2) % {span}, 300) * 300, 'UTC') AS ws,
           toUInt32(40 + intHash64(i + 3) % 200) AS connected,
           toUInt32(connected * (0.3 + (intHash64(i + 4) % 20) / 100.)) AS hung_up,
           toDateTime(ws + 600 + intHash64(i + 5) % 3000, 'UTC') AS resolved_at,
           arrayJoin(if(toUInt32(resolved_at) < {end_s}, ['firing', 'resolved'], ['firing'])) AS status
    FROM (SELECT number + {first} AS i FROM numbers({n}))
)"""


SINK_TABLES: Final = ("call_events", "borrower_calls", "rollups", "hangup_rates", "borrower_flags", "hangup_alerts",
                      "dead_letters")


def sink_batches_sql(db: str, lo_s: int, hi_s: int, every_s: int, events_per_s: float, late_rows: bool) -> str:
    """The sink's flush log for [lo_s, hi_s) (one day partition): a row per table every
    `every_s` seconds, rows in proportion to the event rate; `late_rows` (migration 0014, if
    the table has it): ~0.2 % of the call_events rows of a flush."""
    late_col, late_val = (", late_rows", ", toUInt64(if(tbl = 'call_events', intHash64(k) % 1000 < 2, 0) "
                                         "* greatest(1., rows_f / 100))") if late_rows else ("", "")
    n = (hi_s - lo_s) // every_s
    return f"""INSERT INTO {ident(db)}.{SINK_BATCHES.name}
    (`table`, rows, rejected, seconds, flushed_at, worker, newest_event_ms{late_col})
SELECT tbl, toUInt32(rows_f), 0, 0.005 + rows_f / 200000. + (intHash64(k) % 100) / 10000., t, 'sink-1',
       (toUInt64(t) - 1) * 1000{late_val}
FROM
(
    SELECT number AS k, toDateTime({lo_s} + intDiv(number, {len(SINK_TABLES)}) * {every_s}, 'UTC') AS t,
           arrayElement({_arr(list(SINK_TABLES))}, number % {len(SINK_TABLES)} + 1) AS tbl,
           greatest(1., {events_per_s * every_s:.3f} * multiIf(tbl IN ('call_events', 'borrower_calls'), 1.,
                    tbl = 'hangup_rates', 0.5, tbl = 'rollups', 0.2, 0.001)) AS rows_f
    FROM numbers({n * len(SINK_TABLES)})
)"""


def dead_letters_sql(db: str, lo_s: int, hi_s: int, n: int, first: int) -> str:
    cols = ", ".join(DEAD_LETTER_COLUMNS)
    span = max(hi_s - lo_s, 1)
    return f"""INSERT INTO {ident(db)}.{DEAD_LETTERS.name} ({cols})
SELECT 'call-outcomes', toUInt32(i % 12), i, toUInt64(t) * 1000, NULL, 'eyJicm9rZW4iOiB0cnVlfQ==',
       arrayElement(['schema', 'missing_field', 'bad_enum', 'personal_data'], i % 4 + 1),
       arrayElement(['occurred_at', 'outcome', 'branch', 'borrower_id'], i % 4 + 1),
       'the message does not satisfy CallOutcome v1', t, 'worker-1', t + 1
FROM (SELECT number + {first} AS i, toDateTime({lo_s} + intHash64(number + {first}) % {span}, 'UTC') AS t
      FROM numbers({n}))"""


# --- the load -------------------------------------------------------------------------------

@dataclasses.dataclass
class LoadTimes:
    steps: dict[str, float] = dataclasses.field(default_factory=dict)
    rows: dict[str, int] = dataclasses.field(default_factory=dict)
    detail: dict[str, Any] = dataclasses.field(default_factory=dict)


def _parallel(backends: Sequence[Backend], statements: Sequence[str], what: str) -> None:
    """Run the statements on the backends' connections concurrently (one per connection)."""
    done = [0]
    t0 = time.perf_counter()

    def run(i: int) -> None:
        b = backends[i % len(backends)]
        for j in range(i, len(statements), len(backends)):
            b.execute(statements[j])
            done[0] += 1
            if done[0] % 25 == 0 or done[0] == len(statements):
                log.info("%s: %d/%d statements (%.0f s)", what, done[0], len(statements), time.perf_counter() - t0)

    with ThreadPoolExecutor(len(backends)) as pool:
        for f in [pool.submit(run, i) for i in range(len(backends))]:
            f.result()


def timed(times: LoadTimes, name: str, fn: Callable[[], object]) -> None:
    t0 = time.perf_counter()
    fn()
    times.steps[name] = round(time.perf_counter() - t0, 2)
    log.info("%s: %.1f s", name, times.steps[name])


def load(backends: Sequence[Backend], db: str, shape: Shape, *, cell_days: int = 2,
         hourly_cells: bool = False, minute_days: int = 35, rollup_days: int | None = None,
         events_loaded: bool = False, events_only: bool = False) -> LoadTimes:
    """Everything, timed per step: call_events, rollups (the sink's own rebuild), borrower_calls,
    the stream's window cells, flags, alerts, dead letters and the flush log. `backends`: one
    connection per concurrent statement (2 on a 2-core machine). `events_only`: call_events
    alone (the "loading 100 M events" figure), nothing else."""
    b0 = backends[0]
    times = LoadTimes()
    plans = shape.day_plans()
    days = [p for p in plans if p.events > 0]
    first_s, end_s = plans[0].start_s, int(shape.end.timestamp())
    if not events_loaded:  # else: call_events holds the shape already (a resumed load)
        timed(times, "call_events", lambda: _parallel(backends, [events_sql(db, p, shape) for p in days],
                                                      "call_events"))
    if events_only:
        times.rows["call_events"] = int(b0.query(f"SELECT count() FROM {ident(db)}.call_events").scalar())
        return times
    rollup_detail: dict[str, float] = {}
    timed(times, "rollups", lambda: rollup_detail.update(
        _rebuild_parallel(backends, db, shape, minute_days, rollup_days)))
    times.detail["rollups"] = rollup_detail
    timed(times, "borrower_calls", lambda: _parallel(
        backends, [borrower_calls_sql(db, p.start_s, p.end_s) for p in days], "borrower_calls"))
    cut = max(first_s, (end_s - cell_days * 86_400) // 3600 * 3600)

    def cells() -> None:
        stmts = []
        for size in (60, 300, 3600):  # the last days from call_events, exactly as reconcile counts
            lo = cut
            while lo < end_s:
                hi = min(lo + 6 * 3600, end_s // size * size + size)
                stmts.append(stream_cells_sql(db, size, lo, hi))
                lo = hi
        # before: 60 s cells of 'all' (cheap: two columns of call_events) and, if asked, 3600 s
        # cells of every dimension summed from rollup_1h
        for lo, hi in _month_edges(first_s, cut):
            stmts.append(all_cells_sql(db, 60, lo, hi))
            if hourly_cells:
                stmts.append(cells_from_rollup_sql(db, "rollup_1h", 3600, list(_FACET_OF), lo, hi))
        _parallel(backends, stmts, "hangup_rates")

    timed(times, "hangup_rates", cells)

    def flags_alerts() -> None:
        stmts = []
        # first calls up to three days back (a flag's episode lasts up to three days)
        months = _month_edges(first_s, max(first_s + (end_s - first_s) // 2, end_s - 3 * 86_400))
        total_flags = shape.borrowers // 100
        per = _spread(total_flags, [hi - lo for lo, hi in months])
        first = 0
        for (lo, hi), n in zip(months, per, strict=True):
            stmts.append(flags_sql(db, lo, hi, n, first, shape.borrowers))
            first += n
        alert_months = _month_edges(first_s, end_s)
        per_a = _spread(20 * shape.days, [hi - lo for lo, hi in alert_months])
        first = 0
        for (lo, hi), n in zip(alert_months, per_a, strict=True):
            stmts.append(alerts_sql(db, lo, hi, n, first, end_s))
            stmts.append(dead_letters_sql(db, lo, hi, max(1, n // 2), first))
            first += n
        _parallel(backends, stmts, "flags, alerts, dead letters")

    timed(times, "flags_alerts", flags_alerts)

    def batches() -> None:
        rate = shape.events / max(shape.days * 86_400, 1)
        late = bool(b0.query(f"SELECT count() FROM system.columns WHERE database = {literal(db)} "
                             "AND table = 'sink_batches' AND name = 'late_rows'").scalar())
        stmts = []
        for p in plans[-30:]:  # sink_batches keeps 30 days (retention)
            lo, hi = max(p.start_s, first_s), min(p.end_s, end_s)
            for a, z in _utc_days(lo, hi):
                every = 1 if a >= end_s - 86_400 else 60
                if z > a:
                    stmts.append(sink_batches_sql(db, a, z, every, rate * 86_400 / 40_000, late))
        _parallel(backends, stmts, "sink_batches")

    timed(times, "sink_batches", batches)
    for table in ("call_events", "borrower_calls", "rollup_1m", "rollup_1h", "rollup_1d", "hangup_rates",
                  "borrower_flags", "hangup_alerts", "dead_letters", "sink_batches"):
        times.rows[table] = int(b0.query(f"SELECT count() FROM {ident(db)}.{table}").scalar())
    return times


def build_compact(backends: Sequence[Backend], db: str, tz: str, since: datetime, until: datetime) -> float:
    """The compact rollups (migration 0016) of the local days overlapping [since, until) from the
    stored rollups, for a data set loaded before they existed: hangwatch.sinks.rollup.rebuild
    with compact_only, the days split between the connections. Returns the seconds it took."""
    starts = []
    start = rollup.local_day(int(since.timestamp()), tz)[0]
    while start < int(until.timestamp()):
        starts.append(start)
        start = rollup.local_day(start, tz)[1]

    def run(i: int) -> None:
        for s in starts[i::len(backends)]:
            day = datetime.fromtimestamp(s, tz=UTC)
            rollup.rebuild(backends[i], db, tz, day, day + timedelta(seconds=1), compact_only=True)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(backends)) as pool:
        for f in [pool.submit(run, i) for i in range(len(backends))]:
            f.result()
    took = time.perf_counter() - t0
    log.info("compact rollups for %d local days in %.0f s", len(starts), took)
    return round(took, 1)


def _rebuild_parallel(backends: Sequence[Backend], db: str, shape: Shape, minute_days: int,
                      rollup_days: int | None = None) -> dict[str, float]:
    """The rollups over the whole period with the sink's own SQL, one local day per statement,
    the days split between the connections: hangwatch.sinks.rollup.rebuild (minutes, hours,
    days) for the last `minute_days` days, the days within rollup_1m's retention; before
    them the hours and days only (the same statements rebuild runs, less the minutes, which
    retention would drop). `rollup_days`: only the local days that overlap the last so many
    days (the longest range timed), to save time on a busy machine. Returns the seconds per
    statement kind (summed over connections)."""
    starts = shape.local_days()
    if rollup_days is not None:
        first = int(shape.end.timestamp()) - rollup_days * 86_400
        starts = [s for s in starts if rollup.local_day(s, shape.tz)[1] > first]
    cut = int(shape.end.timestamp()) - minute_days * 86_400
    spent = {"minutes": 0.0, "hours": 0.0, "days": 0.0, "rebuild_days": 0.0}
    counted = {"rebuild_days": 0}
    lock = threading.Lock()

    def add(key: str, dt: float) -> None:
        with lock:
            spent[key] += dt

    def run(i: int) -> None:
        b = backends[i]
        for start in starts[i::len(backends)]:
            end = rollup.local_day(start, shape.tz)[1]
            t0 = time.perf_counter()
            if end > cut:
                rollup.rebuild(b, db, shape.tz, datetime.fromtimestamp(start, tz=UTC),
                               datetime.fromtimestamp(start + 1, tz=UTC))
                add("rebuild_days", time.perf_counter() - t0)
                with lock:
                    counted["rebuild_days"] += 1
                continue
            where = f"occurred_at >= toDateTime({start}, 'UTC') AND occurred_at < toDateTime({end}, 'UTC')"
            b.execute(rollup.from_events_sql(db, ROLLUP_1H.name, rollup.HOUR, where))
            t1 = time.perf_counter()
            add("hours", t1 - t0)
            b.execute(rollup.compact_sql(db, rollup.HOUR, where.replace("occurred_at", "bucket_start")))
            b.execute(rollup.days_from_hours_sql(db, start, end))
            b.execute(rollup.compact_days_sql(db, start, end))
            add("days", time.perf_counter() - t1)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(len(backends)) as pool:
        for f in [pool.submit(run, i) for i in range(len(backends))]:
            f.result()
    log.info("rollups for %d local days (%d with minutes) in %.0f s", len(starts), counted["rebuild_days"],
             time.perf_counter() - t0)
    out = {k: round(v, 1) for k, v in spent.items()}
    out["rebuild_days_n"] = counted["rebuild_days"]
    out["local_days"] = len(starts)
    return out


def _month_edges(lo_s: int, hi_s: int) -> list[tuple[int, int]]:
    """[lo_s, hi_s) cut at UTC month starts (one monthly partition each)."""
    out, a = [], lo_s
    while a < hi_s:
        d = datetime.fromtimestamp(a, tz=UTC)
        nxt = datetime(d.year + d.month // 12, d.month % 12 + 1, 1, tzinfo=UTC)
        z = min(int(nxt.timestamp()), hi_s)
        out.append((a, z))
        a = z
    return out


def _utc_days(lo_s: int, hi_s: int) -> list[tuple[int, int]]:
    out, a = [], lo_s
    while a < hi_s:
        z = min((a // 86_400 + 1) * 86_400, hi_s)
        out.append((a, z))
        a = z
    return out


def _spread(total: int, weights: Sequence[int]) -> list[int]:
    s = sum(weights) or 1
    out = [total * w // s for w in weights]
    if out:
        out[-1] += total - sum(out)
    return out
