"""Fixtures for the sink tests: a fresh database per test on the real ClickHouse server
(127.0.0.1:9000, marker `clickhouse`) and on chdb (one temp folder per session, since chdb
holds one folder per process), plus Kafka topics per test (marker `kafka`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from hangwatch.platform.settings import ClickHouseSettings
from hangwatch.sinks import migrate
from hangwatch.sinks.backends import Backend
from hangwatch.sinks.backends.embedded import EmbeddedBackend
from hangwatch.sinks.backends.native import NativeBackend
from hangwatch.sinks.backends.url import parse_url
from testkit.sinks import CH_URL, KAFKA, Store, Topics
from tests.sinks.sinkhelpers import RUN_TAG


@pytest.fixture(scope="session")
def embedded_root(chdb_root: Path) -> Path:
    return chdb_root  # the one chdb folder of the test session (tests/conftest.py)


_counter = iter(range(1_000_000))


def _new_store(kind: str, embedded_root: Path) -> Store:
    db = f"{RUN_TAG}_{next(_counter)}"
    retention = ClickHouseSettings().retention_days
    backend: Backend
    if kind == "native":
        backend = NativeBackend(parse_url(CH_URL))
        ch = ClickHouseSettings(url=SecretStr(CH_URL), database=db)
    else:
        backend = EmbeddedBackend(embedded_root)
        ch = ClickHouseSettings(embedded_path=embedded_root, database=db)
    migrate.apply(backend, db, retention)
    return Store(kind, backend, db, ch)


def _drop(s: Store) -> None:
    migrate.drop(s.backend, s.db)  # the store and its dashboard databases (0015)
    s.backend.close()


@pytest.fixture(params=[pytest.param("native", marks=pytest.mark.clickhouse), "embedded"])
def store(request: pytest.FixtureRequest, embedded_root: Path) -> Iterator[Store]:
    s = _new_store(request.param, embedded_root)
    yield s
    _drop(s)


@pytest.fixture
def native_store(embedded_root: Path) -> Iterator[Store]:
    s = _new_store("native", embedded_root)
    yield s
    _drop(s)


@pytest.fixture
def topics() -> Iterator[Topics]:
    t = Topics(KAFKA)
    yield t
    t.delete()
