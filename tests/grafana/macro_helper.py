"""The ClickHouse plugin's macros expanded exactly as docs/dashboards.md, "Macros" lists them
says, written from that table alone (independent of hangwatch.grafana.macros, which the
report uses; test_macros.py checks that the two agree).

F/T = panel range in seconds, I = interval in seconds."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

ARG = r"\(([^(),]+)\)"  # macro arguments contain no commas (docs/dashboards.md, "Macros")


def conditional_all(sql: str, variables: Mapping[str, Sequence[str]]) -> str:
    """Frontend: `$__conditionalAll(cond, $var)` -> cond, or 1=1 when $var is All (absent/empty)."""
    out = sql
    while "$__conditionalAll(" in out:
        i = out.index("$__conditionalAll(") + len("$__conditionalAll(")
        depth, j = 1, i
        while depth:
            depth += (out[j] == "(") - (out[j] == ")")
            j += 1
        args = out[i:j - 1]
        cut = args.rindex(",")
        cond, var = args[:cut].strip(), args[cut + 1:].strip()
        name = var.removeprefix("$").removeprefix("{").removesuffix("}")
        out = out[:i - len("$__conditionalAll(")] + (cond if variables.get(name) else "1=1") + out[j:]
    return out


def template_vars(sql: str, variables: Mapping[str, Sequence[str]]) -> str:
    """`${var:singlequote}` -> 'a','b'; `$var` / `${var}` -> a,b."""
    for name, values in variables.items():
        sql = sql.replace(f"${{{name}:singlequote}}", ",".join(f"'{v}'" for v in values))
        sql = sql.replace(f"${{{name}}}", ",".join(values))
        sql = re.sub(rf"\${name}\b", ",".join(values), sql)
    return sql


def expand(sql: str, f: int, t: int, interval_s: int, variables: Mapping[str, Sequence[str]] | None = None) -> str:
    variables = variables or {}
    sql = conditional_all(sql, variables)
    i = max(interval_s, 1)
    day = lambda s: datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%d")  # noqa: E731
    sql = re.sub(r"\$__timeFilter_ms" + ARG, lambda m: f"{m[1]} >= fromUnixTimestamp64Milli({f * 1000}) AND "
                 f"{m[1]} <= fromUnixTimestamp64Milli({t * 1000})", sql)
    sql = re.sub(r"\$__timeFilter" + ARG, lambda m: f"{m[1]} >= toDateTime({f}) AND {m[1]} <= toDateTime({t})", sql)
    sql = re.sub(r"\$__dateFilter" + ARG, lambda m: f"{m[1]} >= toDate('{day(f)}') AND {m[1]} <= toDate('{day(t)}')",
                 sql)
    sql = sql.replace("$__fromTime", f"toDateTime({f})").replace("$__toTime", f"toDateTime({t})")
    sql = re.sub(r"\$__timeInterval" + ARG, lambda m: f"toStartOfInterval(toDateTime({m[1]}), INTERVAL {i} second)",
                 sql)
    sql = sql.replace("$__interval_s", str(i))
    return template_vars(sql, variables)


def unexpanded(sql: str) -> list[str]:
    """Anything still looking like a macro or variable after expansion."""
    return re.findall(r"\$\{?\w+", sql)
