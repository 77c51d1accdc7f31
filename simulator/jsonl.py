"""JSONL files of simulated records: one record per line, exact bytes preserved.

Line format (UTF-8, one JSON object per line):
  {"key": "b-…" | null, "value": {…}, "fault": …, "error_kind": …, "error_field": …, "lateness_ms": …}
`value` is the message embedded as JSON when that reproduces its bytes exactly (re-encoding
with orjson gives the same bytes, true of everything the simulator writes as JSON); any other
value (not JSON, not UTF-8) is stored as "value_b64" instead. A key that is not UTF-8 is
stored as "key_b64". Only key and value matter for replay; the labels let tests rebuild their
oracle from a file. Lines written by other tools need only key/value (or the _b64 forms)."""

from __future__ import annotations

import base64
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

from hangwatch.schemas.call_outcome import ContractError, from_dict
from hangwatch.simulator.records import MALFORMED, SimRecord

# decode() rejects events too far in the future by the wall clock; a file's valid events are
# valid by construction, whenever it is read.
_NO_FUTURE_CHECK = 2**62


def record_to_line(r: SimRecord) -> bytes:
    d: dict[str, Any] = {}
    if r.key is None:
        d["key"] = None
    else:
        try:
            d["key"] = r.key.decode()
        except UnicodeDecodeError:
            d["key_b64"] = base64.b64encode(r.key).decode()
    try:
        if orjson.dumps(orjson.loads(r.value)) != r.value:
            raise ValueError("does not survive re-encoding")
        d["value"] = orjson.Fragment(r.value)
    except (ValueError, TypeError):
        d["value_b64"] = base64.b64encode(r.value).decode()
    d["fault"] = r.fault
    if r.error_kind is not None:
        d["error_kind"] = r.error_kind
        d["error_field"] = r.error_field
    if r.lateness_ms:
        d["lateness_ms"] = r.lateness_ms
    return orjson.dumps(d) + b"\n"


def line_to_record(line: bytes | str, *, events: bool = True) -> SimRecord:
    """The record of one line; with events=False the CallOutcome is not rebuilt (replay only
    needs the bytes, and decoding every event would halve its speed)."""
    d = orjson.loads(line)
    if not isinstance(d, dict):
        raise ValueError("expected a JSON object per line")
    if "key_b64" in d:
        key: bytes | None = base64.b64decode(d["key_b64"])
    elif "key" in d:
        key = None if d["key"] is None else str(d["key"]).encode()
    else:
        raise ValueError("line has neither key nor key_b64")
    if "value_b64" in d:
        value = base64.b64decode(d["value_b64"])
    elif "value" in d:
        value = orjson.dumps(d["value"])
    else:
        raise ValueError("line has neither value nor value_b64")
    fault = d.get("fault")
    event = None
    if events and fault != MALFORMED:
        try:
            event = from_dict(orjson.loads(value), now_ms=_NO_FUTURE_CHECK)
        except (ContractError, orjson.JSONDecodeError):
            event = None  # an unlabelled file may hold anything; replay still sends it as is
    return SimRecord(key=key, value=value, event=event, fault=fault, error_kind=d.get("error_kind"),
                     error_field=d.get("error_field"), lateness_ms=int(d.get("lateness_ms", 0)))


def write_jsonl(records: Iterable[SimRecord], path: Path | str) -> int:
    """Write records to `path` (replacing it); returns how many."""
    n = 0
    with open(path, "wb", buffering=1 << 20) as f:
        for r in records:
            f.write(record_to_line(r))
            n += 1
    return n


def read_jsonl(path: Path | str, *, events: bool = True) -> Iterator[SimRecord]:
    """Records of a JSONL file in file order. Blank lines are skipped; a bad line raises
    ValueError naming its line number. events=False skips rebuilding the CallOutcomes."""
    with open(path, "rb") as f:
        for no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield line_to_record(line, events=events)
            except (ValueError, TypeError, KeyError) as e:
                raise ValueError(f"{path}:{no}: {e}") from None
