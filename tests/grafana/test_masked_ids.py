"""Borrower ids masked on the dashboards and in the report (docs/privacy.md, "Masked borrower
ids"), on both servers: every panel's and alert rule's SQL reads the dashboard database
(<db>_dash, migration 0015) and returns no full borrower or loan id; the report rendered from it
neither; the re-dial export keeps the full ids. On the real server, the `grafana` user of the
local server (deploy/local/clickhouse.sh: limited to hangwatch_dash and hangwatch_test_dash)
cannot read the store's tables and reads every panel through the dashboard database."""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException

from hangwatch.cli import run as cli
from hangwatch.cli.common import _state
from hangwatch.i18n.glossary import words_for
from hangwatch.platform.settings import Settings
from hangwatch.report.data import collect
from hangwatch.report.render import render as render_report
from hangwatch.sinks import migrate
from hangwatch.sinks.backends.base import Backend
from hangwatch.sinks.backends.native import NativeBackend
from hangwatch.sinks.backends.url import parse_url
from testkit.sinks import CH_URL
from tests.grafana import macro_helper
from tests.grafana.pipeline_fixture import END, START, Fixture
from tests.grafana.test_panel_sql import INTERVAL, F, T, _rules, _targets

MASKED = re.compile(r"^.{0,2}\*[0-9a-f]{12}$")
SQLS = [(label, t["rawSql"]) for label, _, t in _targets()] + [
    (r["uid"], next(d for d in r["data"] if d["refId"] == "A")["model"]["rawSql"]) for r in _rules()]
# The local server's grafana user may read this dashboard database besides hangwatch_dash.
TEST_DB = "hangwatch_test"


def _ids(backend: Backend, db: str) -> set[str]:
    """Every borrower and loan id the store holds."""
    out: set[str] = set()
    for table in ("borrower_flags", "borrower_calls", "call_events"):
        for b, loan in backend.query(f"SELECT DISTINCT borrower_id, loan_id FROM {db}.{table}").rows:
            out |= {str(b), str(loan)}
    return out - {""}


@pytest.fixture(scope="module")
def raw_ids(backend: Backend, fixture_db: Fixture) -> set[str]:
    ids = _ids(backend, fixture_db.db)
    assert len(ids) > 1000
    return ids


def _expand(sql: str, dash: str) -> str:
    text = macro_helper.expand(sql, F, T, INTERVAL, None)
    assert "hangwatch." not in text, "a panel reads the store, not the dashboard database"
    return re.sub(r"\bhangwatch_dash\.(?=\w)", f"{dash}.", text)


def _cells(rows: list[tuple[Any, ...]]) -> Iterator[str]:
    for row in rows:
        for v in row:
            yield from (str(x) for x in v) if isinstance(v, list | tuple) else (str(v),)


def test_panels_and_rules_show_no_full_id(backend: Backend, fixture_db: Fixture, raw_ids: set[str]) -> None:
    dash = f"{fixture_db.db}_dash"
    shown: set[str] = set()
    for label, sql in SQLS:
        r = backend.query(_expand(sql, dash))
        leaked = {c for c in _cells(r.rows) if c in raw_ids}
        assert not leaked, (label, sorted(leaked)[:5])
        for col in ("borrower", "borrower_id", "loan_id"):
            if col in r.columns:
                shown |= {str(row[r.columns.index(col)]) for row in r.rows}
    assert shown and all(MASKED.match(v) for v in shown), sorted(shown)[:5]


def test_masking_is_one_to_one_and_keyed(backend: Backend, fixture_db: Fixture) -> None:
    db, dash = fixture_db.db, f"{fixture_db.db}_dash"
    raw = backend.query(f"SELECT uniqExact(borrower_id), count() FROM {db}.borrower_calls").rows[0]
    masked = backend.query(f"SELECT uniqExact(borrower_id), count(), countIf(borrower_id IN "
                           f"(SELECT borrower_id FROM {db}.borrower_calls)) FROM {dash}.borrower_calls").rows[0]
    assert masked == (raw[0], raw[1], 0), "one masked id per borrower, none equal to an id"
    # keyed: not the plain hash of the id
    plain = backend.query(f"SELECT concat(substring(borrower_id, 1, 2), '*', lower(hex(substring(SHA256(borrower_id), "
                          f"1, 6)))) AS m FROM {db}.borrower_calls LIMIT 1").scalar()
    assert not backend.query(f"SELECT count() FROM {dash}.borrower_calls WHERE borrower_id = '{plain}'").scalar()


