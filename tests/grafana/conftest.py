"""A chdb store with the fixture data, shared by the panel, alert and report tests.

chdb holds one folder per process: the session's folder from tests/conftest.py."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from hangwatch.sinks.backends.embedded import EmbeddedBackend
from tests.grafana.pipeline_fixture import Fixture, build


@pytest.fixture(scope="session")
def chdb_backend(chdb_root: Path) -> Iterator[EmbeddedBackend]:
    backend = EmbeddedBackend(chdb_root)
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def fixture_db(chdb_backend: EmbeddedBackend) -> Iterator[Fixture]:
    db = f"grafana_{uuid.uuid4().hex[:8]}"
    fx = build(chdb_backend, db)
    yield fx
    chdb_backend.execute(f"DROP DATABASE IF EXISTS {db}")
