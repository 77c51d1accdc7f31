"""Small helpers for building SQL text safely: identifiers, literals, statement splitting.

Queries are rendered to plain SQL text (no driver-side parameters) so that the same text runs
on both backends and `--dry-run`/`--sql` can show exactly what is sent."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def ident(name: str) -> str:
    """A database or table name; only plain identifiers are accepted (no quoting games)."""
    if not _IDENT.match(name):
        raise ValueError(f"not a plain identifier: {name!r} (letters, digits and _ only)")
    return name


def literal(v: Any) -> str:
    """A value as a ClickHouse literal that means the same on 18.16 and current versions."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, datetime):
        if v.tzinfo is None:
            raise ValueError("naive datetime: pass an aware datetime (UTC)")
        # Epoch seconds with an explicit zone: immune to the server's time zone.
        return f"toDateTime({int(v.timestamp())}, 'UTC')"
    if isinstance(v, str):
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(v, list | tuple):
        return "(" + ", ".join(literal(x) for x in v) + ")"
    raise TypeError(f"no SQL literal for {type(v).__name__}")


def split_statements(sql: str) -> list[str]:
    """Split a migration file into statements at `;` that ends a line. Chunks that hold only
    comments or whitespace are dropped. (Migration files never put `;` at a line end inside a
    string literal, which keeps this simple.)"""
    out: list[str] = []
    for chunk in re.split(r";[ \t]*(?:\n|$)", sql):
        code = "\n".join(line for line in chunk.splitlines() if not line.strip().startswith("--")).strip()
        if code:
            out.append(chunk.strip())
    return out