def test_report_shows_masked_ids(backend: Backend, fixture_db: Fixture, raw_ids: set[str]) -> None:
    s = Settings()
    data = collect(backend, s, f"{fixture_db.db}_dash", START, END)
    assert data.flags.rows and all(MASKED.match(str(r["borrower_id"])) for r in data.flags.rows)
    html = render_report(data, words_for(s, "en"))
    tokens = set(re.findall(r"[\w-]+", html))
    assert not tokens & raw_ids, sorted(tokens & raw_ids)[:5]
    assert migrate.shown_database(s) == "hangwatch_dash"
    assert migrate.shown_database(Settings(privacy={"show_borrower_ids": True})) == "hangwatch"


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, backend: Backend, fixture_db: Fixture, chdb_root: Path) -> Iterator[None]:
    if isinstance(backend, NativeBackend):
        monkeypatch.setenv("HANGWATCH_CLICKHOUSE__URL", CH_URL)
    else:
        monkeypatch.delenv("HANGWATCH_CLICKHOUSE__URL", raising=False)
        monkeypatch.setenv("HANGWATCH_CLICKHOUSE__EMBEDDED_PATH", str(chdb_root))
    monkeypatch.setenv("HANGWATCH_CLICKHOUSE__DATABASE", fixture_db.db)
    monkeypatch.setenv("HANGWATCH_LANGUAGE", "en")
    monkeypatch.delenv("HANGWATCH_CONFIG", raising=False)
    _state.clear()
    yield
    _state.clear()


def test_export_keeps_full_ids(cli_env: None, backend: Backend, fixture_db: Fixture, raw_ids: set[str],
                               tmp_path: Path) -> None:
    out = tmp_path / "flags.csv"
    assert cli(["export", "flags", "--all", "--since", START.isoformat(), "--until", END.isoformat(),
                "--out", str(out)]) == 0
    cells = {c for row in csv.reader(out.read_text(encoding="utf-8-sig").splitlines()) for c in row}
    flagged = {str(f["borrower_id"]) for f in fixture_db.flags}
    assert cells & flagged and not any(MASKED.match(c) for c in cells)


class _Grafana:
    """The Grafana datasource's connection: user grafana, default database the dashboard one
    (the project's backend always connects to `default`, which this user may not)."""

    def __init__(self, database: str) -> None:
        u = parse_url(CH_URL)
        self.client = Client(u.host, port=u.port, user="grafana", database=database,
                             password=os.environ.get("HANGWATCH_GRAFANA_CH_PASSWORD", "grafana"),
                             # as the plugin does: changed settings travel to the loopback user too
                             settings={"max_execution_time": 60})

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        rows, types = self.client.execute(sql, with_column_types=True)
        return [name for name, _ in types], rows

    def close(self) -> None:
        self.client.disconnect()


DENIED = "Access denied|ACCESS_DENIED|Not enough privileges"


@pytest.fixture(scope="module")
def test_store(backend: Backend, fixture_db: Fixture) -> Iterator[str]:
    """hangwatch_test: the fixture's rows in the store the local grafana user may read the
    dashboard database of."""
    if not isinstance(backend, NativeBackend):
        pytest.skip("users exist on the server only")
    migrate.drop(backend, TEST_DB)
    migrate.apply(backend, TEST_DB, {})
    tables = backend.query(f"SELECT name FROM system.tables WHERE database = '{TEST_DB}' "
                           "AND name != 'schema_migrations'").rows
    for (table,) in tables:
        backend.execute(f"INSERT INTO {TEST_DB}.{table} SELECT * FROM {fixture_db.db}.{table}")
    yield TEST_DB
    migrate.drop(backend, TEST_DB)


@pytest.mark.clickhouse
def test_grafana_user_reads_the_dashboard_database_only(test_store: str, raw_ids: set[str]) -> None:
    dash = f"{test_store}_dash"
    g = _Grafana(dash)
    try:
        for table in ("borrower_flags", "borrower_calls", "call_events", "rollup_1m", "dead_letters"):
            for db in (test_store, f"{dash}_mask"):
                with pytest.raises(ServerException, match=DENIED):
                    g.query(f"SELECT count() FROM {db}.{table}")
        with pytest.raises(ServerException):  # the stored dead letters' messages are not in the dashboard database
            g.query(f"SELECT value_b64 FROM {dash}.dead_letters")
        # readonly=2 may change settings: reading the local shard as itself is refused, not a way in
        with pytest.raises(ServerException, match=DENIED):
            g.query(f"SELECT count() FROM {dash}.borrower_flags SETTINGS prefer_localhost_replica = 1")
        rows = 0
        for label, sql in SQLS:
            _, got = g.query(_expand(sql, dash))
            rows += len(got)
            leaked = {c for c in _cells(got) if c in raw_ids}
            assert not leaked, (label, sorted(leaked)[:5])
        assert rows
        _, ids = g.query(f"SELECT DISTINCT borrower_id FROM {dash}.borrower_flags")
        assert ids and all(MASKED.match(b) for (b,) in ids)
    finally:
        g.close()
