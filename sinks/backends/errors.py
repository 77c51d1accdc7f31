"""Backend-neutral errors. The writer's recovery policy depends only on these three classes:

- Unavailable: the store cannot be reached or is overloaded right now. Retry the same batch
  later; nothing about the data is wrong.
- DataRejected: the store (or the client library serialising for it) refused the data of an
  INSERT. Some row of the batch is bad; splitting the batch finds it.
- BackendError: anything else (bad SQL, missing table, no permission). Retrying will not help
  until someone acts, but the data is not at fault either, so it is never dead-lettered.
"""

from __future__ import annotations

import re
from typing import Final

# ClickHouse error codes (src/Common/ErrorCodes.cpp) that mean "the values are bad".
DATA_ERROR_CODES: Final = frozenset({
    6,    # CANNOT_PARSE_TEXT
    26,   # CANNOT_PARSE_QUOTED_STRING
    27,   # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,   # CANNOT_PARSE_DATE
    41,   # CANNOT_PARSE_DATETIME
    53,   # TYPE_MISMATCH
    69,   # ARGUMENT_OUT_OF_BOUND
    70,   # CANNOT_CONVERT_TYPE
    72,   # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    691,  # UNKNOWN_ELEMENT_OF_ENUM (older servers report it as 36 BAD_ARGUMENTS, see below)
})
# Codes that mean "try again later": overload, timeouts, network trouble seen by the server.
TRANSIENT_ERROR_CODES: Final = frozenset({
    159,  # TIMEOUT_EXCEEDED
    164,  # READONLY (a replica or disk switched to read-only)
    202,  # TOO_MANY_SIMULTANEOUS_QUERIES
    209,  # SOCKET_TIMEOUT
    210,  # NETWORK_ERROR
    225,  # NO_ZOOKEEPER (cluster mode: replication is coordinated through it)
    279,  # ALL_CONNECTION_TRIES_FAILED (a shard unreachable through a Distributed table)
    285,  # TOO_FEW_LIVE_REPLICAS (insert_quorum cannot be met now)
    286,  # UNSATISFIED_QUORUM_FOR_PREVIOUS_WRITE
    289,  # REPLICA_IS_NOT_IN_QUORUM
    241,  # MEMORY_LIMIT_EXCEEDED
    242,  # TABLE_IS_READ_ONLY
    252,  # TOO_MANY_PARTS
    319,  # UNKNOWN_STATUS_OF_INSERT
    394,  # QUERY_WAS_CANCELLED (server shutting down)
    425,  # SYSTEM_ERROR
    999,  # KEEPER_EXCEPTION (ZooKeeper session lost)
})
# Codes a concurrent `CREATE ... IF NOT EXISTS` may still raise when two processes race
# (the check and the create are not atomic on old servers).
ALREADY_EXISTS_CODES: Final = frozenset({57, 82, 15})  # TABLE_ALREADY_EXISTS, DATABASE_ALREADY_EXISTS, DUPLICATE_COLUMN
UNKNOWN_TABLE_CODES: Final = frozenset({60, 81})  # UNKNOWN_TABLE, UNKNOWN_DATABASE

_CODE_RE = re.compile(r"Code:\s*(\d+)")


class BackendError(Exception):
    """An error from the store; `code` is the ClickHouse error code when there is one."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Unavailable(BackendError):
    """The store is unreachable or overloaded; the same request may succeed later."""


class DataRejected(BackendError):
    """The store refused the values of an INSERT."""


def code_from_message(message: str) -> int | None:
    m = _CODE_RE.search(message)
    return int(m.group(1)) if m else None


def short(message: str) -> str:
    """The message without the server's stack trace (old servers append one)."""
    return message.split(" Stack trace:", 1)[0].split("\nStack trace:", 1)[0].strip()


def classify(message: str, code: int | None, *, inserting: bool) -> BackendError:
    """Turn a server error into the class the caller's policy needs."""
    message = short(message)
    if code in TRANSIENT_ERROR_CODES:
        return Unavailable(message, code)
    if inserting and (code in DATA_ERROR_CODES or (code == 36 and "Unknown element" in message)):
        return DataRejected(message, code)
    return BackendError(message, code)
