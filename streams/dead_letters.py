"""Dead-letter records: the original bytes, the precise error and where the message came from.

A dead letter must not become a store of personal data (docs/privacy.md): every mobile and
resident ID number in the key, the value, the error text and the field path is masked (its
digits replaced by '*', same length), whatever the error kind, and a keyed hash (HMAC-SHA256,
`privacy.hash_key`) of each is kept in `personal_data`, so the producer can find the record
of a number it sent.
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from hangwatch.schemas import personal_data
from hangwatch.schemas.call_outcome import ContractError, format_ts
from hangwatch.schemas.records import DeadLetter, PersonalDataHash


def dead_letter(*, topic: str, partition: int, offset: int, timestamp_ms: int | None, key: bytes | None,
                value: bytes | None, error: ContractError, now_ms: int, worker: str,
                hash_key: bytes | None = None) -> DeadLetter:
    found: dict[tuple[str, str], str | None] = {}  # (type, normalized) -> field path
    for f in error.findings:
        found.setdefault((f.type, f.normalized), personal_data.mask_text(f.field) if f.field else None)
    masked_key = _mask(key, found)
    masked_value = _mask(value, found)
    if masked_value is not None and b"\\" in masked_value and _still_holds(masked_value):
        # Digits the byte scan cannot see (JSON escapes such as \u0031): store the event
        # re-serialised with every string masked instead of its bytes.
        masked_value = orjson.dumps(personal_data.mask_value(orjson.loads(masked_value)))
    record: DeadLetter = {
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "source_timestamp_ms": timestamp_ms,
        "key_b64": base64.b64encode(masked_key).decode() if masked_key is not None else None,
        "value_b64": base64.b64encode(masked_value).decode() if masked_value is not None else None,
        "error_kind": error.kind,
        "error_field": personal_data.mask_text(error.field) if error.field else error.field,
        "error": personal_data.mask_text(str(error)),
        "received_at": format_ts(now_ms),
        "worker": worker,
    }
    if found:
        record["personal_data"] = [_hash(t, n, field, hash_key) for (t, n), field in found.items()]
    return record


def masked_key(key: bytes | None) -> bytes:
    """The key of the dead letter's own Kafka record: the original key, masked."""
    return personal_data.mask_bytes(key)[0] if key else b""


def _mask(raw: bytes | None, found: dict[tuple[str, str], str | None]) -> bytes | None:
    if raw is None:
        return None
    masked, matches = personal_data.mask_bytes(raw)
    for m in matches:
        found.setdefault(m, None)
    return masked


def _still_holds(masked: bytes) -> bool:
    try:
        doc: Any = orjson.loads(masked)
    except orjson.JSONDecodeError:
        return False
    out: list[personal_data.Finding] = []
    personal_data.find_in_value(doc, "", out)
    return bool(out)


def _hash(type_: str, normalized: str, field: str | None, hash_key: bytes | None) -> PersonalDataHash:
    return {"field": field, "type": type_,  # type: ignore[typeddict-item]  # MOBILE or RESIDENT_ID
            "hmac_sha256": personal_data.keyed_hash(hash_key, normalized) if hash_key else None}


def encode(record: DeadLetter) -> bytes:
    return orjson.dumps(record)
