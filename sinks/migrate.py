"""Versioned schema migrations: numbered SQL templates in sinks/migrations/, applied in order,
recorded in <db>.schema_migrations.

Safe to run from several processes at once: every statement is idempotent (IF NOT EXISTS),
the racy "already exists" errors old servers raise are tolerated, the status is re-read
before each migration, and duplicate status rows collapse (read with GROUP BY version).

Templates are Jinja2 with a strict context: `db`, `lc(type)` (LowCardinality where the
server has it), `has` (sinks.features.Features), `retention` (days per table), `server`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import socket
from datetime import UTC, datetime
from pathlib import Path

import jinja2

from hangwatch.sinks.backends import Backend, BackendError
from hangwatch.sinks.backends.base import ServerVersion
from hangwatch.sinks.backends.errors import ALREADY_EXISTS_CODES
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


@dataclasses.dataclass(frozen=True, slots=True)
class RenderContext:
    db: str
    server: ServerVersion
    retention: dict[str, int]

    @property
    def features(self) -> Features:
        return Features.for_version(self.server)


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
        db=ident(ctx.db), lc=feats.lc, has=feats, retention=dict(ctx.retention), server=ctx.server)
    return split_statements(text)


def applied(backend: Backend, db: str) -> dict[int, tuple[str, datetime]]:
    """version -> (checksum, first applied_at) of the applied migrations."""
    exists = backend.query(
        f"SELECT count() FROM system.tables WHERE database = {literal(db)} AND name = 'schema_migrations'").scalar()
    if not exists:
        return {}
    res = backend.query(
        f"SELECT version, argMax(checksum, applied_at), min(applied_at) FROM {ident(db)}.schema_migrations "
        "GROUP BY version")
    return {int(v): (c, at) for v, c, at in res.rows}


def status(backend: Backend, db: str, migrations: list[Migration] | None = None) -> list[MigrationStatus]:
    done = applied(backend, db)
    return [MigrationStatus(m, done[m.version][1] if m.version in done else None,
                            m.version in done and done[m.version][0] != m.checksum)
            for m in (migrations if migrations is not None else discover())]


def plan(backend: Backend, db: str, retention: dict[str, int],
         migrations: list[Migration] | None = None) -> list[tuple[Migration, list[str]]]:
    """The pending migrations with the SQL they would run on this server (for --dry-run)."""
    version = backend.server_version()
    check_supported(version)
    ctx = RenderContext(db, version, retention)
    done = applied(backend, db)
    return [(m, render(m, ctx)) for m in (migrations if migrations is not None else discover())
            if m.version not in done]


def apply(backend: Backend, db: str, retention: dict[str, int],
          migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending migration; return the ones this call applied."""
    version = backend.server_version()
    check_supported(version)
    ctx = RenderContext(db, version, retention)
    _execute_tolerant(backend, f"CREATE DATABASE IF NOT EXISTS {ident(db)}")
    done_now: list[Migration] = []
    for m in migrations if migrations is not None else discover():
        # Re-read before each step: another process may have applied it meanwhile.
        if m.version in applied(backend, db):
            continue
        log.info("applying migration %04d_%s on ClickHouse %s", m.version, m.name, version)
        for stmt in render(m, ctx):
            _execute_tolerant(backend, stmt, _tolerated(stmt))
        backend.insert(f"{ident(db)}.schema_migrations",
                       ("version", "name", "checksum", "applied_at", "server_version", "applied_by"),
                       [(m.version, m.name, m.checksum, int(datetime.now(tz=UTC).timestamp()), str(version),
                         f"{socket.gethostname()}:{os.getpid()}")])
        done_now.append(m)
    return done_now


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
