"""Dead-letter records: the original bytes, the precise error and where the message came from."""

from __future__ import annotations

import base64

import orjson

from hangwatch.schemas.call_outcome import ContractError, format_ts
from hangwatch.schemas.records import DeadLetter


def dead_letter(*, topic: str, partition: int, offset: int, timestamp_ms: int | None, key: bytes | None,
                value: bytes | None, error: ContractError, now_ms: int, worker: str) -> DeadLetter:
    return {
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "source_timestamp_ms": timestamp_ms,
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "value_b64": base64.b64encode(value).decode() if value is not None else None,
        "error_kind": error.kind,
        "error_field": error.field,
        "error": str(error),
        "received_at": format_ts(now_ms),
        "worker": worker,
    }


def encode(record: DeadLetter) -> bytes:
    return orjson.dumps(record)
