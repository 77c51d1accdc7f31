"""Embedded ClickHouse (chdb): the database lives in a folder and runs inside this process.

chdb allows one embedded server per process, bound to one folder, and a folder can be open
in one process only. The registry below hands every EmbeddedBackend of the process the same
session for a folder (sessions are thread-safe; chdb serialises their queries), refuses a
second folder with a clear message, and closes the session when the last user closes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import chdb.session
import orjson

from hangwatch.sinks.backends.base import Result, ServerVersion
from hangwatch.sinks.backends.errors import BackendError, DataRejected, classify, code_from_message
from hangwatch.sinks.backends.values import converter

log = logging.getLogger(__name__)

# Session settings: make JSON input strict where chdb would otherwise guess, and make
# 64-bit integers come back as JSON numbers.
_SESSION_SETTINGS = (
    "SET output_format_json_quote_64bit_integers = 0",
    "SET input_format_null_as_default = 0",
    "SET input_format_json_read_numbers_as_strings = 0",
    "SET max_partitions_per_insert_block = 0",
)

_lock = threading.Lock()
_session: chdb.session.Session | None = None
_session_path: Path | None = None
_refs = 0


def _acquire(path: Path) -> chdb.session.Session:
    global _session, _session_path, _refs
    with _lock:
        if _session is not None:
            if _session_path != path:
                raise BackendError(
                    f"the embedded store {_session_path} is already open in this process; chdb can hold one "
                    f"folder per process, so {path} cannot be opened too")
            _refs += 1
            return _session
        path.mkdir(parents=True, exist_ok=True)
        try:
            session = chdb.session.Session(str(path))
        except RuntimeError as e:
            raise BackendError(
                f"cannot open the embedded store {path}: {e}. chdb lets one process use a folder at a time: "
                "stop the other hangwatch process using it, or use a ClickHouse server "
                "(HANGWATCH_CLICKHOUSE__URL=clickhouse://...)") from e
        for stmt in _SESSION_SETTINGS:
            session.query(stmt)
        _session, _session_path, _refs = session, path, 1
        return session


def _release() -> None:
    global _session, _session_path, _refs
    with _lock:
        _refs -= 1
        if _refs == 0 and _session is not None:
            _session.close()
            _session, _session_path = None, None


class EmbeddedBackend:
    name = "embedded"

    def __init__(self, path: Path) -> None:
        self.path = path.resolve()
        self._session: chdb.session.Session | None = _acquire(self.path)
        self._tz: str | None = None
        self._version: ServerVersion | None = None

    def execute(self, sql: str) -> None:
        self._run(sql, "CSV", inserting=False)

    def query(self, sql: str) -> Result:
        raw = self._run(sql, "JSONCompact", inserting=False)
        if not raw.strip():
            return Result([], [], [])
        doc = orjson.loads(raw)
        meta = doc["meta"]
        tz = self._timezone()
        convs = [converter(m["type"], tz) for m in meta]
        rows = [tuple(c(v) for c, v in zip(convs, r, strict=True)) for r in doc["data"]]
        return Result([m["name"] for m in meta], [m["type"] for m in meta], rows)

    def insert(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        try:
            # One JSON array per row: compact, no per-row dict, and orjson is fast.
            body = b"\n".join(orjson.dumps(r) for r in rows).decode()
        except (TypeError, orjson.JSONEncodeError) as e:
            raise DataRejected(f"cannot serialise a row for {table}: {e}") from e
        self._run(f"INSERT INTO {table} ({', '.join(columns)}) FORMAT JSONCompactEachRow\n{body}", "CSV",
                  inserting=True)

    def server_version(self) -> ServerVersion:
        if self._version is None:
            self._version = ServerVersion.parse(self._scalar("SELECT version()"))
        return self._version

    def close(self) -> None:
        if self._session is not None:
            self._session = None
            _release()

    def _timezone(self) -> str:
        if self._tz is None:
            self._tz = self._scalar("SELECT timezone()")
        return self._tz

    def _scalar(self, sql: str) -> str:
        return str(orjson.loads(self._run(sql, "JSONCompact", inserting=False))["data"][0][0])

    def _run(self, sql: str, fmt: str, *, inserting: bool) -> str:
        if self._session is None:
            raise BackendError("the embedded backend is closed")
        try:
            res = self._session.query(sql.rstrip().rstrip(";"), fmt)
        except RuntimeError as e:  # chdb's ChdbError is a RuntimeError
            msg = str(e)
            raise classify(msg, code_from_message(msg), inserting=inserting) from e
        return res.bytes().decode() if hasattr(res, "bytes") else str(res)
