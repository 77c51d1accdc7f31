"""The CallOutcome v1 contract: every example in schemas/examples is a fixture here."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
import orjson
import pytest

from schemas.call_outcome import ContractError, decode, from_dict, parse_ts

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "call_outcome"
SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "json" / "call_outcome.v1.json").read_text())
NOW_MS = parse_ts("2026-11-28T00:00:00Z")  # "now" for the future-timestamp check
VALID = sorted((EXAMPLES / "valid").glob("*.json"))
INVALID = sorted((EXAMPLES / "invalid").glob("*.json"))


@pytest.mark.parametrize("path", VALID, ids=lambda p: p.stem)
def test_valid_examples_decode_and_match_json_schema(path: Path) -> None:
    raw = path.read_bytes()
    doc = json.loads(raw)
    jsonschema.validate(doc, SCHEMA)
    e = decode(raw, doc["borrower_id"].encode(), now_ms=NOW_MS)
    assert e.event_id == doc["event_id"]
    assert e.occurred_at_ms == parse_ts(doc["occurred_at"])
    # round trip through the wire form keeps every field, extra fields included
    again = decode(e.to_json(), e.borrower_id.encode(), now_ms=NOW_MS)
    assert again == e and again.extra == e.extra


def test_extra_fields_are_kept() -> None:
    e = decode((EXAMPLES / "valid" / "completed_with_extra_field.json").read_bytes(), b"b-7f3a9c", now_ms=NOW_MS)
    assert e.extra == {"dialler_region": "east"}
    assert orjson.loads(e.to_json())["dialler_region"] == "east"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_examples_fail_precisely(path: Path) -> None:
    case = json.loads(path.read_text())
    value = base64.b64decode(case["value_b64"])
    with pytest.raises(ContractError) as info:
        decode(value, case["key"].encode(), now_ms=NOW_MS)
    assert info.value.kind == case["expect"]["error_kind"]
    assert info.value.field == case["expect"]["error_field"]
    assert str(info.value)  # a readable message, never empty


# Transport-level and clock-relative checks are the consumer's; JSON Schema cannot state them.
CONSUMER_ONLY = {"not_json", "not_utf8", "oversized", "empty_key", "future_timestamp"}
SCHEMA_EXPRESSIBLE = [p for p in INVALID if json.loads(p.read_text())["expect"]["error_kind"] not in CONSUMER_ONLY]


@pytest.mark.parametrize("path", SCHEMA_EXPRESSIBLE, ids=lambda p: p.stem)
def test_json_schema_rejects_what_it_can_express(path: Path) -> None:
    case = json.loads(path.read_text())
    doc = json.loads(base64.b64decode(case["value_b64"]))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA)


def test_key_must_equal_borrower_id() -> None:
    raw = (EXAMPLES / "valid" / "robot_declined.json").read_bytes()
    with pytest.raises(ContractError) as info:
        decode(raw, b"someone-else", now_ms=NOW_MS)
    assert info.value.kind == "key_mismatch"


def test_bool_is_not_accepted_as_number_and_int_not_as_bool() -> None:
    base = json.loads((EXAMPLES / "valid" / "robot_declined.json").read_text())
    with pytest.raises(ContractError, match="duration_s"):
        from_dict({**base, "duration_s": True}, now_ms=NOW_MS)
    with pytest.raises(ContractError, match="pre_notified"):
        from_dict({**base, "pre_notified": 1}, now_ms=NOW_MS)


def test_timestamp_offsets_are_honoured() -> None:
    assert parse_ts("2026-11-27T21:40:12+08:00") == parse_ts("2026-11-27T13:40:12Z")
