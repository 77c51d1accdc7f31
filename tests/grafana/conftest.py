"""The fixture store shared by the panel, alert, catalogue and report tests, on both
supported servers: embedded chdb (current ClickHouse) and the real server (Debian's 18.16,
marker `clickhouse`, testkit.sinks.CH_URL). Every test that takes `backend` and
`fixture_db` runs once per server.

chdb holds one folder per process: the session's folder from tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hangwatch.sinks import migrate
from hangwatch.sinks.backends.base import Backend
from hangwatch.sinks.backends.embedded import EmbeddedBackend
from hangwatch.sinks.backends.native import NativeBackend
from hangwatch.sinks.backends.url import parse_url
from testkit.sinks import CH_URL
from tests.grafana.pipeline_fixture import Fixture, build

SERVERS = ["embedded", pytest.param("native", marks=pytest.mark.clickhouse)]


@pytest.fixture(scope="session", params=SERVERS)
def server(request: pytest.FixtureRequest, chdb_root: Path) -> Iterator[tuple[Backend, Fixture]]:
    backend: Backend = EmbeddedBackend(chdb_root) if request.param == "embedded" else NativeBackend(parse_url(CH_URL))
    db = f"grafana_{uuid.uuid4().hex[:8]}"
    fx = build(backend, db)
    yield backend, fx
    migrate.drop(backend, db)  # the store and its dashboard databases (0015)
    backend.close()


@pytest.fixture(scope="session")
def backend(server: tuple[Backend, Fixture]) -> Backend:
    return server[0]


@pytest.fixture(scope="session")
def fixture_db(server: tuple[Backend, Fixture]) -> Fixture:
    return server[1]
