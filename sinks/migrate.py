"""Versioned schema migrations: numbered SQL templates in sinks/migrations/, applied in order,
recorded in <db>.schema_migrations.

Safe to run from several processes at once: every statement is idempotent (IF NOT EXISTS),
the racy "already exists" errors old servers raise are tolerated, the status is re-read
before each migration, and duplicate status rows collapse (read with GROUP BY version).

Templates are Jinja2 with a strict context: `db`, `lc(type)` (LowCardinality where the
server has it), `has` (sinks.features.Features), `retention` (days per table), `server`, and
the engine templates that let one schema serve one server and a cluster (clickhouse.cluster):
`t(name)` (the table that holds the rows: `db.name`, or `db.name_local` on a cluster),
`on_cluster` ('' or ' ON CLUSTER <name>'), `engine(kind, *args, table=...)` (`kind(args)`, or
`Replicated<kind>('<zookeeper path>', '{replica}', args)`), `distributed(name)` (nothing, or
the Distributed table `db.name` over `db.name_local` sharded by SHARDING_KEYS[name]) and
`cluster` (the name, '' on one server). The dashboard database (0015, docs/privacy.md):
`dash` (its name), `mask` (the private database of the masking views) and `dash_cluster`
(the cluster its Distributed tables read through, '' where the server has none: views and
Merge tables instead).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import socket
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import jinja2

from hangwatch.platform.settings import Settings
from hangwatch.sinks.backends import Backend, BackendError, database_name
from hangwatch.sinks.backends.base import ServerVersion
from hangwatch.sinks.backends.errors import ALREADY_EXISTS_CODES, UNKNOWN_TABLE_CODES
from hangwatch.sinks.features import Features, check_supported
from hangwatch.sinks.sql import ident, literal, split_statements

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_jinja = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


@dataclasses.dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    template: str
    checksum: str  # of the template file, so an edited applied migration is noticed


@dataclasses.dataclass(frozen=True, slots=True)
class MigrationStatus:
    migration: Migration
    applied_at: datetime | None
    changed_since_applied: bool


DEFAULT_ZOOKEEPER_PATH: Final = "/clickhouse/tables/{shard}/{database}/{table}"
# privacy.dashboard_cluster's default: the loopback cluster deploy/ configures.
DEFAULT_DASHBOARD_CLUSTER: Final = "hangwatch_dashboards"
# Cluster mode: the Distributed table of each table sends a row to the shard this expression
# picks. Every copy of a row (a redelivery, a newer version) has the same key columns, so it
# lands on the same shard as the original and the shard's ReplacingMergeTree and argMax
# reads deduplicate it exactly as on one server.
SHARDING_KEYS: Final = {
    "schema_migrations": "version",
    "call_events": "cityHash64(event_id)",
    "borrower_calls": "cityHash64(borrower_id)",  # one borrower's calls on one shard
    "hangup_rates": "cityHash64(window_size_s, dimension, value, window_start)",
    "borrower_flags": "cityHash64(flag_id)",
    "hangup_alerts": "cityHash64(alert_id)",
    "dead_letters": "cityHash64(source_topic, source_partition, source_offset)",
    "sink_batches": "rand()",  # a log: no key, no deduplication
    **{f"rollup_{g}": ("cityHash64(facet, bucket_start, branch, campaign, channel, script_version, credit_grade, "
                       "pre_notified, first_time_borrower, hangup_stage, agent_id)") for g in ("1m", "1h", "1d")},
    **{f"rollup_compact_{g}": "cityHash64(facet, bucket_start, value, branch)" for g in ("1m", "1h", "1d")},
}


@dataclasses.dataclass(frozen=True, slots=True)
class RenderContext:
    db: str
    server: ServerVersion
    retention: dict[str, int]
    cluster: str = ""  # clickhouse.cluster; '' = one server
    zookeeper_path: str = DEFAULT_ZOOKEEPER_PATH
    dash_db: str = ""  # the dashboard database; '' = <db>_dash
    dash_cluster: str = ""  # the cluster the dashboard database reads through; '' = none

    @property
    def dash(self) -> str:
        return ident(self.dash_db or dashboard_database(self.db))

    @property
    def mask(self) -> str:
        return ident(f"{self.dash}_mask")

    @property
    def features(self) -> Features:
        return Features.for_version(self.server)

    @property
    def on_cluster(self) -> str:
        return f" ON CLUSTER {ident(self.cluster)}" if self.cluster else ""

    def table(self, name: str) -> str:
        return f"{ident(self.db)}.{ident(name)}_local" if self.cluster else f"{ident(self.db)}.{ident(name)}"

    def engine(self, kind: str, *args: str, table: str) -> str:
        if not self.cluster:
            return f"{kind}({', '.join(args)})"
        path = self.zookeeper_path.replace("{database}", self.db).replace("{table}", table)
        return f"Replicated{kind}({', '.join((literal(path), literal('{replica}'), *args))})"

    def distributed(self, name: str) -> str:
        if not self.cluster:
            return ""
        db, c = ident(self.db), ident(self.cluster)
        return (f"CREATE TABLE IF NOT EXISTS {db}.{ident(name)} ON CLUSTER {c} AS {db}.{ident(name)}_local\n"
                f"ENGINE = Distributed({c}, {db}, {ident(name)}_local, {SHARDING_KEYS[name]});")

    def redistributed(self, name: str) -> str:
        """After an ALTER of `name`'s local tables: the Distributed table again, with the new
        columns (it holds no rows; dropping it loses nothing)."""
        if not self.cluster:
            return ""
        return f"DROP TABLE IF EXISTS {ident(self.db)}.{ident(name)}{self.on_cluster};\n{self.distributed(name)}"


# Checksums of released migration files that were edited later without changing the tables
# they make (the engine templates of cluster mode; 0018's column list). A store that applied such a
# version is not reported as "changed since applied".
EQUIVALENT_CHECKSUMS: Final[dict[int, frozenset[str]]] = {
    v: frozenset({c}) for v, c in {
        1: "e6acf2de338ccff7", 2: "e70e6fdcbb948b21", 3: "abb971723c27aeb1", 4: "c941eff04179d3a4",
        5: "79888ac0a142ff21", 6: "6ba6a5d2138f6a20", 7: "143a448720712161", 8: "2a451a377fb90c6b",
        9: "63cfb54e10defc46", 10: "9c70c7fba91cbd72", 11: "b7071da502c38718",
        # 0018 copied the columns with `CREATE ... AS borrower_calls`; now spelled out (same table).
        18: "6123aa005313e380",
    }.items()
}


def dashboard_database(db: str, name: str = "") -> str:
    """The dashboard database of the store `db` (privacy.dashboard_database; '' = <db>_dash)."""
    return ident(name or f"{db}_dash")


def shown_database(settings: Settings) -> str:
    """The database dashboards, alert rules and the report read: the dashboard database, where
    borrower ids are masked, unless privacy.show_borrower_ids."""
    db = database_name(settings.clickhouse)
    if settings.privacy.show_borrower_ids:
        return ident(db)
    return dashboard_database(db, settings.privacy.dashboard_database)


def drop(backend: Backend, db: str, *, cluster: str = "", dash_db: str = "") -> None:
    """Drop the store `db` and its dashboard databases (tests and throw-away stores)."""
    dash = dashboard_database(db, dash_db)
    on = f" ON CLUSTER {ident(cluster)}" if cluster else ""
    for name in (ident(db), dash, f"{dash}_mask"):
        backend.execute(f"DROP DATABASE IF EXISTS {name}{on}")


def _dashboard_cluster(backend: Backend, wanted: str, cluster: str) -> str:
    """The cluster the dashboard database reads through: the store's own cluster in cluster
    mode, else privacy.dashboard_cluster if this server has it ('' = views; logged)."""
    if cluster:
        return cluster
    if not wanted or backend.name == "embedded":  # no users to keep out of the embedded store
        return ""
    try:
        found = backend.query(f"SELECT count() FROM system.clusters WHERE cluster = {literal(wanted)}").scalar()
    except BackendError:
        found = 0
    if not found:
        log.warning("the server has no cluster %r (privacy.dashboard_cluster): the dashboard database gets plain "
                    "views, which a user limited to it cannot read on ClickHouse 18.16 (docs/privacy.md)", wanted)
        return ""
    return wanted


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    out: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise ValueError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        text = path.read_text(encoding="utf-8")
        out.append(Migration(int(m.group(1)), m.group(2), text, hashlib.sha256(text.encode()).hexdigest()[:16]))
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {directory}")
    return out


def render(m: Migration, ctx: RenderContext) -> list[str]:
    """The statements of a migration for this server, in order."""
    feats = ctx.features
    text = _jinja.from_string(m.template).render(
        db=ident(ctx.db), lc=feats.lc, has=feats, retention=dict(ctx.retention), server=ctx.server,
        cluster=ctx.cluster, on_cluster=ctx.on_cluster, t=ctx.table, engine=ctx.engine, distributed=ctx.distributed,
        redistributed=ctx.redistributed, dash=ctx.dash, mask=ctx.mask,
        dash_cluster=ident(ctx.dash_cluster) if ctx.dash_cluster else "")
    return split_statements(text)


def applied(backend: Backend, db: str) -> dict[int, tuple[str, datetime]]:
    """version -> (checksum, first applied_at) of the applied migrations."""
    # EXISTS, not system.tables: on 18.16 a scan of system.tables fails with "unknown table"
    # (60) when another migrator renames a table of the database meanwhile.
    exists = backend.query(f"EXISTS TABLE {ident(db)}.schema_migrations").scalar()
    if not exists:
        return {}
    res = backend.query(
        f"SELECT version, argMax(checksum, applied_at), min(applied_at) FROM {ident(db)}.schema_migrations "
        "GROUP BY version")
    return {int(v): (c, at) for v, c, at in res.rows}


def status(backend: Backend, db: str, migrations: list[Migration] | None = None) -> list[MigrationStatus]:
    done = applied(backend, db)
    return [MigrationStatus(m, done[m.version][1] if m.version in done else None,
                            m.version in done and done[m.version][0] != m.checksum
                            and done[m.version][0] not in EQUIVALENT_CHECKSUMS.get(m.version, frozenset()))
            for m in (migrations if migrations is not None else discover())]


def plan(backend: Backend, db: str, retention: dict[str, int],
         migrations: list[Migration] | None = None, *, cluster: str = "",
         zookeeper_path: str = DEFAULT_ZOOKEEPER_PATH, dash_db: str = "",
         dash_cluster: str = DEFAULT_DASHBOARD_CLUSTER) -> list[tuple[Migration, list[str]]]:
    """The pending migrations with the SQL they would run on this server (for --dry-run)."""
    version = backend.server_version()
    check_supported(version)
    ctx = RenderContext(db, version, retention, cluster, zookeeper_path, dash_db,
                        _dashboard_cluster(backend, dash_cluster, cluster))
    done = applied(backend, db)
    return [(m, render(m, ctx)) for m in (migrations if migrations is not None else discover())
            if m.version not in done]


def apply(backend: Backend, db: str, retention: dict[str, int],
          migrations: list[Migration] | None = None, *, cluster: str = "",
          zookeeper_path: str = DEFAULT_ZOOKEEPER_PATH, dash_db: str = "",
          dash_cluster: str = DEFAULT_DASHBOARD_CLUSTER) -> list[Migration]:
    """Apply every pending migration; return the ones this call applied."""
    version = backend.server_version()
    check_supported(version)
    ctx = RenderContext(db, version, retention, cluster, zookeeper_path, dash_db,
                        _dashboard_cluster(backend, dash_cluster, cluster))
    _execute_tolerant(backend, f"CREATE DATABASE IF NOT EXISTS {ident(db)}{ctx.on_cluster}")
    done_now: list[Migration] = []
    for m in migrations if migrations is not None else discover():
        # Re-read before each step: another process may have applied it meanwhile.
        if m.version in applied(backend, db):
            continue
        log.info("applying migration %04d_%s on ClickHouse %s", m.version, m.name, version)
        if not _run_raced(backend, db, m, ctx):
            continue
        backend.insert(f"{ident(db)}.schema_migrations",
                       ("version", "name", "checksum", "applied_at", "server_version", "applied_by"),
                       [(m.version, m.name, m.checksum, int(datetime.now(tz=UTC).timestamp()), str(version),
                         f"{socket.gethostname()}:{os.getpid()}")])
        done_now.append(m)
    return done_now


# How often one migration is run again after a concurrent migrator moved its tables under it.
RACE_ATTEMPTS: Final = 3
RACE_PAUSE_S: Final = 0.5


def _run_raced(backend: Backend, db: str, m: Migration, ctx: RenderContext) -> bool:
    """Run one migration's statements; False when another process recorded it meanwhile.

    Every statement is safe to repeat (IF NOT EXISTS, tolerated swap steps, copies that
    collapse), but two migrators may still interleave between a statement's check and its act
    on old servers: a table renamed away between the two pairs of a RENAME answers "unknown
    table" (60) or "already exists" (57) to a statement that did not declare it harmless. That
    error says another migrator is at the same step, so the migration is run again from its
    first statement once the other has moved on, or skipped if the other recorded it."""
    for attempt in range(1, RACE_ATTEMPTS):
        try:
            _run_statements(backend, m, ctx)
            return True
        except BackendError as e:
            if e.code not in ALREADY_EXISTS_CODES and e.code not in UNKNOWN_TABLE_CODES:
                raise
            log.info("migration %04d_%s met a concurrent migrator (%s); running it again (attempt %d of %d)",
                     m.version, m.name, e, attempt + 1, RACE_ATTEMPTS)
        time.sleep(RACE_PAUSE_S * attempt)
        if m.version in applied(backend, db):
            return False
    _run_statements(backend, m, ctx)
    return True


def _run_statements(backend: Backend, m: Migration, ctx: RenderContext) -> None:
    for stmt in render(m, ctx):
        _execute_tolerant(backend, stmt, _tolerated(stmt))


_TOLERATE = re.compile(r"^\s*--\s*tolerate:\s*([\d ]+)$", re.MULTILINE)


def _tolerated(stmt: str) -> frozenset[int]:
    """Error codes a statement declares harmless with a `-- tolerate: 57 60` line: a step of a
    table swap that a concurrent migrator has already done (0009_alert_history.sql)."""
    return frozenset(int(c) for m in _TOLERATE.finditer(stmt) for c in m.group(1).split())


def _execute_tolerant(backend: Backend, stmt: str, also: frozenset[int] = frozenset()) -> None:
    try:
        backend.execute(stmt)
    except BackendError as e:
        # Two processes racing on CREATE ... IF NOT EXISTS: the loser may see "already exists".
        if e.code in ALREADY_EXISTS_CODES or e.code in also:
            log.debug("tolerated concurrent creation: %s", e)
            return
        raise
