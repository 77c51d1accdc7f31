"""ClickHouse server over the native TCP protocol (clickhouse-driver)."""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from clickhouse_driver import Client
from clickhouse_driver import errors as ch_errors

from hangwatch.sinks.backends.base import Result, ServerVersion
from hangwatch.sinks.backends.errors import BackendError, DataRejected, Unavailable, classify
from hangwatch.sinks.backends.url import NativeTarget

log = logging.getLogger(__name__)

# Errors raised by the driver itself when it cannot reach or keep talking to the server.
_NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    ch_errors.NetworkError, ch_errors.SocketTimeoutError, ch_errors.UnexpectedPacketFromServerError,
    ch_errors.UnknownPacketFromServerError, EOFError, OSError,
)
# Errors the driver raises while serialising values for an INSERT: the values are at fault.
_CLIENT_DATA_ERRORS: tuple[type[BaseException], ...] = (
    ch_errors.TypeMismatchError, ch_errors.LogicalError, ch_errors.TooLargeStringSize,
    TypeError, ValueError, AttributeError, OverflowError, struct.error,
)
# Settings we want when the server knows them (older servers reject unknown settings).
_WANTED_SETTINGS = {
    # A backfill batch may span many day partitions; the batch size bounds the work anyway.
    "max_partitions_per_insert_block": 0,
}


class NativeBackend:
    name = "native"

    def __init__(self, target: NativeTarget, *, connect_timeout_s: float = 5.0,
                 send_receive_timeout_s: float = 60.0, session_settings: dict[str, Any] | None = None) -> None:
        self.target = target
        kwargs: dict[str, Any] = {}
        if target.secure:
            kwargs.update(secure=True, verify=target.verify)
            if target.ca_certs:
                kwargs["ca_certs"] = target.ca_certs
        # Connect to `default`: the project database may not exist yet (migrate creates it);
        # every statement names its database explicitly.
        self._client = Client(
            host=target.host, port=target.port, user=target.user, password=target.password,
            database="default", connect_timeout=connect_timeout_s, send_receive_timeout=send_receive_timeout_s,
            sync_request_timeout=connect_timeout_s, client_name="hangwatch", settings=dict(session_settings or {}),
            **kwargs,
        )
        self._version: ServerVersion | None = None
        self._server_tz: ZoneInfo | None = None
        self._settings: dict[str, Any] | None = None

    # -- the Backend interface -------------------------------------------------------------
    def execute(self, sql: str) -> None:
        self._run(sql)

    def query(self, sql: str) -> Result:
        rows, types = self._run(sql, with_column_types=True)
        tz = self._timezone()
        conv = [_naive_to(tz) if t.startswith(("DateTime", "Nullable(DateTime")) else None for _, t in types]
        if any(conv):
            rows = [tuple(c(v) if c else v for c, v in zip(conv, r, strict=True)) for r in rows]
        return Result([n for n, _ in types], [t for _, t in types], [tuple(r) for r in rows])

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        # Columnar: one list per column; the driver rewrites items in place, so lists not tuples.
        data = [list(col) for col in zip(*rows, strict=True)]
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES"
        try:
            self._client.execute(sql, data, columnar=True, settings=self._insert_settings())
        except _NETWORK_ERRORS as e:
            raise Unavailable(f"ClickHouse at {self.target.redacted()} unreachable: {e}") from e
        except ch_errors.ServerException as e:
            raise classify(str(e), e.code, inserting=True) from e
        except _CLIENT_DATA_ERRORS as e:
            raise DataRejected(f"{type(e).__name__}: {e}", getattr(e, "code", None)) from e

    def server_version(self) -> ServerVersion:
        if self._version is None:
            self._version = ServerVersion.parse(str(self._run("SELECT version()")[0][0]))
        return self._version

    def close(self) -> None:
        self._client.disconnect()

    # -- helpers ---------------------------------------------------------------------------
    def _run(self, sql: str, **kwargs: Any) -> Any:
        try:
            return self._client.execute(sql, **kwargs)
        except _NETWORK_ERRORS as e:
            raise Unavailable(f"ClickHouse at {self.target.redacted()} unreachable: {e}") from e
        except ch_errors.ServerException as e:
            raise classify(str(e), e.code, inserting=False) from e
        except ch_errors.Error as e:
            raise BackendError(str(e), e.code) from e

    def _timezone(self) -> ZoneInfo:
        if self._server_tz is None:
            self._server_tz = ZoneInfo(str(self._run("SELECT timezone()")[0][0]))
        return self._server_tz

    def _insert_settings(self) -> dict[str, Any]:
        if self._settings is None:
            names = ", ".join(f"'{n}'" for n in _WANTED_SETTINGS)
            known = {r[0] for r in self._run(f"SELECT name FROM system.settings WHERE name IN ({names})")}
            self._settings = {k: v for k, v in _WANTED_SETTINGS.items() if k in known}
        return self._settings


def _naive_to(tz: ZoneInfo) -> Any:
    """Plain DateTime values come back naive in the server's time zone; make them aware."""

    def conv(v: Any) -> Any:
        if isinstance(v, datetime) and v.tzinfo is None:
            return v.replace(tzinfo=tz)
        return v

    return conv
