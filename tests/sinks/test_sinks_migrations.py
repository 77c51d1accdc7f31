"""Migrations: up, status, dry run, idempotent and concurrent re-runs, version gates."""

from __future__ import annotations

import dataclasses
import threading

import pytest

from hangwatch.platform.settings import ClickHouseSettings
from hangwatch.sinks import migrate
from hangwatch.sinks.backends.base import ServerVersion
from hangwatch.sinks.backends.native import NativeBackend
from hangwatch.sinks.backends.url import parse_url
from hangwatch.sinks.features import check_supported
from hangwatch.sinks.tables import ALL_TABLES
from testkit.sinks import CH_URL, Store
from tests.sinks.sinkhelpers import RUN_TAG

RETENTION = ClickHouseSettings().retention_days


def test_up_status_and_idempotent_rerun(store: Store) -> None:
    st = migrate.status(store.backend, store.db)
    assert [s.migration.version for s in st] == [m.version for m in migrate.discover()]
    assert all(s.applied_at is not None and not s.changed_since_applied for s in st)
    assert migrate.apply(store.backend, store.db, RETENTION) == []  # nothing pending
    assert migrate.plan(store.backend, store.db, RETENTION) == []
    tables = dict(store.backend.query(
        f"SELECT name, engine FROM system.tables WHERE database = '{store.db}'").rows)
    assert set(tables) == set(ALL_TABLES)
    assert tables["call_events"] == "ReplacingMergeTree"
    assert tables["sink_batches"] == "MergeTree"
    # Every column the writer fills exists in the migrated schema.
    cols = store.backend.query(f"SELECT table, name FROM system.columns WHERE database = '{store.db}'").rows
    for spec in ALL_TABLES.values():
        assert set(spec.columns) <= {c for t, c in cols if t == spec.name}, spec.name


def test_version_gated_features_follow_the_server(store: Store) -> None:
    ddl = store.backend.query(
        f"SELECT create_table_query FROM system.tables WHERE database = '{store.db}' AND name = 'call_events'").scalar()
    if store.backend.server_version().at_least(20, 3):
        assert "LowCardinality" in ddl and "TTL" in ddl
    else:
        assert "LowCardinality" not in ddl and "TTL" not in ddl


def test_dry_run_shows_sql_and_changes_nothing(store: Store) -> None:
    db = store.db + "_dry"
    planned = migrate.plan(store.backend, db, RETENTION)
    assert [m.version for m, _ in planned] == [m.version for m in migrate.discover()]
    sql = "\n".join(s for _, stmts in planned for s in stmts)
    assert f"CREATE TABLE IF NOT EXISTS {db}.call_events" in sql
    assert not store.backend.query(f"SELECT count() FROM system.databases WHERE name = '{db}'").scalar()


def test_edited_migration_is_reported(store: Store) -> None:
    edited = [dataclasses.replace(m, checksum="0" * 16) if m.version == 2 else m for m in migrate.discover()]
    st = {s.migration.version: s for s in migrate.status(store.backend, store.db, edited)}
    assert st[2].changed_since_applied and not st[3].changed_since_applied


@pytest.mark.clickhouse
def test_concurrent_migrate_from_several_processes() -> None:
    db = f"{RUN_TAG}_concurrent"
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def run() -> None:
        b = NativeBackend(parse_url(CH_URL))
        try:
            barrier.wait()
            migrate.apply(b, db, RETENTION)
        except BaseException as e:
            errors.append(e)
        finally:
            b.close()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    b = NativeBackend(parse_url(CH_URL))
    try:
        assert errors == []
        st = migrate.status(b, db)
        assert all(s.applied_at is not None for s in st)
        assert b.query(f"SELECT count() FROM {db}.schema_migrations FINAL").scalar() == len(st)
    finally:
        b.execute(f"DROP DATABASE IF EXISTS {db}")
        b.close()


def test_render_gates_per_version() -> None:
    m = next(m for m in migrate.discover() if m.name == "call_events")
    old = "\n".join(migrate.render(m, migrate.RenderContext("d", ServerVersion(18, 16, 1), RETENTION)))
    new = "\n".join(migrate.render(m, migrate.RenderContext("d", ServerVersion(26, 9, 2), RETENTION)))
    assert "LowCardinality" not in old and "TTL" not in old
    assert "branch LowCardinality(String)" in new and "TTL occurred_at + INTERVAL 400 DAY" in new
    assert "ttl_only_drop_parts = 1" in new


def test_too_old_server_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"minimum supported version 18\.16"):
        check_supported(ServerVersion(18, 14, 9))
