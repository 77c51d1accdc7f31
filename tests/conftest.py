"""Fixtures shared by every test package.

chdb runs one embedded ClickHouse per process, bound to one folder: every test that needs
the embedded store uses this one session-wide folder (each with its own database)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hangwatch.platform.native import verify_core
from hangwatch.sinks.backends.embedded import EmbeddedBackend


def pytest_sessionstart(session: pytest.Session) -> None:
    """The tests run whatever the test command built; a stale compiled core must not be it."""
    verify_core()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The cluster tests need the local cluster (deploy/local/cluster.sh); `make cluster-test`
    starts it and sets HANGWATCH_CLUSTER_TESTS=1. Elsewhere they are deselected, not skipped:
    the normal suite neither runs them nor reports them as passed."""
    if os.environ.get("HANGWATCH_CLUSTER_TESTS") == "1":
        return
    keep = [i for i in items if i.get_closest_marker("cluster") is None]
    if len(keep) != len(items):
        config.hook.pytest_deselected(items=[i for i in items if i.get_closest_marker("cluster") is not None])
        items[:] = keep


@pytest.fixture(scope="session")
def chdb_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("chdb")
    keeper = EmbeddedBackend(path)  # held open for the session, so no test needs a second folder
    yield path
    keeper.close()
