"""INSERT a batch; when ClickHouse refuses its values, find the refused rows by bisection
and insert all the others.

A refused batch is split in halves recursively (small pieces row by row), so one bad row in
50,000 costs about 2*log2(50,000) ~ 32 extra INSERTs, not 50,000. Re-inserting rows that a
partly applied INSERT already wrote is harmless: every data table deduplicates
(ReplacingMergeTree) and every read is exact before merges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hangwatch.sinks.backends import Backend, DataRejected

ROW_BY_ROW_BELOW = 8


def insert_isolating(backend: Backend, table: str, columns: Sequence[str],
                     rows: Sequence[tuple[Any, ...]]) -> list[tuple[int, DataRejected]]:
    """Insert rows; return (index, error) for each row ClickHouse refused. Unavailable and
    other BackendErrors propagate: they say nothing about the rows."""
    rejected: list[tuple[int, DataRejected]] = []

    def insert(lo: int, hi: int) -> None:
        try:
            backend.insert(table, columns, rows[lo:hi])
        except DataRejected as e:
            if hi - lo == 1:
                rejected.append((lo, e))
            elif hi - lo <= ROW_BY_ROW_BELOW:
                for i in range(lo, hi):
                    insert(i, i + 1)
            else:
                mid = (lo + hi) // 2
                insert(lo, mid)
                insert(mid, hi)

    if rows:
        insert(0, len(rows))
    return rejected
