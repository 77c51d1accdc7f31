"""Personal data (PIPL): mobile and resident ID numbers are refused in every field but event_id,
masked in dead letters with a keyed hash kept, and pseudonymised at ingest when configured."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hangwatch.platform.settings import PrivacySettings, Settings
from hangwatch.schemas import personal_data
from hangwatch.schemas.call_outcome import ContractError, Decoder, decode, from_dict, parse_ts
from hangwatch.sinks.convert import InvalidEvent, call_event_row
from hangwatch.streams import dead_letters

EXAMPLES = Path(__file__).resolve().parents[2] / "schemas" / "examples" / "call_outcome"
NOW_MS = parse_ts("2026-11-28T00:00:00Z")
BASE: dict[str, Any] = json.loads((EXAMPLES / "valid" / "human_hung_up_income_check.json").read_text())
KEY = b"dlq-hash-key-0123456789abcdef"


# ---- plain references, written from the definitions ---------------------------------------

def iso7064_mod11_2_check(digits17: str) -> str:
    """ISO 7064 MOD 11-2, recursive form: p = (p + a) * 2 mod 11 over the digits; the check
    character c makes (p + c) mod 11 == 1, 10 written X."""
    p = 0
    for ch in digits17:
        p = (p + int(ch)) * 2 % 11
    c = (12 - p) % 11
    return "X" if c == 10 else str(c)


def iso7064_valid(id18: str) -> bool:
    """The standard's defining property: sum of a_i * 2^(i-1) over all 18 characters, i counted
    from the right (the check character is i = 1, X = 10), is 1 mod 11."""
    values = [10 if ch in "Xx" else int(ch) for ch in id18]
    return sum(v * pow(2, i, 11) for i, v in enumerate(reversed(values))) % 11 == 1


def resident_id(area: int, born: date, seq: int) -> str:
    first17 = f"{area:06d}{born:%Y%m%d}{seq:03d}"
    return first17 + iso7064_mod11_2_check(first17)


_areas = st.integers(110000, 659999)
_births = st.dates(date(1900, 1, 1), date(2026, 12, 31))
_seqs = st.integers(0, 999)
_mobiles = st.tuples(st.integers(3, 9), st.integers(0, 999_999_999)).map(lambda t: f"1{t[0]}{t[1]:09d}")


def _event(**changes: Any) -> bytes:
    return json.dumps({**BASE, **changes}, ensure_ascii=False).encode()


def _refusal(value: bytes, key: bytes | None = None, decoder: Any = decode) -> ContractError:
    with pytest.raises(ContractError) as info:
        decoder(value, key or BASE["borrower_id"].encode(), now_ms=NOW_MS)
    return info.value


# ---- the check digit and the detector -------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(area=_areas, born=_births, seq=_seqs)
def test_check_character_matches_the_reference(area: int, born: date, seq: int) -> None:
    rid = resident_id(area, born, seq)
    assert personal_data.resident_id_check_char(rid[:17]) == rid[17]
    assert iso7064_valid(rid)
    found = personal_data.find_in_text(f"证件号 {rid}。")
    assert [(t, n) for _, _, t, n in found] == [(personal_data.RESIDENT_ID, rid)]
    assert personal_data.find_in_text(rid.lower())[0][3] == rid  # x written lower-case


@settings(max_examples=300, deadline=None)
@given(area=_areas, born=_births, seq=_seqs, wrong=st.integers(1, 10))
def test_wrong_check_character_or_date_is_not_an_id(area: int, born: date, seq: int, wrong: int) -> None:
    rid = resident_id(area, born, seq)
    chars = "0123456789X"
    bad = rid[:17] + chars[(chars.index(rid[17]) + wrong) % 11]
    assert not iso7064_valid(bad)
    assert personal_data.find_in_text(bad) == []
    # a birth date that does not exist: day 30 of February, month 13
    for d in ("0230", "1301", "0431"):
        first17 = f"{area:06d}{born.year}{d}{seq:03d}"
        assert personal_data.find_in_text(first17 + iso7064_mod11_2_check(first17)) == []


def test_a_known_id_number() -> None:
    assert iso7064_mod11_2_check("11010519491231002") == "X"
    assert personal_data.find_in_text("11010519491231002X")[0][2] == personal_data.RESIDENT_ID


@settings(max_examples=300, deadline=None)
@given(m=_mobiles, fmt=st.sampled_from(["{a}{b}{c}", "{a} {b} {c}", "{a}-{b}-{c}", "+86{a}{b}{c}", "+86 {a} {b} {c}",
                                        "0086{a}{b}{c}", "0086-{a}-{b}-{c}", "{a}{b} {c}"]),
       around=st.sampled_from(["{}", "tel:{}", "电话{}。", "call me at {} please", "id_{}", "({})"]))
def test_mobile_numbers_are_found_in_any_spelling(m: str, fmt: str, around: str) -> None:
    text = around.format(fmt.format(a=m[:3], b=m[3:7], c=m[7:]))
    found = personal_data.find_in_text(text)
    assert [(t, n) for _, _, t, n in found] == [(personal_data.MOBILE, m)]
    masked = personal_data.mask_text(text)
    assert len(masked) == len(text) and not personal_data.find_in_text(masked)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 10**12), prefix=st.sampled_from(["", "b", "x-", "9", "1"]),
       suffix=st.sampled_from(["", "a", "7", "-2"]))
def test_what_is_a_mobile_number(n: int, prefix: str, suffix: str) -> None:
    text = prefix + str(n) + suffix
    run = (prefix if prefix.isdigit() else "") + str(n) + (suffix if suffix.isdigit() else "")
    letters_around = prefix.isalpha() or suffix.isalpha()
    is_mobile = len(run) == 11 and run[0] == "1" and run[1] in "3456789" and not letters_around
    assert bool(personal_data.find_in_text(text)) == is_mobile, text


@settings(max_examples=1000, deadline=None)
@given(st.text(alphabet="0123456789 -+xX13aé电\\\"", max_size=40))
def test_the_byte_prefilter_never_misses(s: str) -> None:
    """candidates() over the raw message is a superset of what the precise scan finds."""
    raw = json.dumps({"f": s}, ensure_ascii=False).encode()
    if personal_data.find_in_text(s):
        assert personal_data.candidates(raw)
        _, found = personal_data.mask_bytes(raw)
        assert found or b"\\" in raw


def test_the_prefilter_lets_ordinary_events_through() -> None:
    for path in (EXAMPLES / "valid").glob("*.json"):
        assert not personal_data.candidates(path.read_bytes()) or path.stem == "personal_data_lookalikes"
    assert not personal_data.candidates(_event(call_id="call-20261127-000123", loan_id="1234567890123456789"))


# ---- the decoder refuses it everywhere but event_id ------------------------------------------

@pytest.mark.parametrize("field", ["call_id", "borrower_id", "loan_id", "campaign", "agent_id", "branch",
                                   "script_version"])
def test_every_string_field_is_checked(field: str) -> None:
    value = _event(**{field: "13812345678"})
    key = b"13812345678" if field == "borrower_id" else None
    err = _refusal(value, key)
    assert (err.kind, err.field) == ("personal_data", field)
    assert "13812345678" not in str(err)


def test_event_id_is_exempt_and_lookalikes_pass() -> None:
    e = decode(_event(event_id="13812345678"), BASE["borrower_id"].encode(), now_ms=NOW_MS)
    assert e.event_id == "13812345678"
    raw = (EXAMPLES / "valid" / "personal_data_lookalikes.json").read_bytes()
    assert decode(raw, json.loads(raw)["borrower_id"].encode(), now_ms=NOW_MS).loan_id == "12812345678"


@pytest.mark.parametrize(("extra", "field"), [
    ({"id_card_no": "11010519491231002X"}, "id_card_no"),
    ({"contact": {"mobile": "+86 139-1234-5678"}}, "contact.mobile"),
    ({"notes": ["ok", {"text": "客户新号码 15012345678，请更新"}]}, "notes[1].text"),
    ({"phone": 13812345678}, "phone"),  # an unquoted number
    ({"13812345678": "called"}, "***********"),  # a field name; the path is masked too
    ({"memo": "\\u0031\\u0033\\u0038\\u0031\\u0032\\u0033\\u0034\\u0035\\u0036\\u0037\\u0038"}, "memo"),
])
def test_nested_objects_free_text_numbers_and_escapes(extra: dict[str, Any], field: str) -> None:
    raw = _event(**extra).replace(b"\\\\u", b"\\u")  # the escape case: JSON \u escapes of digits
    err = _refusal(raw)
    assert (err.kind, err.field) == ("personal_data", field)
    with pytest.raises(ContractError, match="holds a"):
        from_dict(orjson.loads(raw), now_ms=NOW_MS)


def test_contract_errors_come_first_and_fast_path_agrees() -> None:
    raw = _event(borrower_id="13812345678", channel="fax")
    assert _refusal(raw, b"13812345678").kind == "bad_enum"  # validation, then personal data
    err = _refusal(_event(script_version="13812345678"))  # msgspec path
    err2 = _refusal(_event(script_version="13812345678", x=1))  # precise path (extra field)
    assert (err.kind, err.field) == (err2.kind, err2.field) == ("personal_data", "script_version")


def test_the_sink_never_stores_it() -> None:
    """The sink decodes call-outcomes with the same decoder: such an event is not a row."""

    class Msg:
        topic, partition, offset, timestamp = "call-outcomes", 0, 7, None
        key = BASE["borrower_id"].encode()
        value = _event(id_card_no="11010519491231002X")

    with pytest.raises(InvalidEvent) as info:
        call_event_row(Msg(), 0)
    assert info.value.kind == "personal_data"


# ---- dead letters: masked, with a keyed hash ---------------------------------------------------

def _dlq(value: bytes, key: bytes, hash_key: bytes | None = KEY) -> tuple[dict[str, Any], bytes, bytes]:
    with pytest.raises(ContractError) as info:
        decode(value, key, now_ms=NOW_MS)
    rec = dict(dead_letters.dead_letter(topic="call-outcomes", partition=1, offset=42, timestamp_ms=None, key=key,
                                        value=value, error=info.value, now_ms=NOW_MS, worker="w",
                                        hash_key=hash_key))
    return rec, base64.b64decode(rec["value_b64"]), base64.b64decode(rec["key_b64"])


def _hmac(text: str) -> str:
    return hmac.new(KEY, text.encode(), hashlib.sha256).hexdigest()


def test_dead_letter_masks_spans_and_keeps_reproducible_hashes() -> None:
    value = _event(borrower_id="13812345678", id_card_no="11010519491231002X",
                   note="电话 +86 139-1234-5678 或 13812345678")
    rec, stored, stored_key = _dlq(value, b"13812345678")
    assert (rec["error_kind"], rec["error_field"]) == ("personal_data", "borrower_id")
    assert len(stored) == len(value) and stored_key == b"*" * 11
    for secret in (b"13812345678", b"11010519491231002X", b"139-1234-5678", b"1234"):
        assert secret not in stored
    assert orjson.loads(stored)["note"] == "电话 +** ***-****-**** 或 ***********"
    assert orjson.loads(stored)["event_id"] == BASE["event_id"]  # the rest is the original
    assert rec["personal_data"] == [
        {"field": "borrower_id", "type": "mobile", "hmac_sha256": _hmac("13812345678")},
        {"field": "id_card_no", "type": "resident_id", "hmac_sha256": _hmac("11010519491231002X")},
        {"field": "note", "type": "mobile", "hmac_sha256": _hmac("13912345678")},
    ]
    assert "13812345678" not in json.dumps(rec, ensure_ascii=False)
    # reproducible with the key, different with another
    again, _, _ = _dlq(value, b"13812345678")
    other, _, _ = _dlq(value, b"13812345678", hash_key=b"another-key-0123456789")
    assert again["personal_data"] == rec["personal_data"] != other["personal_data"]
    unkeyed, _, _ = _dlq(value, b"13812345678", hash_key=None)
    assert {h["hmac_sha256"] for h in unkeyed["personal_data"]} == {None}


def test_other_dead_letters_are_masked_too() -> None:
    """A message refused for another reason must not keep a number either."""
    value = _event(channel="fax", note="13812345678")
    rec, stored, _ = _dlq(value, BASE["borrower_id"].encode())
    assert rec["error_kind"] == "bad_enum" and b"13812345678" not in stored
    assert rec["personal_data"] == [{"field": None, "type": "mobile", "hmac_sha256": _hmac("13812345678")}]
    rec, stored, _ = _dlq(b"not json, call 13812345678", b"k")
    assert rec["error_kind"] == "not_json" and stored == b"not json, call ***********"
    plain, stored, _ = _dlq(_event(channel="fax"), BASE["borrower_id"].encode())
    assert "personal_data" not in plain and stored == _event(channel="fax")  # untouched


def test_escaped_digits_are_masked_by_reserialising() -> None:
    escaped = "".join(f"\\u{ord(c):04x}" for c in "13812345678")
    value = _event().replace(b'"v2.3"', f'"{escaped}"'.encode())
    rec, stored, _ = _dlq(value, BASE["borrower_id"].encode())
    assert rec["error_field"] == "script_version"
    assert orjson.loads(stored)["script_version"] == "*" * 11


def test_error_text_is_masked() -> None:
    rec, _, _ = _dlq(_event(channel="13812345678"), BASE["borrower_id"].encode())
    assert rec["error_kind"] == "bad_enum" and "13812345678" not in rec["error"] and "***" in rec["error"]


# ---- pseudonymisation at ingest -----------------------------------------------------------------

PSEUDO_KEY = b"pseudonymise-key-0123456789"


def test_pseudonymisation_before_the_check() -> None:
    dec = Decoder(["borrower_id", "customer_phone"], PSEUDO_KEY)
    raw = _event(borrower_id="138-1234-5678", customer_phone=13812345678)
    e = dec(raw, b"138-1234-5678", now_ms=NOW_MS)
    expected = "p-" + hmac.new(PSEUDO_KEY, b"13812345678", hashlib.sha256).hexdigest()[:32]
    assert e.borrower_id == expected and e.extra["customer_phone"] == expected  # one canonical form
    assert dec(_event(borrower_id="+8613812345678"), b"+8613812345678", now_ms=NOW_MS).borrower_id == expected
    assert dec(_event(), BASE["borrower_id"].encode(), now_ms=NOW_MS).borrower_id.startswith("p-")
    # the key is compared with the id as sent; other fields are still checked
    assert _refusal(raw, b"13900000000", dec).kind == "key_mismatch"
    assert _refusal(_event(borrower_id="13812345678", loan_id="13812345678"), b"13812345678", dec).field == "loan_id"
    # without pseudonymisation the same message is refused
    assert _refusal(raw, b"138-1234-5678").kind == "personal_data"


def test_pseudonymisation_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HANGWATCH_PRIVACY__PSEUDONYMISE_FIELDS", '["borrower_id"]')
    monkeypatch.setenv("HANGWATCH_PRIVACY__PSEUDONYMISE_KEY", PSEUDO_KEY.decode())
    monkeypatch.setenv("HANGWATCH_PRIVACY__HASH_KEY", KEY.decode())
    s = Settings()
    assert s.privacy.hash_key_bytes() == KEY
    assert s.privacy.decoder()(_event(borrower_id="13812345678"), b"13812345678", now_ms=NOW_MS).borrower_id \
        .startswith("p-")
    assert PSEUDO_KEY.decode() not in repr(s)
    with pytest.raises(ValueError, match="pseudonymise_key"):
        PrivacySettings(pseudonymise_fields=["borrower_id"])
    with pytest.raises(ValueError, match="channel"):
        PrivacySettings(pseudonymise_fields=["channel"], pseudonymise_key="k" * 16)
    with pytest.raises(ValueError, match="16 characters"):
        PrivacySettings(hash_key="short")


def test_generated_traffic_has_no_false_positives() -> None:
    """Identifiers shaped like the simulator's and real systems' ids are not personal data."""
    rng = random.Random(17)
    for i in range(3000):
        doc = {**BASE, "event_id": rng.randbytes(16).hex(), "call_id": f"call-{rng.getrandbits(32):08x}-{i:09d}",
               "loan_id": str(rng.getrandbits(63)), "borrower_id": f"b-{rng.getrandbits(24):06x}",
               "occurred_at": (date(2026, 11, 27) - timedelta(days=rng.randrange(300))).isoformat() + "T10:00:00Z"}
        decode(orjson.dumps(doc), doc["borrower_id"].encode(), now_ms=NOW_MS)
