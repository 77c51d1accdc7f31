"""Expansion of the ClickHouse plugin's macros, as the plugin does it (docs/dashboards.md):
used by the risk report to run the panels' own SQL outside Grafana.

Backend macros follow the plugin's pkg/macros; frontend ones ($__conditionalAll and the
${var:singlequote} variable formats) follow its query runner: All (or no value) -> 1=1."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

_ARG = r"\(\s*([^(),]+?)\s*\)"


def _quote(values: Sequence[str]) -> str:
    return ",".join("'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'" for v in values)


def _conditional_all(sql: str, variables: Mapping[str, Sequence[str] | None]) -> str:
    """$__conditionalAll(cond, $var): cond, or 1=1 when $var is All. `cond` may hold
    parentheses, so the arguments are found by matching them."""
    macro = "$__conditionalAll("
    while (start := sql.rfind(macro)) != -1:
        depth, i = 1, start + len(macro)
        while depth:
            depth += {"(": 1, ")": -1}.get(sql[i], 0)
            i += 1
        inner = sql[start + len(macro): i - 1]
        cond, _, var = inner.rpartition(",")
        name = var.strip().lstrip("$").strip("{}")
        chosen = variables.get(name)
        sql = sql[:start] + (cond.strip() if chosen else "1=1") + sql[i:]
    return sql


def _variables(sql: str, variables: Mapping[str, Sequence[str] | None]) -> str:
    def single(m: re.Match[str]) -> str:
        return _quote(variables.get(m.group(1)) or [])

    def plain(m: re.Match[str]) -> str:
        return ",".join(variables.get(m.group(1)) or [])

    sql = re.sub(r"\$\{(\w+):singlequote\}", single, sql)
    return re.sub(r"\$\{?(\w+)\}?", lambda m: plain(m) if m.group(1) in variables else m.group(0), sql)


def expand(sql: str, start: datetime, end: datetime, interval_s: int,
           variables: Mapping[str, Sequence[str] | None] | None = None) -> str:
    """`variables`: name -> selected values; None or empty means All."""
    f, t = int(start.astimezone(UTC).timestamp()), int(end.astimezone(UTC).timestamp())
    step = max(int(interval_s), 1)
    sql = _conditional_all(sql, variables or {})
    sql = re.sub(r"\$__timeFilter_ms" + _ARG, lambda m: (
        f"{m.group(1)} >= fromUnixTimestamp64Milli({f * 1000}) AND "
        f"{m.group(1)} <= fromUnixTimestamp64Milli({t * 1000})"), sql)
    sql = re.sub(r"\$__timeFilter" + _ARG,
                 lambda m: f"{m.group(1)} >= toDateTime({f}) AND {m.group(1)} <= toDateTime({t})", sql)
    sql = re.sub(r"\$__dateFilter" + _ARG, lambda m: (
        f"{m.group(1)} >= toDate('{start.astimezone(UTC):%Y-%m-%d}') AND "
        f"{m.group(1)} <= toDate('{end.astimezone(UTC):%Y-%m-%d}')"), sql)
    sql = re.sub(r"\$__timeInterval" + _ARG,
                 lambda m: f"toStartOfInterval(toDateTime({m.group(1)}), INTERVAL {step} second)", sql)
    sql = sql.replace("$__fromTime", f"toDateTime({f})").replace("$__toTime", f"toDateTime({t})")
    sql = sql.replace("$__interval_s", str(step))
    return _variables(sql, variables or {})
