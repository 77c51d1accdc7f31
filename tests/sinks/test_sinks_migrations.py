"""Migrations: up, status, dry run, idempotent and concurrent re-runs, version gates."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import UTC, datetime
from typing import cast

import orjson
import pytest

from hangwatch.platform.settings import ClickHouseSettings, Settings
from hangwatch.sinks import catalogue, convert, migrate
from hangwatch.sinks.backends import Backend, BackendError
from hangwatch.sinks.backends.base import ServerVersion
from hangwatch.sinks.backends.native import NativeBackend
from hangwatch.sinks.backends.url import parse_url
from hangwatch.sinks.features import check_supported
from hangwatch.sinks.tables import ALL_TABLES
from hangwatch.sinks.writer.flush import Flusher
from testkit.events import BASE_MS, event_records, make_events
from testkit.fakes import FakeMessage
from testkit.sinks import CH_URL, Store, batch_of, router_for
from tests.sinks.sinkhelpers import RUN_TAG, alert_record, flag_record

RETENTION = ClickHouseSettings().retention_days


def test_up_status_and_idempotent_rerun(store: Store) -> None:
    st = migrate.status(store.backend, store.db)
    assert [s.migration.version for s in st] == [m.version for m in migrate.discover()]
    assert all(s.applied_at is not None and not s.changed_since_applied for s in st)
    assert migrate.apply(store.backend, store.db, RETENTION) == []  # nothing pending
    assert migrate.plan(store.backend, store.db, RETENTION) == []
    tables = dict(store.backend.query(
        f"SELECT name, engine FROM system.tables WHERE database = '{store.db}'").rows)
    # hangup_alerts_0005 and borrower_calls_0013: the tables before 0009 and 0018 rebuilt them
    # (kept for the operator to drop).
    assert set(tables) == set(ALL_TABLES) | {"hangup_alerts_0005", "borrower_calls_0013"}
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
        ddl = b.query(f"SELECT create_table_query FROM system.tables WHERE database = '{db}' "
                      "AND name = 'hangup_alerts'").scalar()
        assert "ORDER BY (alert_id, status)" in ddl
        cols = b.query(f"SELECT name FROM system.columns WHERE database = '{db}' AND table = 'borrower_flags'")
        assert "evidence_outcome" in cols.scalar_column()
    finally:
        migrate.drop(b, db)
        b.close()


class _OtherMigratorMidway:
    """The real backend, with a concurrent migrator acting right after this one's first failed
    statement: it creates the table the statement missed, or records the migration as done."""

    def __init__(self, backend: Backend, db: str, *, records: bool) -> None:
        self.backend, self.db, self.records, self.failures = backend, db, records, 0

    def execute(self, sql: str) -> None:
        try:
            self.backend.execute(sql)
        except BackendError:
            self.failures += 1
            if self.failures == 1 and self.records:
                self.backend.execute(f"INSERT INTO {self.db}.schema_migrations (version, name, checksum) "
                                     "SELECT 901, 'raced', 'c'")
            elif self.failures == 1:
                self.backend.execute(f"CREATE TABLE {self.db}.appears_later (x UInt8) ENGINE = Memory")
            raise

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)


_RACED = migrate.Migration(901, "raced", "INSERT INTO {{ db }}.appears_later SELECT 1", "c")


@pytest.mark.parametrize("records", [False, True], ids=["runs-again", "other-recorded-it"])
def test_a_migration_raced_by_another_migrator_runs_again_or_is_skipped(store: Store, records: bool) -> None:
    """A statement that meets "unknown table" because another migrator is moving the same
    tables is run again from the migration's start, or skipped once the other recorded it."""
    db = _upgrade_db(store, 1)
    try:
        raced = _OtherMigratorMidway(store.backend, db, records=records)
        done = migrate.apply(cast(Backend, raced), db, RETENTION, [_RACED])
        rows = store.backend.query(f"SELECT count() FROM {db}.schema_migrations WHERE version = 901").scalar()
        assert raced.failures == 1 and rows == 1
        assert done == ([] if records else [_RACED])
        landed = store.backend.query(f"SELECT count() FROM system.tables WHERE database = '{db}' "
                                     "AND name = 'appears_later'").scalar()
        assert landed == (0 if records else 1)
    finally:
        migrate.drop(store.backend, db)


def test_a_migration_that_keeps_failing_raises_after_its_attempts(store: Store) -> None:
    db = _upgrade_db(store, 1)
    try:
        with pytest.raises(BackendError) as failed:
            migrate.apply(store.backend, db, RETENTION, [_RACED])
        assert failed.value.code == 60
        assert migrate.applied(store.backend, db).keys() == {1}
    finally:
        migrate.drop(store.backend, db)


