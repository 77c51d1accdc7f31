"""Turn JSONCompact values (what chdb returns) into the Python values clickhouse-driver gives,
so both backends hand the same rows to callers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from typing import Any
from zoneinfo import ZoneInfo

Converter = Callable[[Any], Any]


def _identity(v: Any) -> Any:
    return v


def split_args(inner: str) -> list[str]:
    """Split the arguments of a type like Tuple(a Array(String), b UInt8) at top-level commas."""
    out, depth, start, quote = [], 0, 0, False
    for i, ch in enumerate(inner):
        if ch == "'":
            quote = not quote
        elif quote:
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(inner[start:i].strip())
            start = i + 1
    out.append(inner[start:].strip())
    return [a for a in out if a]


def _inner(t: str) -> str:
    return t[t.index("(") + 1: t.rindex(")")]


@cache
def converter(ch_type: str, default_tz: str = "UTC") -> Converter:
    """A function that converts one JSON value of `ch_type` into its Python value."""
    t = ch_type.strip()
    if t.startswith(("Nullable(", "LowCardinality(")):
        conv = converter(_inner(t), default_tz)
        return lambda v: None if v is None else conv(v)
    if t.startswith(("UInt", "Int")):
        return lambda v: int(v)
    if t.startswith("Float"):
        return lambda v: None if v is None else float(v)
    if t == "Bool":
        return lambda v: bool(v)
    if t.startswith("Decimal"):
        return lambda v: Decimal(str(v))
    if t in ("Date", "Date32"):
        return lambda v: date.fromisoformat(v)
    if t.startswith("DateTime"):
        args = split_args(_inner(t)) if "(" in t else []
        tz_arg = next((a.strip("'") for a in args if a.startswith("'")), default_tz)
        tz = UTC if tz_arg in ("UTC", "Etc/UTC") else ZoneInfo(tz_arg)
        return lambda v: datetime.fromisoformat(v).replace(tzinfo=tz)
    if t.startswith("Array("):
        conv = converter(_inner(t), default_tz)
        return lambda v: [conv(x) for x in v]
    if t.startswith("Tuple("):
        # Named elements look like `name Type`; the type is the last word-group after a space
        # that is not inside parentheses.
        convs = [converter(_strip_name(a), default_tz) for a in split_args(_inner(t))]
        return lambda v: tuple(c(x) for c, x in zip(convs, v, strict=True))
    return _identity  # String, FixedString, UUID, Enum*: already str


def _strip_name(arg: str) -> str:
    head = arg.split("(", 1)[0]
    return arg.split(" ", 1)[1] if " " in head else arg
