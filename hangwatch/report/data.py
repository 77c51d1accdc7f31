"""Run the panels' SQL for a period and collect what the report shows."""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import datetime
from typing import Any

from hangwatch.grafana import sql
from hangwatch.grafana.macros import expand
from hangwatch.sinks.backends.base import Backend, Result

# The report shows at most about this many points per time series.
_MAX_POINTS = 96


@dataclasses.dataclass
class Table:
    columns: list[str]
    rows: list[dict[str, Any]]

    @classmethod
    def of(cls, r: Result) -> Table:
        return cls(list(r.columns), r.dicts())


@dataclasses.dataclass
class ReportData:
    start: datetime
    end: datetime
    interval_s: int
    summary: dict[str, Any]
    open_flags: int
    active_alerts: int
    rates_over_time: Table
    branches: Table
    agents: Table
    comparisons: dict[str, Table]
    stages: Table
    heatmap: Table
    flags: Table
    alerts: Table


def interval_for(start: datetime, end: datetime) -> int:
    """Whole minutes, so that the period has at most _MAX_POINTS intervals."""
    span = max((end - start).total_seconds(), 60.0)
    return max(60, math.ceil(span / _MAX_POINTS / 60) * 60)


def for_database(statement: str, database: str) -> str:
    """The panels name the `hangwatch` database; the report may read another one."""
    if database == sql.DB:
        return statement
    return re.sub(rf"\b{sql.DB}\.(?=\w)", f"{database}.", statement)


class Runner:
    def __init__(self, backend: Backend, database: str, start: datetime, end: datetime, interval_s: int) -> None:
        self.backend, self.database = backend, database
        self.start, self.end, self.interval_s = start, end, interval_s

    def __call__(self, statement: str) -> Result:
        # No template variable selected: every $__conditionalAll becomes 1=1 (All).
        text = expand(statement, self.start, self.end, self.interval_s, {})
        return self.backend.query(for_database(text, self.database))


def collect(backend: Backend, database: str, start: datetime, end: datetime) -> ReportData:
    run = Runner(backend, database, start, end, interval_for(start, end))
    summary = run(sql.LIVE_SUMMARY).dicts()
    return ReportData(
        start=start, end=end, interval_s=run.interval_s,
        summary=summary[0] if summary else {},
        open_flags=int(run(sql.OPEN_FLAGS).scalar() or 0),
        active_alerts=int(run(sql.ACTIVE_ALERT_COUNT).scalar() or 0),
        rates_over_time=Table.of(run(sql.RATES_OVER_TIME)),
        branches=Table.of(run(sql.BRANCH_RATES)),
        agents=Table.of(run(sql.TOP_AGENTS)),
        comparisons={dim: Table.of(run(sql.comparison_sql(dim))) for dim in sql.COMPARISONS},
        stages=Table.of(run(sql.HANGUP_STAGE_BREAKDOWN)),
        heatmap=Table.of(run(sql.BRANCH_HOUR_HEATMAP)),
        flags=Table.of(run(sql.TOP_FLAGGED_BORROWERS)),
        alerts=Table.of(run(sql.ACTIVE_ALERTS)),
    )