def test_render_gates_per_version() -> None:
    m = next(m for m in migrate.discover() if m.name == "call_events")
    old = "\n".join(migrate.render(m, migrate.RenderContext("d", ServerVersion(18, 16, 1), RETENTION)))
    new = "\n".join(migrate.render(m, migrate.RenderContext("d", ServerVersion(26, 9, 2), RETENTION)))
    assert "LowCardinality" not in old and "TTL" not in old
    assert "branch LowCardinality(String)" in new and "TTL occurred_at + INTERVAL 400 DAY" in new
    assert "ttl_only_drop_parts = 1" in new


def test_dashboard_database_renders_per_mode() -> None:
    """0015: Distributed tables over the dashboard cluster (one server: the loopback entry; a
    cluster: its own, over the _local tables, ON CLUSTER), plain views and Merge tables without."""
    m = next(m for m in migrate.discover() if m.name == "dashboard_database")
    v = ServerVersion(18, 16, 1)

    def sql(**kw: str) -> str:
        text = "\n".join(migrate.render(m, migrate.RenderContext("d", v, RETENTION, **kw)))
        return "\n".join(line for line in text.splitlines() if not line.startswith("--"))

    loop, cluster, plain = sql(dash_cluster="loop"), sql(cluster="c", dash_cluster="c"), sql()
    assert "ENGINE = Distributed(loop, d_dash_mask, borrower_flags)" in loop
    assert "d_dash.rollup_1m AS d.rollup_1m\nENGINE = Distributed(loop, d, rollup_1m)" in loop
    assert "ON CLUSTER" not in loop and "_local" not in loop and "Merge(" not in loop
    assert "d_dash.rollup_1m ON CLUSTER c AS d.rollup_1m_local\nENGINE = Distributed(c, d, rollup_1m_local)" in cluster
    assert "FROM d.borrower_calls_local" in cluster and "ReplicatedMergeTree" in cluster
    assert "INSERT INTO d_dash_mask.mask_key_local\n" in cluster  # a Distributed table without a key takes none
    assert "CREATE VIEW IF NOT EXISTS d_dash.borrower_flags AS SELECT * FROM d_dash_mask.borrower_flags" in plain
    assert "ENGINE = Merge(d, '^dead_letters$')" in plain and "Distributed" not in plain
    for text in (loop, cluster, plain):
        assert "value_b64" not in text and "key_b64" not in text
        assert text.count("AS borrower_id") == 2 and text.count("AS loan_id") == 2


def test_borrower_calls_rebuild_renders_per_mode() -> None:
    """0018: one server swaps the tables; a cluster swaps the _local ones ON CLUSTER and copies
    back through a Distributed table over the old ones (same sharding key)."""
    m = next(m for m in migrate.discover() if m.name == "borrower_calls_by_hash")
    v = ServerVersion(18, 16, 1)
    one = migrate.render(m, migrate.RenderContext("d", v, RETENTION))
    cluster = migrate.render(m, migrate.RenderContext("d", v, RETENTION, cluster="c"))
    assert len(one) == 3 and "RENAME TABLE d.borrower_calls TO d.borrower_calls_0013,\n" in one[1]
    assert "-- tolerate: 57 60" in one[1] and "ON CLUSTER" not in "\n".join(one)
    assert "INSERT INTO d.borrower_calls\n" in one[2] and "FROM d.borrower_calls_0013;" in one[2] + ";"
    assert "ORDER BY (cityHash64(borrower_id), borrower_id, occurred_at, event_id)" in one[0]
    assert "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/d/borrower_calls_0018'" in cluster[0]
    assert cluster[1].rstrip(";").endswith(
        "d.borrower_calls_0018_local TO d.borrower_calls_local ON CLUSTER c")
    assert "ENGINE = Distributed(c, d, borrower_calls_0013_local, cityHash64(borrower_id))" in cluster[2]
    assert "INSERT INTO d.borrower_calls\n" in cluster[3] and "FROM d.borrower_calls_0013" in cluster[3]
    assert migrate.SHARDING_KEYS["borrower_calls"] == "cityHash64(borrower_id)"


def test_too_old_server_is_refused() -> None:
    with pytest.raises(RuntimeError, match=r"minimum supported version 18\.16"):
        check_supported(ServerVersion(18, 14, 9))


# --- upgrades: data stored before a migration stays readable ------------------------------------

def _upgrade_db(store: Store, upto: int) -> str:
    """A database migrated only up to migration `upto`, as an older release left it."""
    db = f"{store.db}_up"
    migrate.apply(store.backend, db, RETENTION, [m for m in migrate.discover() if m.version <= upto])
    return db


