"""Retention: keep each table's data for `clickhouse.retention_days[table]` days.

Works on every version by dropping whole partitions (day or month, see sinks.tables) whose
newest possible row is older than the cutoff; ClickHouse 18.16 has no TTL. Where the server
has TTL, the tables also carry one (set by the migrations from the same settings) so rows
expire without this command; here the TTL is updated when the settings changed.
"""

from __future__ import annotations

import calendar
import dataclasses
import logging
import re
from datetime import UTC, date, datetime, timedelta

from hangwatch.sinks.backends import Backend
from hangwatch.sinks.features import Features
from hangwatch.sinks.sql import ident, literal
from hangwatch.sinks.tables import ALL_TABLES

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class PartitionDrop:
    table: str
    partition_id: str
    newest_day: date  # the last day a row in this partition can belong to


@dataclasses.dataclass(frozen=True, slots=True)
class TtlChange:
    table: str
    days: int
    sql: str


def newest_day(partition_id: str, granularity: str) -> date | None:
    """The last day covered by a partition id like 20261127 (day) or 202611 (month)."""
    if granularity == "day" and re.fullmatch(r"\d{8}", partition_id):
        return date(int(partition_id[:4]), int(partition_id[4:6]), int(partition_id[6:]))
    if granularity == "month" and re.fullmatch(r"\d{6}", partition_id):
        y, m = int(partition_id[:4]), int(partition_id[4:])
        return date(y, m, calendar.monthrange(y, m)[1])
    return None


def plan_drops(backend: Backend, db: str, retention_days: dict[str, int],
               today: date | None = None, cluster: str = "") -> list[PartitionDrop]:
    today = today or datetime.now(tz=UTC).date()
    res = backend.query(
        f"SELECT DISTINCT table, partition_id FROM system.parts WHERE database = {literal(db)} AND active "
        "ORDER BY table, partition_id")
    out: list[PartitionDrop] = []
    for table, pid in res.rows:
        if cluster:  # the rows live in the <table>_local tables (sinks.migrate, cluster mode)
            if not table.endswith("_local"):
                continue
            table = table.removesuffix("_local")
        spec = ALL_TABLES.get(table)
        days = retention_days.get(table)
        if spec is None or spec.partition is None or not days:
            continue
        last = newest_day(pid, spec.partition)
        if last is None:
            log.warning("retention: %s.%s has an unexpected partition id %r; left alone", db, table, pid)
            continue
        if last < today - timedelta(days=days):
            out.append(PartitionDrop(table, pid, last))
    return out


def plan_ttl(backend: Backend, db: str, retention_days: dict[str, int], cluster: str = "") -> list[TtlChange]:
    """TTL statements for tables whose TTL differs from the settings (servers with TTL only)."""
    suffix, on = ("_local", f" ON CLUSTER {ident(cluster)}") if cluster else ("", "")
    if not Features.for_version(backend.server_version()).ttl:
        return []
    ddl = dict(backend.query(
        f"SELECT name, create_table_query FROM system.tables WHERE database = {literal(db)}").rows)
    out: list[TtlChange] = []
    for table, days in sorted(retention_days.items()):
        spec = ALL_TABLES.get(table)
        physical = table + suffix
        if spec is None or spec.time_column is None or physical not in ddl or not days:
            continue
        want = f"TTL {spec.time_column} + toIntervalDay({days})"
        if want not in ddl[physical] and f"INTERVAL {days} DAY" not in ddl[physical]:
            out.append(TtlChange(table, days, f"ALTER TABLE {ident(db)}.{physical}{on} MODIFY TTL "
                                              f"{spec.time_column} + INTERVAL {days} DAY"))
    return out


def apply(backend: Backend, db: str, retention_days: dict[str, int], *, today: date | None = None,
          dry_run: bool = False, cluster: str = "") -> tuple[list[PartitionDrop], list[TtlChange]]:
    """Drop expired partitions and align TTLs. On a cluster (clickhouse.cluster) the partitions
    are listed on the connected server and dropped from the <table>_local tables of every host
    (ON CLUSTER): shards hold the same days, since rows are spread by hash, not by time."""
    drops = plan_drops(backend, db, retention_days, today, cluster)
    ttl = plan_ttl(backend, db, retention_days, cluster)
    target, on = ("_local", f" ON CLUSTER {ident(cluster)}") if cluster else ("", "")
    if not dry_run:
        for d in drops:
            log.info("retention: dropping %s.%s partition %s (newest day %s)",
                     db, d.table, d.partition_id, d.newest_day)
            backend.execute(f"ALTER TABLE {ident(db)}.{d.table}{target}{on} "
                            f"DROP PARTITION ID {literal(d.partition_id)}")
        for t in ttl:
            log.info("retention: %s", t.sql)
            backend.execute(t.sql)
    return drops, ttl
