"""The CallOutcome v1 contract: every example in schemas/examples is a fixture here."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import jsonschema
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hangwatch.schemas import call_outcome
from hangwatch.schemas.call_outcome import ContractError, decode, from_dict, parse_ts

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
# personal_data: the JSON Schema states the rule in words only (a check digit is no regex).
CONSUMER_ONLY = {"not_json", "not_utf8", "oversized", "empty_key", "future_timestamp", "personal_data"}
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


# ---- the two decoding paths agree ---------------------------------------------------------
# decode() takes msgspec's path when it accepts the message and the precise path otherwise;
# whichever path runs, the result (event, or error kind and field) must be the precise one's.

def _precise(value: bytes, key: bytes) -> tuple[str, object]:
    try:
        e = call_outcome._decode_precise(value, NOW_MS)
        call_outcome.check_personal_data(orjson.loads(value))
    except ContractError as err:
        return "error", (err.kind, err.field)
    if key.decode("utf-8", "replace") != e.borrower_id:
        return "error", ("key_mismatch", "borrower_id")
    return "event", (e, e.extra)


def _decoded(value: bytes, key: bytes) -> tuple[str, object]:
    try:
        e = decode(value, key, now_ms=NOW_MS)
    except ContractError as err:
        return "error", (err.kind, err.field)
    return "event", (e, e.extra)


@pytest.mark.parametrize("path", VALID + INVALID, ids=lambda p: p.stem)
def test_fast_and_precise_paths_agree_on_every_example(path: Path) -> None:
    doc = json.loads(path.read_text())
    if "value_b64" in doc:
        value, key = base64.b64decode(doc["value_b64"]), (doc["key"] or "").encode()
    else:
        value, key = path.read_bytes(), doc["borrower_id"].encode()
    if not key or len(value) > call_outcome.MAX_MESSAGE_BYTES:
        return  # refused before either path runs (test_invalid_examples_fail_precisely)
    assert _decoded(value, key) == _precise(value, key)


def test_the_fast_path_is_the_one_taken_for_plain_valid_events() -> None:
    raw = (EXAMPLES / "valid" / "human_hung_up_income_check.json").read_bytes()
    assert call_outcome._fast(raw, NOW_MS) is not None
    extra = (EXAMPLES / "valid" / "completed_with_extra_field.json").read_bytes()
    assert call_outcome._fast(extra, NOW_MS) is None, "extra fields must take the path that keeps them"


_BASE = orjson.loads((EXAMPLES / "valid" / "human_hung_up_income_check.json").read_bytes())
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.integers(2**62, 2**64),
                    st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(
                        ["", "x", "robot", "human", "hung_up", "refused", "greeting", "AAA", "2026-11-27T10:00:00Z",
                         "2026-11-27T10:00:00", "2026-11-27 10:00:00+08:00", "2030-01-01T00:00:00Z", "\u0000",
                         "银行"]), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3),
                                                                                     st.integers(), max_size=2))


@settings(max_examples=600, deadline=None)
@given(changes=st.dictionaries(st.sampled_from([*sorted(_BASE), "unknown_field"]),
                               st.one_of(_VALUES, st.just(_MISSING_MARK := object())), max_size=4))
def test_fast_and_precise_paths_agree_on_mutated_events(changes: dict[str, object]) -> None:
    doc = dict(_BASE)
    for k, v in changes.items():
        if v is _MISSING_MARK:
            doc.pop(k, None)
        else:
            doc[k] = v
    value = json.dumps(doc, ensure_ascii=False).encode()  # stdlib: big integers too
    key = str(doc.get("borrower_id") or "b-x").encode()
    assert _decoded(value, key) == _precise(value, key)


@settings(max_examples=600, deadline=None)
@given(at=st.integers(0, 400), junk=st.binary(min_size=1, max_size=4), cut=st.booleans())
def test_fast_and_precise_paths_agree_on_corrupted_bytes(at: int, junk: bytes, cut: bool) -> None:
    """Bytes as a broken producer might send them: invalid UTF-8, truncation, stray bytes."""
    raw = orjson.dumps(_BASE)
    at = min(at, len(raw))
    value = raw[:at] + junk + (b"" if cut else raw[at:])
    key = _BASE["borrower_id"].encode()
    assert _decoded(value, key) == _precise(value, key)