def _run(store: Store, db: str, name: str, **params: object) -> list[dict[str, object]]:
    frame = catalogue.FixedFrame(datetime.fromtimestamp(BASE_MS // 1000 - 86400, UTC))
    return catalogue.run(store.backend, name, catalogue.Context.of(Settings(), frame, db), **params).dicts()


def _insert_json(store: Store, db: str, table: str, records: list[dict[str, object]], columns: int) -> None:
    """One INSERT per record (each its own part), with the columns an older release wrote."""
    spec = ALL_TABLES[table]
    conv = convert.CONVERTERS[table]
    for r in records:
        row = conv(FakeMessage(table, 0, 0, None, orjson.dumps(r)), int(BASE_MS // 1000))
        store.backend.insert(f"{db}.{table}", spec.columns[:columns], [row[:columns]])


def test_alert_history_survives_the_upgrade_and_merges(store: Store) -> None:
    db = _upgrade_db(store, 8)
    try:
        kept, merged = alert_record(1), alert_record(2)
        _insert_json(store, db, "hangup_alerts", [merged, alert_record(2, "resolved")], 18)
        # Before 0009 a merge keeps only the resolved row: that firing record is gone for good.
        store.backend.execute(f"OPTIMIZE TABLE {db}.hangup_alerts FINAL")
        _insert_json(store, db, "hangup_alerts", [kept, {**alert_record(1, "resolved"), "hangup_rate": 0.1}], 18)
        migrate.apply(store.backend, db, RETENTION)
        ddl = store.backend.query(f"SELECT create_table_query FROM system.tables WHERE database = '{db}' "
                                  "AND name = 'hangup_alerts'").scalar()
        assert "ORDER BY (alert_id, status)" in ddl
        store.backend.execute(f"OPTIMIZE TABLE {db}.hangup_alerts FINAL")  # merged after the upgrade: both stay
        assert store.backend.query(f"SELECT count() FROM {db}.hangup_alerts FINAL").scalar() == 3
        history = {r["alert_id"]: r for r in _run(store, db, "alert_history")}
        assert (history[kept["alert_id"]]["status"], history[kept["alert_id"]]["hangup_rate"]) == ("resolved", 0.5)
        assert history[merged["alert_id"]]["hangup_rate"] is None  # merged away before the upgrade
        assert _run(store, db, "active_alerts") == []
        # A second run of the whole chain changes nothing (every statement is idempotent).
        assert migrate.apply(store.backend, db, RETENTION) == []
    finally:
        migrate.drop(store.backend, db)


def test_borrower_calls_keep_their_rows_and_answers_through_the_rebuild(store: Store) -> None:
    """0018 sorts borrower_calls by the borrower's hash first: the calls stored before it are
    copied over, and the drill-down and the design-effect sums give the same answers."""
    db = _upgrade_db(store, 17)
    try:
        events = make_events(300, seed=18, start_ms=BASE_MS, span_s=3600)
        batch = batch_of(router_for(store), {"call_events": event_records(events + events[:30])}, int(time.time()))
        Flusher(store.backend, db, "sink@test", "Asia/Shanghai").flush(batch)
        someone = events[0].borrower_id
        before = (_run(store, db, "borrower_calls", borrower=someone), _run(store, db, "borrower_clustering"))
        stored = store.backend.query(f"SELECT count() FROM {db}.borrower_calls").scalar()
        migrate.apply(store.backend, db, RETENTION)
        ddl = store.backend.query(f"SELECT create_table_query FROM system.tables WHERE database = '{db}' "
                                  "AND name = 'borrower_calls'").scalar()
        assert "ORDER BY (cityHash64(borrower_id), borrower_id, occurred_at, event_id)" in ddl
        # The new table spells out the columns of the old one: same names, types and order.
        columns = f"SELECT table, name, type FROM system.columns WHERE database = '{db}'"  # in table order
        rows = store.backend.query(columns).rows
        assert [r[1:] for r in rows if r[0] == "borrower_calls"] == \
            [r[1:] for r in rows if r[0] == "borrower_calls_0013"]
        assert store.backend.query(f"SELECT count() FROM {db}.borrower_calls").scalar() == stored
        assert (_run(store, db, "borrower_calls", borrower=someone), _run(store, db, "borrower_clustering")) == before
        assert len(before[0]) == sum(e.borrower_id == someone for e in events)
        # The dashboard's masked view reads the new table by name.
        assert store.backend.query(f"SELECT count() FROM {migrate.dashboard_database(db)}.borrower_calls").scalar() \
            == stored
        assert migrate.apply(store.backend, db, RETENTION) == []
    finally:
        migrate.drop(store.backend, db)


def test_flags_stored_before_the_evidence_arrays_stay_readable(store: Store) -> None:
    db = _upgrade_db(store, 7)
    try:
        _insert_json(store, db, "borrower_flags", [flag_record(1)], 15)  # the columns before 0008
        migrate.apply(store.backend, db, RETENTION)
        _insert_json(store, db, "borrower_flags", [flag_record(2)], len(ALL_TABLES["borrower_flags"].columns))
        shown = {r["borrower_id"]: r["evidence"] for r in _run(store, db, "open_flag_list")}
        assert orjson.loads(shown["b-0001"])[0]["event_id"] == "e1-0"  # the JSON as stored
        assert shown["b-0002"].count(" refused @income_check agent-1 [v2]") == 3
    finally:
        migrate.drop(store.backend, db)
