"""`hangwatch migrate`: apply the ClickHouse schema migrations, show their status, and run
retention (drop expired partitions, align TTLs)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from hangwatch.cli.common import console, fail_for, settings
from hangwatch.sinks import migrate as migrations
from hangwatch.sinks import retention
from hangwatch.sinks.backends import BackendError, opened, where

migrate_app = typer.Typer(help="ClickHouse schema migrations and retention.", invoke_without_command=True)


@migrate_app.callback(invoke_without_command=True)
def migrate(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the SQL of pending migrations; change nothing.")]
    = False,
) -> None:
    """Apply pending migrations (idempotent; safe from several processes at once)."""
    if ctx.invoked_subcommand is not None:
        return
    s = settings()
    ch, p = s.clickhouse, s.privacy
    try:
        with opened(ch) as (backend, db):
            if dry_run:
                pending = migrations.plan(backend, db, ch.retention_days, cluster=ch.cluster,
                                          zookeeper_path=ch.zookeeper_path,
                                          dash_db=p.dashboard_database, dash_cluster=p.dashboard_cluster)
                if not pending:
                    console.print(f"nothing pending in {db} ({where(ch)})")
                for m, stmts in pending:
                    typer.echo(f"-- {m.version:04d}_{m.name} (ClickHouse {backend.server_version()})")
                    for stmt in stmts:
                        typer.echo(stmt + ";\n")
                return
            done = migrations.apply(backend, db, ch.retention_days, cluster=ch.cluster,
                                    zookeeper_path=ch.zookeeper_path,
                                    dash_db=p.dashboard_database, dash_cluster=p.dashboard_cluster)
            console.print(f"{db} on {where(ch)} (ClickHouse {backend.server_version()}): "
                          + (f"applied {', '.join(f'{m.version:04d}_{m.name}' for m in done)}" if done
                             else "up to date"))
    except (BackendError, RuntimeError, ValueError) as e:
        raise fail_for(e, where=where(ch)) from e


@migrate_app.command("status")
def status() -> None:
    """List every migration and when it was applied."""
    ch = settings().clickhouse
    try:
        with opened(ch) as (backend, db):
            rows = migrations.status(backend, db)
            version = backend.server_version()
    except (BackendError, ValueError) as e:
        raise fail_for(e, where=where(ch)) from e
    t = Table("version", "name", "applied at (UTC)", "note", title=f"{db} on {where(ch)}, ClickHouse {version}")
    for s in rows:
        note = "file changed since applied" if s.changed_since_applied else ""
        t.add_row(f"{s.migration.version:04d}", s.migration.name,
                  s.applied_at.strftime("%Y-%m-%d %H:%M:%S") if s.applied_at else "[yellow]pending[/yellow]", note)
    console.print(t)
    if any(s.applied_at is None for s in rows):
        raise typer.Exit(1)


@migrate_app.command("retention")
def retention_cmd(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be dropped; change nothing.")] = False,
) -> None:
    """Drop partitions older than clickhouse.retention_days (per table); align TTLs where supported."""
    ch = settings().clickhouse
    try:
        with opened(ch) as (backend, db):
            drops, ttl = retention.apply(backend, db, ch.retention_days, dry_run=dry_run, cluster=ch.cluster)
    except (BackendError, ValueError) as e:
        raise fail_for(e, where=where(ch)) from e
    verb = "would drop" if dry_run else "dropped"
    t = Table("table", "partition", "newest day", "keep (days)", title=f"retention in {db}: {verb} {len(drops)}")
    for d in drops:
        t.add_row(d.table, d.partition_id, d.newest_day.isoformat(), str(ch.retention_days[d.table]))
    console.print(t)
    for c in ttl:
        console.print(f"{'would run' if dry_run else 'ran'}: {c.sql}")


def register(app: typer.Typer) -> None:
    app.add_typer(migrate_app, name="migrate")
