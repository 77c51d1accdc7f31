"""Storage backends behind one interface (base.Backend), chosen by the settings:
`clickhouse.url` set -> a ClickHouse server over the native protocol; unset -> the embedded
chdb store in `clickhouse.embedded_path`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from hangwatch.platform.settings import ClickHouseSettings
from hangwatch.sinks.backends.base import Backend, Result, ServerVersion
from hangwatch.sinks.backends.errors import BackendError, DataRejected, Unavailable

__all__ = ["Backend", "BackendError", "DataRejected", "Result", "ServerVersion", "Unavailable", "database_name",
           "open_backend", "opened", "where"]


def open_backend(ch: ClickHouseSettings) -> Backend:
    if ch.url is None:
        from hangwatch.sinks.backends.embedded import EmbeddedBackend

        return EmbeddedBackend(ch.embedded_path)
    from hangwatch.sinks.backends.native import NativeBackend
    from hangwatch.sinks.backends.url import parse_url

    # Cluster mode: an INSERT (also INSERT ... SELECT) through a Distributed table returns only
    # once its rows are on insert_quorum replicas of their shard, so offsets committed after it
    # never point past rows that one lost server held alone.
    session = {"insert_distributed_sync": 1, "insert_quorum": ch.insert_quorum} if ch.cluster else {}
    return NativeBackend(parse_url(ch.url.get_secret_value()), connect_timeout_s=ch.connect_timeout_s,
                         send_receive_timeout_s=ch.send_receive_timeout_s, session_settings=session)


def database_name(ch: ClickHouseSettings) -> str:
    """The project database: the URL's path when it names one, else `clickhouse.database`."""
    if ch.url is not None:
        from hangwatch.sinks.backends.url import parse_url

        db = parse_url(ch.url.get_secret_value()).database
        if db:
            return db
    return ch.database


@contextmanager
def opened(ch: ClickHouseSettings) -> Iterator[tuple[Backend, str]]:
    """(backend, database) for a command; closed afterwards."""
    backend = open_backend(ch)
    try:
        yield backend, database_name(ch)
    finally:
        backend.close()


def where(ch: ClickHouseSettings) -> str:
    """Where the data lives, for messages (never the password)."""
    if ch.url is None:
        return f"embedded store {ch.embedded_path}"
    from hangwatch.sinks.backends.url import parse_url

    return f"ClickHouse {parse_url(ch.url.get_secret_value()).redacted()}"
