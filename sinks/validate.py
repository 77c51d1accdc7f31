"""Row checks built from the live column types (system.columns).

Only what some backend would silently alter is checked: ClickHouse's JSON input (chdb)
wraps integers that do not fit (2**40 into UInt32 becomes 0), turns null into 0 and accepts
"7" for a number; the native driver would raise on the same rows, so the two backends would
store different data. Enum values and string types are left to ClickHouse, which rejects
them loudly on both backends (those rows reach dead_letters through the writer's bisection).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from hangwatch.sinks.backends import Backend
from hangwatch.sinks.sql import literal


class RowError(ValueError):
    """A row that cannot be stored; `column` names the offending column."""

    def __init__(self, column: str | None, message: str) -> None:
        super().__init__(f"{column}: {message}" if column else message)
        self.column = column
        self.message = message


Check = Callable[[Any], str | None]  # returns a problem description or None


def _int_range(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        if type(v) is not int and type(v) is not bool:
            return f"expected an integer, got {type(v).__name__}"
        if not lo <= v <= hi:
            return f"{v} is outside [{lo}, {hi}]"
        return None

    return check


def _float(v: Any) -> str | None:
    if type(v) not in (int, float):
        return f"expected a number, got {type(v).__name__}"
    if not math.isfinite(v):
        return f"{v} is not a finite number"
    return None


def check_for(ch_type: str) -> tuple[Check | None, bool]:
    """(check for non-null values or None, nullable) for a ClickHouse column type."""
    t = ch_type
    nullable = False
    while True:
        if t.startswith("LowCardinality("):
            t = t[len("LowCardinality("):-1]
        elif t.startswith("Nullable("):
            t, nullable = t[len("Nullable("):-1], True
        else:
            break
    if t.startswith("UInt"):
        bits = int(t[4:])
        return _int_range(0, 2**bits - 1), nullable
    if t.startswith("Int"):
        bits = int(t[3:])
        return _int_range(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1), nullable
    if t.startswith("Float"):
        return _float, nullable
    if t.startswith("DateTime") and not t.startswith("DateTime64"):
        return _int_range(0, 2**32 - 1), nullable
    return None, nullable


class RowValidator:
    def __init__(self, columns: Sequence[str], types: dict[str, str]) -> None:
        self.columns = tuple(columns)
        missing = [c for c in columns if c not in types]
        if missing:
            raise RuntimeError(f"columns {missing} are missing in ClickHouse; run `hangwatch migrate`")
        self._checks: list[tuple[int, str, Check | None, bool]] = []
        for i, c in enumerate(columns):
            check, nullable = check_for(types[c])
            self._checks.append((i, c, check, nullable))

    def __call__(self, row: Sequence[Any]) -> None:
        for i, col, check, nullable in self._checks:
            v = row[i]
            if v is None:
                if not nullable:
                    raise RowError(col, "must not be null")
                continue
            if check is not None:
                problem = check(v)
                if problem:
                    raise RowError(col, problem)


def load_column_types(backend: Backend, db: str, tables: Sequence[str]) -> dict[str, dict[str, str]]:
    res = backend.query(
        f"SELECT table, name, type FROM system.columns "
        f"WHERE database = {literal(db)} AND table IN {literal(list(tables))}")
    out: dict[str, dict[str, str]] = {t: {} for t in tables}
    for table, name, typ in res.rows:
        out[table][name] = typ
    empty = [t for t, cols in out.items() if not cols]
    if empty:
        raise RuntimeError(f"tables {empty} do not exist in database {db!r}; run `hangwatch migrate`")
    return out
