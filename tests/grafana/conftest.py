"""A chdb store with the fixture data, shared by the panel, alert and report tests.

chdb holds one folder per process: reuse the folder another test module already opened
(the sink tests keep one open for the session), else use a temporary one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sinks.backends import embedded
from sinks.backends.embedded import EmbeddedBackend
from tests.grafana.pipeline_fixture import Fixture, build


@pytest.fixture(scope="session")
def chdb_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBackend]:
    open_path: Path | None = embedded._session_path
    backend = EmbeddedBackend(open_path or tmp_path_factory.mktemp("grafana-chdb"))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def fixture_db(chdb_backend: EmbeddedBackend) -> Iterator[Fixture]:
    db = f"grafana_{uuid.uuid4().hex[:8]}"
    fx = build(chdb_backend, db)
    yield fx
    chdb_backend.execute(f"DROP DATABASE IF EXISTS {db}")
