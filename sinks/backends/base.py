"""The one small interface every storage backend implements (native server, embedded chdb)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, Protocol


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class ServerVersion:
    major: int
    minor: int
    patch: int = 0

    @classmethod
    def parse(cls, text: str) -> ServerVersion:
        parts = [int(p) for p in text.strip().split(".")[:3] if p.isdigit()]
        if len(parts) < 2:
            raise ValueError(f"not a ClickHouse version: {text!r}")
        return cls(*parts[:3])  # type: ignore[arg-type]  # 2 or 3 ints

    def at_least(self, major: int, minor: int = 0) -> bool:
        return (self.major, self.minor) >= (major, minor)

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}.{self.patch}"


@dataclasses.dataclass(frozen=True, slots=True)
class Result:
    """Rows of a SELECT with Python values: int, float, str, None, list, date, and datetime
    (timezone-aware, UTC for the project's DateTime('UTC') columns)."""

    columns: list[str]
    types: list[str]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, r, strict=True)) for r in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None

    def scalar_column(self) -> list[Any]:
        return [r[0] for r in self.rows]


class Backend(Protocol):
    """A connection to one ClickHouse (server or embedded). Not thread-safe: the writer uses
    it from one thread at a time. Every SQL text names its tables with the database
    (`db.table`), so the connection's current database never matters."""

    name: str  # "native" or "embedded", for logs and metrics

    def execute(self, sql: str) -> None:
        """Run a statement that returns no rows (DDL, ALTER, INSERT ... SELECT)."""

    def query(self, sql: str) -> Result:
        """Run a SELECT and return all rows."""

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows (tuples in `columns` order) into `table` (qualified: db.table) in one
        INSERT. DateTime values are epoch seconds (int). Raises DataRejected if the values are
        refused, Unavailable if the store cannot be reached."""

    def server_version(self) -> ServerVersion: ...

    def close(self) -> None: ...
