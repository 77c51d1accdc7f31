"""Where a query's time range, time buckets and filter values come from.

A catalogue query never writes a time or a template variable itself: it asks its frame. The
same query text then serves two readers:
- MacroFrame: Grafana panels and alert rules, with the ClickHouse plugin's macros
  ($__timeFilter, $__fromTime/$__toTime, $__interval_s, and in dashboards $__conditionalAll
  with ${var:singlequote}); the plugin fills them in per request.
- FixedFrame: the CLI and the report, with concrete UTC times as literals and the selected
  filter values (none selected = all).

Both write SQL that runs on ClickHouse 18.16 and current versions alike. Time buckets are
intDiv over epoch seconds in both, never $__timeInterval: the plugin expands that to
toStartOfInterval, which 18.16 does not have (docs/dashboards.md, "Macros").
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

from hangwatch.sinks.sql import literal


class FrameError(ValueError):
    """A query asked its frame for something the frame does not have (e.g. no start time)."""


class Frame(Protocol):
    def time_filter(self, column: str) -> str:
        """`column` within the range (both ends inclusive, as the plugin's $__timeFilter)."""
        ...

    def lower(self, column: str) -> str:
        """`column` at or after the start of the range (1=1 when the frame has no start)."""
        ...

    def upper(self, column: str) -> str:
        """`column` at or before the end of the range (1=1 when the frame has no end)."""
        ...

    def from_time(self) -> str: ...

    def to_time(self, otherwise: str | None = None) -> str:
        """The end of the range; `otherwise` (an SQL expression) when the frame has no end."""
        ...

    def bucket(self, column: str) -> str:
        """Start of the interval that holds `column` (epoch-aligned, like $__timeInterval)."""
        ...

    def interval_s(self) -> str: ...

    def any_of(self, column: str, variable: str) -> str:
        """`column IN (selected values of variable)`, or 1=1 when all are selected."""
        ...

    def all_of(self, variable: str) -> str:
        """A constant condition: 1=1 when all values of `variable` are selected (no filter),
        else 1=0. Lets one query text pick a source by whether a filter is set."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class MacroFrame:
    """Grafana: every time and filter is a plugin macro. `dashboard=False` for alert rules,
    which run in the backend, where frontend macros ($__conditionalAll, ${var}) do not exist."""

    dashboard: bool = True

    def time_filter(self, column: str) -> str:
        return f"$__timeFilter({column})"

    def lower(self, column: str) -> str:
        return f"{column} >= $__fromTime"

    def upper(self, column: str) -> str:
        return f"{column} <= $__toTime"

    def from_time(self) -> str:
        return "$__fromTime"

    def to_time(self, otherwise: str | None = None) -> str:
        return "$__toTime"

    def bucket(self, column: str) -> str:
        return _bucket(column, "$__interval_s")

    def interval_s(self) -> str:
        return "$__interval_s"

    def any_of(self, column: str, variable: str) -> str:
        if not self.dashboard:
            raise FrameError(f"alert rules cannot filter on the dashboard variable {variable!r}")
        return f"$__conditionalAll({column} IN (${{{variable}:singlequote}}), ${variable})"

    def all_of(self, variable: str) -> str:
        if not self.dashboard:
            return "1=1"  # alert rules have no variables: nothing is filtered
        return f"$__conditionalAll(1=0, ${variable})"


@dataclasses.dataclass(frozen=True, slots=True)
class FixedFrame:
    """Concrete times (aware datetimes; None = unbounded on that side) and filter values."""

    start: datetime | None = None
    end: datetime | None = None
    step_s: int = 60
    selected: Mapping[str, Sequence[str]] = dataclasses.field(default_factory=dict)

    def time_filter(self, column: str) -> str:
        if self.start is None or self.end is None:
            return " AND ".join(p for p in (self.lower(column), self.upper(column)) if p != "1=1") or "1=1"
        return f"{self.lower(column)} AND {self.upper(column)}"

    def lower(self, column: str) -> str:
        return f"{column} >= {literal(self.start)}" if self.start else "1=1"

    def upper(self, column: str) -> str:
        return f"{column} <= {literal(self.end)}" if self.end else "1=1"

    def from_time(self) -> str:
        if self.start is None:
            raise FrameError("this query needs a start time (--since)")
        return literal(self.start)

    def to_time(self, otherwise: str | None = None) -> str:
        if self.end is not None:
            return literal(self.end)
        if otherwise is None:
            raise FrameError("this query needs an end time (--until)")
        return otherwise

    def bucket(self, column: str) -> str:
        return _bucket(column, str(max(int(self.step_s), 1)))

    def interval_s(self) -> str:
        return str(max(int(self.step_s), 1))

    def any_of(self, column: str, variable: str) -> str:
        values = self.selected.get(variable)
        return f"{column} IN {literal(tuple(values))}" if values else "1=1"

    def all_of(self, variable: str) -> str:
        return "1=0" if self.selected.get(variable) else "1=1"


def _bucket(column: str, step: str) -> str:
    """Start of the epoch-aligned interval of `step` seconds holding `column` (what
    $__timeInterval means, in functions every ClickHouse has)."""
    return f"toDateTime(intDiv(toUInt32({column}), {step}) * {step}, 'UTC')"


def step_for(start: datetime, end: datetime, points: int = 96) -> int:
    """Whole minutes per time bucket, so that [start, end] has at most `points` buckets."""
    span = max((end - start).total_seconds(), 60.0)
    return max(60, math.ceil(span / points / 60) * 60)
